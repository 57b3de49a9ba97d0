"""Causal-LM infilling: candidates from sampling, ranked by the probability of the whole text.

Structure and invariants hold for any causal LM; the one quality test needs a real default
model and says so when the embedded one is the tiny placeholder.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from model_store.loading import load_causal_lm
from server.engine.infill import _compose, _text_logprobs, infill_with_causal_lm
from server.engine.types import Cancelled


@pytest.fixture(scope="module")
def causal(default_model_dir: Path) -> tuple:
    return load_causal_lm(default_model_dir)


def _is_placeholder(default_model_dir: Path) -> bool:
    manifest = json.loads((default_model_dir / "manifest.json").read_text())
    preset = manifest.get("preset")
    return (preset.get("name") if isinstance(preset, dict) else preset) == "tiny"


@pytest.mark.parametrize(
    ("left", "middle", "right", "text"),
    [
        ("a portrait of ", "a woman", " in the rain", "a portrait of a woman in the rain"),
        ("a castle", "at dawn", ", oil painting", "a castle at dawn, oil painting"),
        ("((", "masterpiece", ")), 8k", "((masterpiece)), 8k"),
        ("", "a cat", "", "a cat"),
    ],
)
def test_compose_spaces_words_but_not_punctuation(
    left: str, middle: str, right: str, text: str
) -> None:
    assert _compose(left, middle, right) == text


def test_text_scores_do_not_depend_on_batching(causal: tuple) -> None:
    model, tokenizer = causal
    texts = ["a cat", "a castle on a hill at dawn, oil painting", "portrait"]
    together = _text_logprobs(model, tokenizer, texts)
    alone = [_text_logprobs(model, tokenizer, [text])[0] for text in texts]
    assert together == pytest.approx(alone, abs=1e-4)
    assert all(score < 0 for score in together)


def test_infill_candidates_are_ranked_short_word_runs(causal: tuple) -> None:
    model, tokenizer = causal
    results = infill_with_causal_lm(
        model, tokenizer, "a portrait of ", " in the style of", k=5, seed=1
    )
    assert 1 <= len(results) <= 5
    texts = [text for text, _ in results]
    assert len(set(texts)) == len(texts)
    assert all(1 <= len(text.split()) <= 3 for text in texts)
    assert not any(mark in text for text in texts for mark in ",.;:()")
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    again = infill_with_causal_lm(
        model, tokenizer, "a portrait of ", " in the style of", k=5, seed=1
    )
    assert again == results


def test_infill_score_is_the_gap_and_right_context_given_the_left(causal: tuple) -> None:
    model, tokenizer = causal
    left, right = "a castle on a", ", oil painting"
    text, score = infill_with_causal_lm(model, tokenizer, left, right, k=1, seed=0)[0]
    whole, prefix = _text_logprobs(model, tokenizer, [_compose(left, text, right), left])
    assert score == pytest.approx(whole - prefix, abs=1e-4)


def test_infill_at_the_start_and_when_stopped(causal: tuple) -> None:
    model, tokenizer = causal
    assert infill_with_causal_lm(model, tokenizer, "", "on a hill", k=3)
    assert infill_with_causal_lm(model, tokenizer, "a cat", "", k=0) == []
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        infill_with_causal_lm(model, tokenizer, "a cat", "", k=3, stop=stop)


def test_default_model_fills_an_obvious_gap(causal: tuple, default_model_dir: Path) -> None:
    """Quality, for the real default model: 'woman' belongs in 'portrait of a _ with long hair'."""
    if _is_placeholder(default_model_dir):
        pytest.skip("the embedded default model is still the tiny placeholder (near-noise)")
    model, tokenizer = causal
    results = infill_with_causal_lm(
        model, tokenizer, "portrait of a", "with long hair", k=5, samples=24
    )
    assert "woman" in [text for text, _ in results]
