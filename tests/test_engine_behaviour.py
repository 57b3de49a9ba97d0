"""What the engine does with a model that wants something specific (a scripted runner).

The placeholder model's outputs are noise, so filters and syntax handling are tested here
against a fake model whose preferences are written out: "after this text, say that".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from server.engine import CompletionEngine, EngineSettings, decoding
from server.engine.numeric import log_softmax
from server.engine.runner import Context, Rows, Runner
from server.engine.syntax import cut_unbalanced, open_brackets

PREFERRED_LOGIT = 12.0


@dataclass
class _ScriptRows(Rows):
    sequences: list[list[int]]


class ScriptedRunner(Runner):
    """A fake LM that continues any prefix of one of its scripts and otherwise ends the prompt.

    Each script is a token sequence starting with EOS (as contexts do). The next token after
    a sequence that is a prefix of scripts is each such script's next token, earlier scripts
    slightly preferred (EOS when no script continues); all other tokens share the rest of the
    probability evenly. Several continuations matter when typing rules out the first one.
    """

    def __init__(
        self, tokenizer, scripts: Sequence[str], vocab_size: int, max_positions: int = 256
    ) -> None:
        self.eos = tokenizer.eos_token_id
        self.scripts = [[self.eos, *tokenizer.encode(s, add_special_tokens=False)] for s in scripts]
        self.vocab_size = vocab_size
        self.max_positions = max_positions

    def _logits(self, sequence: list[int]) -> np.ndarray:
        logits = np.zeros(self.vocab_size, dtype=np.float32)
        matched = False
        for rank, script in enumerate(self.scripts):
            if script[: len(sequence)] == sequence and len(script) > len(sequence):
                token = script[len(sequence)]
                logits[token] = max(float(logits[token]), PREFERRED_LOGIT - rank)
                matched = True
        if not matched:
            logits[self.eos] = PREFERRED_LOGIT
        return logits

    def prime(self, ids: Sequence[int]) -> Context:
        self.reused_tokens = 0
        logprobs = log_softmax(self._logits(list(ids)))
        self._last = Context(tuple(ids), logprobs, None)
        return self._last

    def fork(self, context: Context, rows: int, capacity: int) -> Rows:
        return _ScriptRows([list(context.ids) for _ in range(rows)])

    def step(self, rows: Rows, tokens: np.ndarray) -> np.ndarray:
        assert isinstance(rows, _ScriptRows)
        for sequence, token in zip(rows.sequences, tokens.tolist(), strict=True):
            sequence.append(token)
        return np.stack([self._logits(sequence) for sequence in rows.sequences])

    def select(self, rows: Rows, indices: np.ndarray) -> None:
        assert isinstance(rows, _ScriptRows)
        rows.sequences = [list(rows.sequences[i]) for i in indices.tolist()]


@pytest.fixture(scope="module")
def tokenizer(default_model_dir: Path):
    return AutoTokenizer.from_pretrained(default_model_dir, local_files_only=True)


@pytest.fixture
def scripted(tokenizer):
    """Build an engine whose model says exactly the given scripts."""

    def build(*scripts: str, **settings: object) -> CompletionEngine:
        runner = ScriptedRunner(tokenizer, scripts, vocab_size=len(tokenizer))
        return CompletionEngine(
            runner,
            tokenizer.backend_tokenizer,
            tokenizer.eos_token_id,
            EngineSettings(**settings),
            threads=1,
        )

    return build


def texts(suggestions) -> list[str]:
    return [s.new_text for s in suggestions]


class TestKinds:
    def test_word_completion_replaces_the_partial_word(self, scripted) -> None:
        engine = scripted("woman portrait, highly detailed")
        items = engine.complete("woman portra", 12)
        words = [s for s in items if s.kind == "word"]
        assert words[0].new_text == "portrait"
        assert (words[0].start, words[0].end) == (6, 12)

    def test_ghost_text_finishes_the_word_and_the_phrase(self, scripted) -> None:
        engine = scripted("woman portrait of a queen, highly detailed")
        ghost = engine.inline("woman portra", 12)
        assert ghost[0].new_text == "it of a queen"
        assert ghost[0].start == ghost[0].end == 12

    def test_after_a_finished_word_ghost_text_starts_the_next_phrase(self, scripted) -> None:
        engine = scripted("woman portrait, highly detailed, sharp focus")
        assert engine.inline("woman portrait", 14)[0].new_text == ", highly detailed"

    def test_after_a_separator_ghost_text_is_the_next_phrase(self, scripted) -> None:
        engine = scripted("woman portrait, highly detailed, sharp focus")
        assert engine.inline("woman portrait, ", 16)[0].new_text == "highly detailed"
        assert engine.inline("woman portrait,", 15)[0].new_text == " highly detailed"

    def test_menu_phrase_keeps_the_typed_word(self, scripted) -> None:
        engine = scripted("woman portrait of a queen, highly detailed")
        phrases = [s for s in engine.complete("woman portra", 12) if s.kind == "phrase"]
        assert phrases and phrases[0].new_text == "portrait of a queen"
        assert phrases[0].start == 6

    def test_expansion_keeps_the_users_text(self, scripted) -> None:
        engine = scripted("woman portrait, highly detailed, sharp focus, 8k")
        expansions = engine.expand("woman portrait", 2)
        assert expansions[0] == "woman portrait, highly detailed, sharp focus, 8k"

    def test_explicit_inline_adds_an_expansion(self, scripted) -> None:
        engine = scripted("woman portrait, highly detailed, sharp focus, 8k")
        items = engine.inline("woman portrait, ", 16, explicit=True)
        assert items[0].kind == "phrase"
        assert [s.new_text for s in items if s.kind == "expansion"] == [
            "highly detailed, sharp focus, 8k"
        ]


class TestTypingThroughGhostText:
    def test_typing_the_ghost_text_keeps_its_rest_without_asking_the_model(
        self, scripted, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        engine = scripted("woman portrait, highly detailed, sharp focus")
        assert engine.inline("woman portrait, ", 16)[0].new_text == "highly detailed"
        calls: list[object] = []
        monkeypatch.setattr(engine.runner, "prime", lambda ids: calls.append(ids))
        ghost = engine.inline("woman portrait, highly de", 25)
        assert [(g.start, g.end, g.new_text) for g in ghost] == [(25, 25, "tailed")]
        assert calls == []

    def test_typing_something_else_asks_again(
        self, scripted, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        engine = scripted("woman portrait, highly detailed, sharp focus")
        assert engine.inline("woman portrait, ", 16)[0].new_text == "highly detailed"
        calls: list[object] = []
        original = engine.runner.prime
        monkeypatch.setattr(engine.runner, "prime", lambda ids: calls.append(ids) or original(ids))
        ghost = engine.inline("woman portrait, ha", 18)
        assert calls
        assert not any(suggestion.new_text.startswith("ghly") for suggestion in ghost)


class TestPhraseCache:
    def test_typing_on_in_a_word_reuses_its_phrases(
        self, scripted, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        engine = scripted("woman portrait of a queen, highly detailed")
        first = engine.complete("woman portra", 12)
        decoded: list[int] = []
        original = decoding.decode_rows
        monkeypatch.setattr(
            decoding,
            "decode_rows",
            lambda runner, vocab, first, rows, *a, **k: (
                decoded.append(len(rows)) or original(runner, vocab, first, rows, *a, **k)
            ),
        )
        second = engine.complete("woman portrai", 13)
        assert "portrait of a queen" in texts(first)
        assert texts(second) == texts(first)
        assert decoded == [0]  # every phrase row came from the cache

    def test_settings_changes_forget_cached_phrases(self, scripted) -> None:
        engine = scripted("woman portrait, nude, highly detailed", safe_mode=False)
        assert engine.inline("woman portrait, ", 16)[0].new_text == "nude"
        engine.update_settings(EngineSettings(safe_mode=True))
        assert "nude" not in texts(engine.inline("woman portrait, ", 16))


class TestFilters:
    def test_safe_mode_keeps_sexual_terms_out(self, scripted) -> None:
        engine = scripted("woman portrait, nude, highly detailed")
        offered = texts(engine.inline("woman portrait, ", 16, explicit=True))
        assert offered and "nude" not in " ".join(offered)
        expanded = engine.expand("woman portrait, ", 3)
        assert expanded and all("nude" not in text for text in expanded)
        engine.update_settings(EngineSettings(safe_mode=False))
        assert engine.inline("woman portrait, ", 16)[0].new_text == "nude"

    def test_safe_mode_filters_word_completions(self, scripted) -> None:
        engine = scripted("woman nude")
        assert "nude" not in texts(engine.complete("woman nu", 8))
        engine.update_settings(EngineSettings(safe_mode=False))
        assert "nude" in texts(engine.complete("woman nu", 8))

    def test_blocklist_word(self, scripted) -> None:
        engine = scripted("a cat, fluffy", blocklist=("fluffy",))
        offered = texts(engine.complete("a cat, ", 7))
        assert offered and all("fluffy" not in text for text in offered)
        expanded = engine.expand("a cat, ", 2)
        assert expanded and all("fluffy" not in text for text in expanded)

    def test_blocklist_regex(self, scripted) -> None:
        engine = scripted("a knife, bloody, sharp", blocklist=("/blood/",))
        offered = texts(engine.inline("a knife, ", 9, explicit=True))
        assert offered and all("blood" not in text for text in offered)

    def test_phrase_already_in_the_prompt_is_not_suggested(self, scripted) -> None:
        engine = scripted("highly detailed, woman, highly detailed")
        offered = texts(engine.inline("highly detailed, woman, ", 24, explicit=True))
        assert offered and "highly detailed" not in offered

    def test_loops_are_not_suggested(self, scripted) -> None:
        engine = scripted("cat, very very very very very very")
        offered = texts(engine.complete("cat, ", 5))
        assert offered and all("very very very" not in text for text in offered)

    def test_punctuation_only_is_not_suggested(self, scripted) -> None:
        engine = scripted("cat, ,,,, ,,,, ,")
        for suggestion in engine.complete("cat,", 4) + engine.inline("cat,", 4):
            assert any(char.isalnum() for char in suggestion.new_text)

    def test_no_duplicates(self, scripted) -> None:
        engine = scripted("woman portrait, highly detailed")
        items = engine.complete("woman portra", 12)
        keys = [(s.start, s.new_text.casefold()) for s in items]
        assert keys and len(keys) == len(set(keys))


class TestSyntax:
    def test_inside_a_weight_completes_the_word_and_stops_at_the_paren(self, scripted) -> None:
        engine = scripted("portrait, (masterpiece:1.2), best quality")
        text = "portrait, (masterpi"
        words = [s for s in engine.complete(text, len(text)) if s.kind == "word"]
        assert words[0].new_text == "masterpiece"
        assert words[0].start == len("portrait, (")
        assert engine.inline(text, len(text))[0].new_text == "ece"

    def test_ghost_text_adds_no_unbalanced_brackets(self, scripted) -> None:
        engine = scripted("portrait, (masterpiece, (best quality, cinematic")
        text = "portrait, "
        offered = engine.inline(text, len(text), explicit=True)
        assert offered
        for suggestion in offered:
            assert cut_unbalanced(suggestion.new_text) == suggestion.new_text
            assert open_brackets(text + suggestion.new_text) == ""

    def test_alternation_stops_at_the_bar(self, scripted) -> None:
        engine = scripted("{red|blue|green} car")
        assert engine.inline("{red|blu", 8)[0].new_text == "e"

    def test_lora_tag_gets_nothing(self, scripted) -> None:
        engine = scripted("a cat <lora:catstyle:0.8>")
        assert engine.complete("a cat <lora:cat", 15) == []
        assert engine.inline("a cat <lora:cat", 15) == []

    def test_aspect_ratios_after_ar(self, scripted) -> None:
        engine = scripted("a cat --ar 16:9")
        items = engine.complete("a cat --ar 16", 13)
        assert [(s.start, s.new_text) for s in items] == [(11, "16:9")]
        assert engine.inline("a cat --ar 16", 13) == []

    def test_generated_text_stops_before_parameters(self, scripted) -> None:
        engine = scripted("a cat --ar 16:9")
        offered = texts(engine.inline("a ca", 4))
        assert offered and "--" not in " ".join(offered)

    def test_negative_prompt_line_is_its_own_context(self, scripted) -> None:
        engine = scripted("blurry, lowres")
        document = "a castle on a hill\nNegative prompt: blurry, "
        assert engine.inline(document, len(document))[0].new_text == "lowres"


class TestEngineSettings:
    def test_bad_settings_are_rejected_and_old_ones_kept(self, scripted) -> None:
        engine = scripted("a cat, fluffy")
        for bad in (
            EngineSettings(max_items=0),
            EngineSettings(temperature=0),
            EngineSettings(max_expansion_tokens=0),
            EngineSettings(time_budget_ms=0),
            EngineSettings(blocklist=("/(/",)),
        ):
            with pytest.raises(ValueError):
                engine.update_settings(bad)
        assert engine.inline("a cat, ", 7)[0].new_text == "fluffy"
