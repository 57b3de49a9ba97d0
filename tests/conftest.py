"""Shared fixtures: the repository root, the shared corpus and an isolated model store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = Path(
    os.environ.get("PROMPT_AUTOCOMPLETE_DATA_DIR", REPO_ROOT.parent / "shared" / "data" / "prompts")
)
DEFAULT_MODEL_DIR = REPO_ROOT / "model_store" / "default_model"


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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Two shared cores: one thread is faster than two fighting other processes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
