"""The study's systems as benchmark rows: built from a checkpoint, measured like the others."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.benchmarked import Context
from benchmarks.study_systems import study_lstm, study_mlm
from tests.study_models import random_masked_lm, trained_lstm

PROMPTS = ["a castle on a hill, oil painting, 8k", "a red fox in the snow, watercolor"]


@pytest.fixture(autouse=True)
def one_thread(store_home: Path) -> None:
    """A private store (rows must not find the user's models) and one torch thread."""
    torch.set_num_threads(1)


def test_study_rows_measure_ksr_perplexity_and_expansion(tmp_path: Path) -> None:
    context = Context(tmp_path, threads=1)
    trained_lstm(tmp_path / "lstm")
    lstm = study_lstm(context, str(tmp_path / "lstm" / "run" / "export"))
    mlm = study_mlm(context, str(random_masked_lm(tmp_path / "mlm")))
    for row in (lstm, mlm):
        assert row.unavailable is None and row.system and row.perplexity and row.expand
        assert row.model_backed and row.model and "weights" in row.model
        ghost, menu = row.system.suggest("a castle on a h")
        assert isinstance(ghost, str) and all(start <= 15 for start, _ in menu)
        assert all(e.startswith("a castle") for e in row.expand("a castle", 2))
    words = lstm.perplexity(PROMPTS)  # type: ignore[misc]
    assert words["word_perplexity"] > 1 and words["prompts"] == 2 and "oov_rate" in words
    masked = mlm.perplexity(PROMPTS * 10)  # type: ignore[misc]
    assert masked["masked_token_perplexity"] > 1 and masked["study_reported"] == 3.83
    assert masked["tokens"] == masked["masked_tokens"] > 0


def test_a_missing_store_model_is_reported_and_never_trained(tmp_path: Path) -> None:
    row = study_lstm(Context(tmp_path), None)
    assert row.system is None and row.perplexity is None
    assert row.unavailable and "prompt-models train lstm" in row.unavailable
    assert "mlm" in (study_mlm(Context(tmp_path), None).unavailable or "")


def test_a_model_of_another_kind_is_refused(tmp_path: Path) -> None:
    row = study_lstm(Context(tmp_path), str(random_masked_lm(tmp_path / "mlm")))
    assert row.unavailable == f"{tmp_path / 'mlm'} is a masked-lm, not a word-lstm"
