"""prompt-ls with its language model held back until a test lets it load.

``python -m tests.held_model_server`` serves as ``prompt-ls`` does, except that the model's
build waits for a ``test/releaseModel`` request, and only the statistics' first answer (not a
timeout) lets it start; ``test/probe`` says whether the build has started and whether torch is
imported. What serves before the model can then be checked without racing its load.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from server import server, worker
from server.cli import main

RELEASED = threading.Event()
BUILDING = threading.Event()
_engine_for = worker.engine_for


def held_engine_for(*args: Any, **kwargs: Any) -> Any:
    BUILDING.set()
    RELEASED.wait()
    return _engine_for(*args, **kwargs)


worker.engine_for = held_engine_for
server.FIRST_ANSWER_WAIT_S = 3600.0


@server.SERVER.feature("test/probe")
def probe(ls: server.PromptLanguageServer, params: Any) -> dict[str, bool]:
    return {"building": BUILDING.is_set(), "torch": "torch" in sys.modules}


@server.SERVER.feature("test/releaseModel")
def release_model(ls: server.PromptLanguageServer, params: Any) -> None:
    RELEASED.set()


if __name__ == "__main__":
    main()
