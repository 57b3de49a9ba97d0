"""Which engine serves a checkpoint: chosen by the ``kind`` in its manifest."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from server.engine.types import EngineSettings, Suggestion

if TYPE_CHECKING:
    from model_store.ngram.model import WordNgram
    from model_store.personal import PersonalLayer


class Engine(Protocol):
    """What the server and the benchmarks call, whatever the model behind it."""

    def update_settings(self, settings: EngineSettings) -> None: ...

    def complete(
        self,
        text: str,
        cursor: int,
        *,
        limit: int | None = None,
        stop: threading.Event | None = None,
    ) -> list[Suggestion]: ...

    def inline(
        self, text: str, cursor: int, *, explicit: bool = False, stop: threading.Event | None = None
    ) -> list[Suggestion]: ...

    def expand(
        self, text: str, n: int = 4, *, stop: threading.Event | None = None
    ) -> list[str]: ...


Loader = Callable[[Path, "int | None", "WordNgram | None", "PersonalLayer | None"], Engine]


def _causal(
    path: Path, threads: int | None, word_stats: WordNgram | None, personal: PersonalLayer | None
) -> Engine:
    from server.engine.causal_fill import InfillingEngine

    return InfillingEngine.from_checkpoint(
        path, threads=threads, word_stats=word_stats, personal=personal
    )


def _word_lstm(
    path: Path, threads: int | None, word_stats: WordNgram | None, personal: PersonalLayer | None
) -> Engine:
    from server.engine.study.lstm_engine import WordLSTMEngine

    return WordLSTMEngine.from_checkpoint(path, threads=threads)


def _masked(
    path: Path, threads: int | None, word_stats: WordNgram | None, personal: PersonalLayer | None
) -> Engine:
    from server.engine.study.mlm_engine import MaskedLMEngine

    return MaskedLMEngine.from_checkpoint(path, threads=threads)


LOADERS: dict[str, Loader] = {"causal-lm": _causal, "word-lstm": _word_lstm, "masked-lm": _masked}


def needs_torch(kind: str, path: Path) -> bool:
    """Whether serving a checkpoint imports torch: the study's models and causal LMs other
    than plain GPT-2 do; the default model runs on numpy (``runner.GPT2Runner``)."""
    if kind != "causal-lm":
        return True
    from server.engine.runner import GPT2Runner

    return not GPT2Runner.serves(Path(path))


def engine_for(
    kind: str,
    path: Path,
    threads: int | None = None,
    *,
    word_stats: WordNgram | None = None,
    personal: PersonalLayer | None = None,
) -> Engine:
    """The engine for a verified checkpoint directory of ``kind`` (its manifest's).

    Word statistics (the corpus's, and the user's ``personal`` ones) blend into the causal
    engine's words; the study's models rank whole words already and do not use them.
    """
    loader = LOADERS.get(kind)
    if loader is None:
        raise ValueError(
            f"{path}: cannot serve a model of kind {kind!r}; servable kinds: {', '.join(LOADERS)}"
        )
    return loader(Path(path), threads, word_stats, personal)
