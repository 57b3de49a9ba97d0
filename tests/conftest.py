"""Shared fixtures: the repository root, the shared corpus and an isolated model store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# One torch (OpenMP) thread in the test processes and the servers and trainers they start:
# pytest-xdist already keeps every core busy, and two threads per process on two cores made
# OpenMP's barriers spin against each other. Set before anything imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = Path(
    os.environ.get("PROMPT_AUTOCOMPLETE_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "prompts")
)
DEFAULT_MODEL_DIR = REPO_ROOT / "model_store" / "default_model"

# pytest-xdist hands whole files (--dist=loadfile) to its workers in collection order: a long
# file dealt last leaves the other core idle until it ends. Dealing the longest first
# (largest-first scheduling) lets both workers finish together. Longest first, by their
# durations in a full run on two cores; a file missing here only runs in its usual place.
LONGEST_FILES = (
    "test_server_loading.py",
    "test_model_store.py",
    "test_repl.py",
    "test_distributed_training.py",
    "test_server_masks.py",
    "test_editors_nvim.py",
    "test_repl_cli.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: the order inside each file is kept


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current environment plus PYTHONPATH at the repo root, for child processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def dev_corpus() -> Path:
    """The held-out dev split; its absence is an error, never a silent skip."""
    path = CORPUS_DIR / "dev.txt"
    if not path.is_file():
        pytest.fail(f"shared corpus missing: {path} (set PROMPT_AUTOCOMPLETE_DATA_DIR)")
    return path


@pytest.fixture()
def store_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private model store and cache, so tests never touch the user's."""
    home = tmp_path / "store"
    monkeypatch.setenv("PROMPT_AUTOCOMPLETE_HOME", str(home))
    monkeypatch.delenv("PROMPT_AUTOCOMPLETE_CACHE", raising=False)
    return home


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded default model directory (HF GPT-2 files plus manifest.json)."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.fail(f"{DEFAULT_MODEL_DIR} has no config.json; the embedded default is missing")
    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
