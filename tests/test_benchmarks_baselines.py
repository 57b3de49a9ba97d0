"""The baseline systems on tiny hand-written corpora."""

from __future__ import annotations

import pytest

from benchmarks import ngram
from benchmarks.baselines import NoSystem, PrefixHistory
from benchmarks.ksr import evaluate
from model_store.ngram import counting
from model_store.ngram.model import WordNgram

# Shared with tests/test_ngram.py, which checks the statistics themselves.
CORPUS = [
    "a cat sitting on a chair, highly detailed",
    "a cat on a mat",
    "a cat on a mat, oil painting",
    "a dog on a mat, oil painting",
    "portrait of a woman, highly detailed, by greg rutkowski",
    "a cathedral at night, highly detailed",
    "portrait of a knight, highly detailed",
]


def test_none_shows_nothing() -> None:
    assert NoSystem().suggest("a cat") == ("", [])


def test_prefix_history_suggests_the_latest_matching_line() -> None:
    history = PrefixHistory(["a cat", "a dog", "a cat on a mat", "b"])
    assert history.suggest("a c") == ("at on a mat", [])
    assert history.suggest("a cat ") == ("on a mat", [])
    assert PrefixHistory(["a cat on a mat", "a cat"]).suggest("a c") == ("at", [])


def test_prefix_history_is_silent_on_blank_or_unknown_text() -> None:
    history = PrefixHistory(["a cat"])
    assert history.suggest("") == ("", [])
    assert history.suggest("  ") == ("", [])
    assert history.suggest("zebra") == ("", [])
    assert history.suggest("A c") == ("", [])  # case-sensitive, as prompt-toolkit


def test_prefix_history_ksr_by_hand() -> None:
    # Target "a cat on a mat" (14 chars). "" is blank: type "a" (1). At "a" the latest match
    # is "a dog": ghost " dog" is wrong and its first piece " " nets 0: type " " (2). At "a "
    # ghost "dog": type "c" (3). At "a c" the latest match is "a cat on a mat": Tab (4).
    # KSR = 1 - 4/14.
    history = PrefixHistory(["a cat", "a cat on a mat", "a dog"])
    result = evaluate(history, ["a cat on a mat"])
    assert result.keystrokes == 4
    assert result.ksr == pytest.approx(1 - 4 / 14)


@pytest.fixture(scope="module")
def model() -> WordNgram:
    return counting.build(CORPUS)


def test_suggestions_complete_the_partial_word(model: WordNgram) -> None:
    system = ngram.NgramSystem(model)
    ghost, menu = system.suggest("a ca")
    assert ghost.startswith("t")  # "cat" is the likeliest word after "a" starting with "ca"
    assert len(ghost.split()) <= 4
    assert menu and all(start == 2 and text.startswith("ca") for start, text in menu)
    assert len(menu) <= 5
    # The word already typed is never offered again; menu words end with a space unless the
    # prompt likely ends there.
    _, menu = system.suggest("a cat")
    assert all(text.rstrip() != "cat" for _, text in menu)
    assert (2, "cathedral ") in menu


def test_ngram_saves_keystrokes_on_its_own_corpus(model: WordNgram) -> None:
    system = ngram.NgramSystem(model)
    with_menu = evaluate(system, CORPUS[:3])
    ghost_only = evaluate(system, CORPUS[:3], use_menu=False)
    assert with_menu.ksr > 0.5
    assert ghost_only.ksr > 0.3


def test_expansions_continue_the_idea(model: WordNgram) -> None:
    candidates = ngram.NgramSystem(model).expand("portrait of", 4)
    assert len(candidates) == 4
    assert all(c.startswith("portrait of ") for c in candidates)
    assert candidates[0] == ngram.NgramSystem(model).expand("portrait of", 1)[0]  # greedy
