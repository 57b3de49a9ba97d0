"""The engine API over the study's models: word LSTM, masked LM, and ``<mask>`` fillers.

The LSTM is ``lstm-tiny`` trained on made-up prompts (seconds); the masked LM has random
weights, so its tests check structure (spans, prefixes, order), not what it proposes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from server.engine import Cancelled, EngineSettings, Suggestion
from server.engine.causal_fill import InfillingEngine
from server.engine.kinds import engine_for
from server.engine.masks import MaskSpan, joined, mask_at
from server.engine.study.lstm_engine import WordLSTMEngine
from server.engine.study.mlm_engine import MaskedLMEngine
from server.engine.study.mlm_infill import fill_mask
from tests.study_models import random_masked_lm, trained_lstm


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> WordLSTMEngine:
    return WordLSTMEngine(trained_lstm(tmp_path_factory.mktemp("lstm")))


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_masked_lm(tmp_path_factory.mktemp("mlm"))


@pytest.fixture(scope="module")
def mlm(mlm_dir: Path) -> MaskedLMEngine:
    return MaskedLMEngine.from_checkpoint(mlm_dir)


@pytest.fixture(scope="module")
def causal(default_model_dir: Path) -> InfillingEngine:
    engine = InfillingEngine.from_checkpoint(default_model_dir)
    assert isinstance(engine, InfillingEngine)
    return engine


def applied(text: str, suggestion: Suggestion) -> str:
    return text[: suggestion.start] + suggestion.new_text + text[suggestion.end :]


# -- <mask> spans and spacing (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cursor", "span"),
    [
        ("a <mask> cat", 8, (2, 8)),  # right after it
        ("a <mask> cat", 5, (2, 8)),  # inside it
        ("a <mask> cat", 3, (2, 8)),  # after its "<"
        ("a <mask> cat", 2, None),  # right before it: typing the word before
        ("a <mask> cat", 9, None),
        ("a <mas", 6, None),  # not a mask yet
        ("<mask><mask>", 6, (0, 6)),  # between two: the one just typed
        ("<mask><mask>", 12, (6, 12)),
        ("<mask>\nb", 8, None),  # another line
    ],
)
def test_mask_at_finds_the_mask_under_or_just_before_the_cursor(
    text: str, cursor: int, span: tuple[int, int] | None
) -> None:
    found = mask_at(text, cursor)
    assert (None if found is None else (found.start, found.end)) == span


def test_mask_span_carries_its_line_and_which_mask_it_is() -> None:
    text = "first\na <mask>, b <mask> c\nlast"
    assert mask_at(text, text.rindex(">") + 1) == MaskSpan(18, 24, "a <mask>, b ", " c")
    assert MaskSpan(18, 24, "a <mask>, b ", " c").nth == 1
    with pytest.raises(ValueError, match="negative"):
        mask_at(text, -1)
    with pytest.raises(TypeError):
        mask_at(text, 1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("left", "words", "inserted"),
    [
        ("a cat,", "wearing a hat", " wearing a hat"),
        ("a cat, ", "wearing", "wearing"),
        ("", "a cat", "a cat"),
        ("a (", "red", "red"),
        ("a cat", ", 8k", ", 8k"),
        ("a cat", "  ", ""),
    ],
)
def test_joined_adds_a_space_only_between_words(left: str, words: str, inserted: str) -> None:
    assert joined(left, words) == inserted


# -- word LSTM ------------------------------------------------------------------------------


def test_lstm_completes_the_typed_word_by_next_word_probability(lstm: WordLSTMEngine) -> None:
    text = "a portrait of a woman, digital art"
    items = lstm.complete(text, len(text), limit=8)
    words = [item for item in items if item.kind == "word"]
    assert words and items[: len(words)] == words  # words first, then phrases
    assert all(item.new_text.lower().startswith("art") for item in words)
    assert all((item.start, item.end) == (len(text) - 3, len(text)) for item in items)
    assert [w.score for w in words] == sorted((w.score for w in words), reverse=True)
    ranked = lstm.predictor.rank_words("a portrait of a woman, digital ", "art", 8)
    offered = [word for word, _ in ranked if word != "art"]  # "art" itself changes nothing
    assert [w.new_text for w in words] == offered[: len(words)]
    assert {"artwork", "artistic"} & {w.new_text for w in words}


def test_lstm_next_words_insert_at_the_cursor_after_a_space(lstm: WordLSTMEngine) -> None:
    text = "a cat wearing a hat, oil painting,"
    items = lstm.complete(text, len(text), limit=6)
    assert items and {item.kind for item in items} <= {"word", "phrase"} and len(items) <= 6
    for item in items:
        assert item.start == item.end == len(text)
        assert item.new_text.startswith(" ") and not item.new_text.startswith("  ")
    spaced = lstm.complete(text + " ", len(text) + 1, limit=6)
    assert [item.new_text for item in spaced] == [item.new_text[1:] for item in items]
    assert lstm.complete(text + " 8k", len(text) + 1) == []  # right before a word


class ScriptedPredictor:
    """Stands in for the LSTM: fixed next words and a fixed greedy continuation."""

    def __init__(self, words: list[tuple[str, float]], continuation: str) -> None:
        self.words = words
        self.continuation = continuation

    def rank_words(self, context: str, partial: str, k: int) -> list[tuple[str, float]]:
        return [(w, s) for w, s in self.words if w.startswith(partial.lower())][:k]

    def next_words(self, text: str, n_words: int) -> str:
        return self.continuation

    def expand(self, text: str, n: int, **sampling: object) -> list[str]:
        return [text + ", expanded"]


def scripted(words: list[tuple[str, float]], continuation: str) -> WordLSTMEngine:
    return WordLSTMEngine(ScriptedPredictor(words, continuation))  # type: ignore[arg-type]


def test_phrases_follow_the_best_words_up_to_the_end_of_the_phrase() -> None:
    engine = scripted([("portrait", -1.0), ("painting", -2.0), ("photo", -3.0)], " of a cat, 8k")
    text = "a woman, P"
    items = engine.complete(text, len(text), limit=4)
    assert [(s.kind, s.new_text) for s in items] == [
        ("word", "Portrait"),
        ("word", "Painting"),
        ("word", "Photo"),  # a quarter of the menu is kept for phrases
        ("phrase", "Portrait of a cat"),
    ]
    assert all((s.start, s.end) == (len(text) - 1, len(text)) for s in items)
    (ghost,) = engine.inline(text, len(text))
    assert (ghost.kind, ghost.start, ghost.new_text) == ("phrase", len(text), "ortrait of a cat")
    assert [s.new_text for s in engine.inline(text, len(text), explicit=True)] == [
        "ortrait of a cat",
        "ainting of a cat",
        "hoto of a cat",
        "ortrait, expanded",  # the expansion starts by finishing the best word
    ]
    ends = scripted([("portrait", -1.0)], ", 8k")
    assert [s.kind for s in ends.complete(text, len(text))] == ["word"]
    assert ends.inline(text, len(text))[0] == Suggestion(
        "word", len(text), len(text), "ortrait", -1
    )


def test_lstm_expansions_are_distinct_prompts_starting_with_the_text(
    lstm: WordLSTMEngine,
) -> None:
    text = "Negative prompt: a castle on a hill"
    expansions = lstm.expand(text, 3)
    assert 1 <= len(expansions) <= 3 and len(set(expansions)) == len(expansions)
    assert all(e.startswith(text) and len(e) > len(text) for e in expansions)
    assert lstm.expand(text, 0) == [] and lstm.expand("<lora:x", 2) == []
    with pytest.raises(ValueError, match="n must be"):
        lstm.expand(text, 99)


def test_lstm_fills_a_mask_from_its_left_side(lstm: WordLSTMEngine) -> None:
    text = "a portrait of <mask> in the snow"
    cursor = text.index(">") + 1
    items = lstm.complete(text, cursor, limit=4)
    assert 0 < len(items) <= 4
    assert all((s.kind, s.start, s.end) == ("fill", 14, 20) for s in items)
    assert lstm.inline(text, cursor) == []


def test_lstm_honours_blocklist_settings_and_stop(lstm: WordLSTMEngine) -> None:
    text = "a portrait of a woman, digital art"
    best = lstm.complete(text, len(text), limit=1)[0].new_text
    lstm.update_settings(EngineSettings(blocklist=(best,)))
    try:
        assert best not in {item.new_text for item in lstm.complete(text, len(text))}
        with pytest.raises(ValueError, match="temperature"):
            lstm.update_settings(EngineSettings(temperature=0))
        assert lstm.settings.blocklist == (best,)  # the refused settings changed nothing
    finally:
        lstm.update_settings(EngineSettings())
    stop = threading.Event()
    stop.set()
    for call in (
        lambda: lstm.complete(text, len(text), stop=stop),
        lambda: lstm.inline(text, len(text), stop=stop),
        lambda: lstm.expand(text, 2, stop=stop),
    ):
        with pytest.raises(Cancelled):
            call()


# -- masked LM ------------------------------------------------------------------------------


def test_mlm_offers_fillers_that_replace_exactly_the_mask(mlm: MaskedLMEngine) -> None:
    text = "a portrait of <mask> in the style of <mask>"
    first = mlm.complete(text, 20, limit=5)
    assert 0 < len(first) <= 5 and all(s.kind == "fill" for s in first)
    assert all((s.start, s.end) == (14, 20) for s in first)
    assert [s.score for s in first] == sorted((s.score for s in first), reverse=True)
    scored = dict(fill_mask(mlm.model, mlm.tokenizer, text, 30, candidates=30))
    assert all(scored[s.new_text] == pytest.approx(s.score) for s in first)
    second = mlm.complete(text, len(text), limit=5)
    assert all((s.start, s.end) == (37, 43) for s in second)
    scored = dict(fill_mask(mlm.model, mlm.tokenizer, text, 30, candidates=30, nth=1))
    assert all(scored[s.new_text] == pytest.approx(s.score) for s in second)
    assert [s.new_text for s in first] != [s.new_text for s in second]


def test_mlm_word_completion_keeps_to_the_typed_prefix(mlm: MaskedLMEngine) -> None:
    text = "a cat wearing a hat, p"
    items = mlm.complete(text, len(text), limit=8)
    assert items and all(s.kind == "word" for s in items)
    assert all(s.new_text.lower().startswith("p") and s.start == len(text) - 1 for s in items)
    after_comma = mlm.complete("a cat,", 6, limit=3)
    assert after_comma and all(s.new_text.startswith(" ") for s in after_comma)
    (ghost,) = mlm.inline(text, len(text))
    assert ghost.start == ghost.end == len(text)
    assert items[0].new_text == "p" + ghost.new_text


def test_mlm_expansions_start_with_the_text_and_stop_when_asked(mlm: MaskedLMEngine) -> None:
    mlm.update_settings(EngineSettings(max_expansion_tokens=4))
    try:
        expansions = mlm.expand("a castle on a hill ", 2)
        assert expansions and all(e.startswith("a castle on a hill ") for e in expansions)
        with pytest.raises(ValueError, match="max_expansion_tokens"):
            mlm.update_settings(EngineSettings(max_expansion_tokens=10_000))
    finally:
        mlm.update_settings(EngineSettings(max_expansion_tokens=16))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        mlm.complete("a <mask>", 8, stop=stop)


# -- causal LM and the choice of engine ------------------------------------------------------


def test_causal_engine_fills_a_mask_from_both_sides(causal: InfillingEngine) -> None:
    text = "a portrait of <mask> in the style of greg rutkowski"
    items = causal.complete(text, 20, limit=5)
    assert 0 < len(items) <= 5
    assert all((s.kind, s.start, s.end) == ("fill", 14, 20) for s in items)
    assert [s.score for s in items] == sorted((s.score for s in items), reverse=True)
    assert all(applied(text, s).startswith("a portrait of ") for s in items)
    assert causal.inline(text, 20) == []
    assert all(s.kind != "fill" for s in causal.complete("a portrait of a wom", 19))


def test_engine_for_follows_the_manifest_kind(mlm_dir: Path, default_model_dir: Path) -> None:
    assert isinstance(engine_for("masked-lm", mlm_dir), MaskedLMEngine)
    assert isinstance(engine_for("causal-lm", default_model_dir), InfillingEngine)
    with pytest.raises(ValueError, match="kind 'seq2seq'"):
        engine_for("seq2seq", mlm_dir)
