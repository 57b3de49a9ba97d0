"""Fixtures shared across the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "model_quality: expectations that need a trained default model, not the tiny placeholder",
    )


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded default model directory (HF GPT-2 files plus manifest.json)."""
    path = REPO_ROOT / "model_store" / "default_model"
    if not (path / "config.json").is_file():
        pytest.fail(f"{path} has no config.json; the embedded default model is missing")
    return path
