"""Blending corpus word statistics with the causal LM (server/engine/blend.py) in the engine."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from model_store.ngram import counting
from model_store.ngram.model import WordNgram
from server.engine import Cancelled, CompletionEngine
from server.engine.blend import WordBlender
from server.engine.lm_words import LMWordScorer
from server.engine.types import Budget, EngineSettings

# Hand-written prompts: "cat" and "on a mat" are what this corpus says comes next.
CORPUS = [
    "a cat on a mat, oil painting",
    "a cat on a mat, highly detailed",
    "a cat on a mat",
    "a cathedral at night, highly detailed",
    "portrait of a cat, oil painting",
]
SETTINGS = EngineSettings(time_budget_ms=60_000, safe_mode=False)


@pytest.fixture(scope="module")
def stats() -> WordNgram:
    return counting.build(CORPUS)


@pytest.fixture(scope="module")
def engine(default_model_dir: Path, stats: WordNgram) -> CompletionEngine:
    return CompletionEngine.from_checkpoint(
        default_model_dir, settings=SETTINGS, threads=1, word_stats=stats
    )


def budget() -> Budget:
    return Budget(60_000, None)


def blender(engine: CompletionEngine) -> WordBlender:
    found = engine._blender
    assert found is not None
    lm = found._lm
    assert isinstance(lm, LMWordScorer)
    return WordBlender(found._stats, LMWordScorer(engine.runner, lm._vocab, lm._encode))


def test_the_corpus_ranks_words_that_finish_the_typed_part(engine: CompletionEngine) -> None:
    ranked = blender(engine).rank("a ca", budget(), weight=0.3)
    assert ranked[0].text == "cat"
    assert {word.text for word in ranked} == {"cat", "cat,", "cathedral"}  # "cat," is a word
    probabilities = [word.probability for word in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p <= 1 for p in probabilities)


def test_the_lm_part_is_the_probability_of_the_word_then_a_word_end(
    engine: CompletionEngine, default_model_dir: Path
) -> None:
    """With weight 1 the ranking is the LM's: check one word against a plain forward pass."""
    ranked = {w.text: w.probability for w in blender(engine).rank("a ca", budget(), weight=1.0)}
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    context = [tokenizer.eos_token_id, *tokenizer.encode("a")]
    word = tokenizer.encode(" cat")
    with torch.no_grad():
        logits = model(torch.tensor([context + word])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    expected = sum(float(logprobs[len(context) - 1 + i, t]) for i, t in enumerate(word))
    vocab = tokenizer.convert_ids_to_tokens(list(range(logprobs.shape[1])))
    ends = [i for i, piece in enumerate(vocab) if piece.startswith("Ġ")]
    ends.append(tokenizer.eos_token_id)
    expected += float(torch.logsumexp(logprobs[-1, ends], dim=0))
    assert math.log(ranked["cat"]) == pytest.approx(expected, abs=0.05)  # fp16 weights


def test_weight_outside_zero_to_one_is_refused(engine: CompletionEngine) -> None:
    with pytest.raises(ValueError, match="blend weight"):
        blender(engine).rank("a ca", budget(), weight=1.5)
    with pytest.raises(ValueError, match="blend_weight"):
        engine.update_settings(EngineSettings(blend_weight=-0.1))
    assert engine.complete("a ca", 4)[0].new_text == "cat "  # the old settings stay


def test_a_stop_flag_cancels_the_ranking(engine: CompletionEngine) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        blender(engine).rank("a ca", Budget(60_000, stop))


def test_menu_words_replace_the_typed_part_and_add_a_space(engine: CompletionEngine) -> None:
    items = engine.complete("a ca", 4)
    words = [item for item in items if item.kind == "word"]
    assert words[0].new_text == "cat "
    assert all((item.start, item.end) == (2, 4) for item in words)
    assert "cathedral " in [item.new_text for item in words]


def test_ghost_text_chains_the_corpus_words(engine: CompletionEngine) -> None:
    ghost = engine.inline("a ca", 4)
    assert ghost and ghost[0].new_text.startswith("t on a mat")
    assert (ghost[0].start, ghost[0].end) == (4, 4)
    after_space = engine.inline("a cat ", 6)
    assert after_space[0].new_text.startswith("on a mat")


def test_blocked_words_are_neither_offered_nor_chained(
    default_model_dir: Path, stats: WordNgram
) -> None:
    blocked = CompletionEngine.from_checkpoint(
        default_model_dir,
        settings=EngineSettings(time_budget_ms=60_000, safe_mode=False, blocklist=("cat",)),
        threads=1,
        word_stats=stats,
    )
    menu = [item.new_text for item in blocked.complete("a ca", 4)]
    assert "cat " not in menu and "cathedral " in menu
    ghost = blocked.inline("portrait of a ", 14)
    assert not ghost or "cat" not in ghost[0].new_text.split(",")[0].split()


def test_the_corpus_statistics_setting_switches_the_blend_off(
    default_model_dir: Path, stats: WordNgram
) -> None:
    engine = CompletionEngine.from_checkpoint(
        default_model_dir, settings=SETTINGS, threads=1, word_stats=stats
    )
    assert engine.complete("a ca", 4)[0].new_text == "cat "
    engine.update_settings(EngineSettings(time_budget_ms=60_000, corpus_statistics=False))
    lm_only = engine.complete("a ca", 4)
    assert all(not item.new_text.endswith(" ") for item in lm_only if item.kind == "word")


def test_an_lm_probability_that_underflows_to_zero_still_ranks(
    engine: CompletionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At weight 1 the blend is the LM's probability alone, which can underflow to 0."""
    found = blender(engine)
    monkeypatch.setattr(found._lm, "probabilities", lambda *args: np.zeros(len(args[2])))
    ranked = found.rank("a ca", budget(), weight=1.0)
    assert ranked and all(word.probability > 0 for word in ranked)
    text, logprob = found.ghost("a ca", budget(), lambda _: True, weight=1.0)
    assert text and math.isfinite(logprob)


def test_beside_ghost_text_the_menu_offers_alternatives_to_its_next_word(
    default_model_dir: Path, stats: WordNgram
) -> None:
    engine = CompletionEngine.from_checkpoint(
        default_model_dir,
        settings=EngineSettings(time_budget_ms=60_000, safe_mode=False, menu_skips_ghost=True),
        threads=1,
        word_stats=stats,
    )
    ghost = engine.inline("a ca", 4)[0].new_text
    assert ghost.startswith("t ")  # accepting its first word gives "cat "
    menu = [item.new_text for item in engine.complete("a ca", 4) if item.kind == "word"]
    assert "cat " not in menu and {"cat, ", "cathedral "} <= set(menu)
    # After a finished word the ghost starts with a space: it completes no typed word.
    assert engine.inline("a cat", 5)[0].new_text.startswith(" ")
    assert "cat, " in [item.new_text for item in engine.complete("a cat", 5)]
    engine.update_settings(EngineSettings(time_budget_ms=60_000, safe_mode=False))
    assert engine.complete("a ca", 4)[0].new_text == "cat "


def words_scored_by_the_lm(found: WordBlender, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A list that fills with each word the LM scores from now on."""
    scored: list[str] = []
    lm = found._lm
    assert isinstance(lm, LMWordScorer)
    score = lm._score

    def counting(line: str, separator: str, texts: list[str], budget: Budget) -> list[float]:
        scored.extend(texts)
        return score(line, separator, texts, budget)

    monkeypatch.setattr(lm, "_score", counting)
    return scored


def test_the_lm_scores_each_word_once_while_the_word_is_typed(
    engine: CompletionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line before the typed word stays the same, so its scores are reused."""
    found = blender(engine)
    scored = words_scored_by_the_lm(found, monkeypatch)
    found.rank("a c", budget(), weight=1.0)
    assert "cat" in scored
    before = len(scored)
    again = {word.text: word.probability for word in found.rank("a ca", budget(), weight=1.0)}
    assert len(scored) == before  # every candidate of "ca" was a candidate of "c"
    unscored = blender(engine).rank("a ca", budget(), weight=1.0)
    fresh = {word.text: word.probability for word in unscored}
    assert again == pytest.approx(fresh, rel=1e-4)
    found.rank("a cat on a m", budget(), weight=1.0)  # another line: scored afresh
    assert len(scored) > before


def test_remembered_end_of_prompt_scores_match_fresh_ones(
    engine: CompletionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full memory of (word before, word) pairs is emptied, never half trusted."""
    monkeypatch.setattr("server.engine.blend.REMEMBERED_PAIRS", 2)
    found = blender(engine)
    for before in ["a ca", "a c", "a cat on a m", "a cat on a ", "a ca"]:
        remembered = [(word.text, word.ends_prompt) for word in found.rank(before, budget())]
        fresh = [(word.text, word.ends_prompt) for word in blender(engine).rank(before, budget())]
        assert remembered == fresh
    ends = {word.text: word.ends_prompt for word in found.rank("a cat on a m", budget())}
    assert ends["mat"] > ends["mat,"]  # "a cat on a mat" ends a prompt, "mat," never does


def test_once_lm_letters_are_typed_the_corpus_ranks_alone(
    engine: CompletionEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = blender(engine)
    scored = words_scored_by_the_lm(found, monkeypatch)
    gated = found.rank("a cathe", budget(), weight=1.0, lm_letters=4)
    assert not scored and [word.text for word in gated] == ["cathedral"]
    corpus_alone = blender(engine).rank("a cathe", budget(), weight=0.0)
    assert gated[0].probability == corpus_alone[0].probability  # no share of the LM's
    found.rank("a cathe", budget(), weight=1.0, lm_letters=None)
    assert scored == ["cathedral"]
    found.rank("a cat", budget(), weight=1.0, lm_letters=4)  # three letters: still the LM's
    assert "cat" in scored
    with pytest.raises(ValueError, match="blend_lm_letters"):
        engine.update_settings(EngineSettings(blend_lm_letters=-1))


def test_a_ranking_cut_short_by_the_time_budget_is_not_remembered_as_a_full_one(
    engine: CompletionEngine,
) -> None:
    """One slow keystroke must not spoil the menu and ghost text at that place afterwards."""
    found = blender(engine)
    full = [(word.text, word.probability) for word in blender(engine).rank("a ca", budget())]
    spent = Budget(0, None)  # the time ran out before the LM could score
    corpus_only = [(word.text, word.probability) for word in found.rank("a ca", spent)]
    assert corpus_only != full
    again = [(word.text, word.probability) for word in found.rank("a ca", budget())]
    assert again == full
