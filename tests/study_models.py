"""Tiny study models for tests: a briefly trained word LSTM and a random-weight RoBERTa.

Both are built from the made-up prompts of ``tests.study_prompts`` in a few seconds; the
RoBERTa is untrained (its answers are noise), so tests using it check structure only.
"""

from __future__ import annotations

from pathlib import Path

from model_store.checkpoint import write_manifest
from model_store.corpus import Corpus
from model_store.presets import get_preset
from model_store.study.lstm import train_word_lstm
from model_store.study.mlm import build_roberta, train_roberta_tokenizer
from server.engine.study.lstm_engine import WordLSTMPredictor
from tests.study_prompts import make_prompts


def trained_lstm(directory: Path) -> WordLSTMPredictor:
    """``lstm-tiny`` trained on the made-up prompts (seconds on one core; it learns little)."""
    corpus = Corpus(name="made-up", prompts=make_prompts(), sha256="0" * 64)
    preset = get_preset("lstm-tiny")
    result = train_word_lstm(preset, corpus, directory / "run")  # type: ignore[arg-type]
    write_manifest(result.path, "lstm-test", kind="word-lstm")
    return WordLSTMPredictor.from_checkpoint(result.path)


def random_masked_lm(directory: Path) -> Path:
    """A checkpoint directory (manifest included) of an untrained 2-layer RoBERTa."""
    preset = get_preset("mlm-tiny")
    tokenizer = train_roberta_tokenizer(make_prompts(), 512, preset.block_size, directory)
    build_roberta(preset, tokenizer).save_pretrained(str(directory))  # type: ignore[arg-type]
    write_manifest(directory, "mlm-test", kind="masked-lm")
    return directory
