"""Run a real editor headless on a script that records what happened as JSON.

The scripts under tests/editors/ drive the editor like a user and write their observations to
``$PROMPT_TEST_RESULT``; tests assert on them. A missing editor fails the test: CI (``.ci/run``)
installs every editor these tests need.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, subprocess_env

EDITORS_DIR = REPO_ROOT / "editors"
SCRIPTS_DIR = Path(__file__).resolve().parent / "editors"
SERVER_COMMAND = [sys.executable, "-m", "server"]
EDITOR_WAIT_S = 420  # bounds a hung editor on a loaded 2-core machine; not a speed assertion


def editor(name: str, package: str) -> str:
    """The system's editor (not a wrapper in this virtual environment); its absence is a
    failure, never a skip."""
    environment_bin = Path(sys.executable).parent
    search = os.pathsep.join(
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry) != environment_bin
    )
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} is not installed (apt-get install {package}; .ci/run installs it)")
    return path


def run_editor(argv: list[str], home: Path, **env: str) -> dict[str, Any]:
    """Run ``argv`` with a private model store and HOME, and return its script's result.

    The editor runs in its own process group, killed afterwards, so a server it failed to stop
    does not outlive the test.
    """
    result_file = home / "result.json"
    environment = subprocess_env(
        HOME=str(home),
        PROMPT_AUTOCOMPLETE_HOME=str(home / "store"),
        HF_HUB_OFFLINE="1",
        PROMPT_TEST_RESULT=str(result_file),
        PROMPT_TEST_SERVER=json.dumps(SERVER_COMMAND),
        **env,
    )
    process = subprocess.Popen(
        argv,
        env=environment,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    hung = False
    try:
        output, _ = process.communicate(timeout=EDITOR_WAIT_S)
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    if hung:
        output, _ = process.communicate()
        pytest.fail(f"{argv[0]} hung:\n{output.decode(errors='replace')[-4000:]}")
    if not result_file.is_file():
        pytest.fail(f"{argv[0]} wrote no result:\n{output.decode(errors='replace')[-4000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    assert "error" not in result, f"{result}\n{output.decode(errors='replace')[-4000:]}"
    return result


def assert_word_then_rest_accepted(result: dict[str, Any], typed: str) -> None:
    """One word of the ghost accepted, then the rest: the keys of both editor integrations."""
    ghost, word_line, rest = result["ghost"], result["line_after_word"], result["ghost_after_word"]
    word = word_line.removeprefix(typed)
    assert word_line.startswith(typed) and word and ghost.startswith(word), word_line
    if word != ghost:  # the rest stays shown after one word, without asking the server
        assert rest == ghost[len(word) :]
    assert result["line_after_accept"] == word_line + rest


def assert_expanded(result: dict[str, Any], line: str) -> None:
    """Two expansions of ``line`` were offered and the first picked replaced the line."""
    expansions = result["expansions"]
    assert 1 <= len(expansions) <= 2
    assert all(text.startswith(line) for text in expansions), expansions
    assert result["line_after_expand"] == expansions[0]
