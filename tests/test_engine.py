"""Invariants of the engine on the real default model, whatever its quality."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_info
from transformers import AutoModelForCausalLM, AutoTokenizer

from server.engine import Cancelled, CompletionEngine, EngineSettings, Suggestion, types
from server.engine.hf_runner import HFRunner
from server.engine.requests import set_threads
from server.engine.runner import GPT2Runner
from server.engine.syntax import analyse

# A generous budget: these tests are about behaviour, and the test machine may be busy.
SETTINGS = EngineSettings(time_budget_ms=60_000)

PROMPTS = [
    "portrait of a young woman, highly detailed, digital painting, artstation",
    "(masterpiece:1.2), best quality, [blurry], {red|blue} car, <lora:style:0.8> city BREAK night",
    "a cat --ar 16:9 --v 5",
    "Café au lait, 猫 and 🐱 sitting, cafe\u0301, 日本の庭園",
    "castle on a hill\nNegative prompt: blurry, lowres, bad anatomy",
]


@pytest.fixture(scope="module")
def engine(default_model_dir: Path) -> CompletionEngine:
    return CompletionEngine.from_checkpoint(default_model_dir, settings=SETTINGS, threads=1)


def applied(text: str, suggestion: Suggestion) -> str:
    return text[: suggestion.start] + suggestion.new_text + text[suggestion.end :]


def cursors(text: str) -> list[int]:
    """A spread of cursor positions, each end of line included."""
    positions = set(range(0, len(text) + 1, 5)) | {len(text)}
    positions |= {index for index, char in enumerate(text) if char == "\n"}
    return sorted(positions)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_suggestions_never_contradict_the_typed_text(engine: CompletionEngine, prompt: str) -> None:
    """Token healing: what was typed before the cursor stays, a word item extends the word."""
    menus, ghosts = [], []
    for cursor in cursors(prompt):
        before = prompt[:cursor]
        where = analyse(prompt, cursor)
        menus += engine.complete(prompt, cursor)
        ghosts += engine.inline(prompt, cursor)
        for suggestion in engine.complete(prompt, cursor):
            assert suggestion.start <= cursor <= suggestion.end, suggestion
            if suggestion.kind == "tag" and "→" in suggestion.label:
                continue  # an alias typed ("1girls") gives way to its tag ("1girl")
            assert applied(prompt, suggestion).startswith(before), (before, suggestion)
            if suggestion.kind == "word" and where.mode == "text":
                assert suggestion.start == where.word_start
                assert suggestion.new_text.startswith(prompt[where.word_start : cursor])
            assert suggestion.new_text.strip()
        for suggestion in engine.inline(prompt, cursor):
            assert suggestion.start == suggestion.end == cursor
            assert suggestion.new_text
    assert menus and ghosts, "an engine that offers nothing would pass the checks above"


def test_ranked_and_limited(engine: CompletionEngine) -> None:
    items = engine.complete("woman portra", 12)
    assert 0 < len(items) <= SETTINGS.max_items
    assert len(engine.complete("woman portra", 12, limit=3)) <= 3
    assert engine.complete("woman portra", 12, limit=0) == []
    kinds = {item.kind for item in items}
    assert kinds <= {"word", "phrase", "tag"} and "word" in kinds


def test_expansions_start_with_the_users_text(engine: CompletionEngine) -> None:
    for text in ["woman portrait", "woman portrait, ", "a cat (fluffy", ""]:
        results = engine.expand(text, 3)
        assert 0 < len(results) <= 3, f"no expansion of {text!r} to check"
        for result in results:
            assert result.startswith(text) and len(result) > len(text)


def test_expansions_are_repeatable_with_a_seed(default_model_dir: Path) -> None:
    first = CompletionEngine.from_checkpoint(default_model_dir, settings=SETTINGS, threads=1)
    second = CompletionEngine.from_checkpoint(default_model_dir, settings=SETTINGS, threads=1)
    second.complete("something else entirely, ", 25)  # a different cache state
    assert first.expand("woman portrait, ", 4) == second.expand("woman portrait, ", 4)
    assert first.expand("woman portrait, ", 4) == first.expand("woman portrait, ", 4)


def test_warm_cache_gives_the_cold_result(default_model_dir: Path) -> None:
    text = "portrait of a young woman, highly detailed, digital pai"
    warm = CompletionEngine.from_checkpoint(default_model_dir, settings=SETTINGS, threads=1)
    for cursor in range(1, len(text)):
        warm.complete(text[:cursor], cursor)
    assert warm.runner.reused_tokens > 5  # the context was taken from the cache
    cold = CompletionEngine.from_checkpoint(default_model_dir, settings=SETTINGS, threads=1)
    for method in ("complete", "inline"):
        hot_items = getattr(warm, method)(text, len(text))
        cold_items = getattr(cold, method)(text, len(text))
        assert hot_items, method
        assert [(s.kind, s.start, s.end, s.new_text) for s in hot_items] == [
            (s.kind, s.start, s.end, s.new_text) for s in cold_items
        ]
        for hot, cold_item in zip(hot_items, cold_items, strict=True):
            assert hot.score == pytest.approx(cold_item.score, abs=1e-3)


class TestTimeBudget:
    def test_decoding_stops_when_the_budget_is_spent(
        self, default_model_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each clock reading advances one second: expansions get at least 3 s, a few steps."""
        engine = CompletionEngine.from_checkpoint(
            default_model_dir, settings=EngineSettings(time_budget_ms=1500), threads=1
        )
        steps: list[int] = []
        original_step = engine.runner.step
        monkeypatch.setattr(
            engine.runner,
            "step",
            lambda rows, tokens: steps.append(1) or original_step(rows, tokens),
        )
        clock = iter(range(1_000_000))
        monkeypatch.setattr(types.time, "monotonic", lambda: float(next(clock)))  # the Budget
        results = engine.expand("woman portrait, ", 4)
        assert len(steps) <= 4
        for result in results:  # what there is, cut to whole phrases
            assert result.startswith("woman portrait, ")
        for suggestion in engine.complete("woman portra", 12) + engine.inline("woman ", 6):
            assert suggestion.new_text


class TestCancellation:
    def test_a_set_stop_flag_raises(self, engine: CompletionEngine) -> None:
        stop = threading.Event()
        stop.set()
        with pytest.raises(Cancelled):
            engine.complete("woman portra", 12, stop=stop)
        with pytest.raises(Cancelled):
            engine.inline("woman portrait, ", 16, stop=stop)
        with pytest.raises(Cancelled):
            engine.expand("woman portrait", 4, stop=stop)

    def test_stop_during_decoding(self, default_model_dir: Path) -> None:
        """A flag set while decoding stops it between steps; the engine stays usable."""
        engine = CompletionEngine.from_checkpoint(
            default_model_dir,
            settings=EngineSettings(time_budget_ms=600_000, max_expansion_tokens=120),
            threads=1,
        )
        before = engine.inline("woman portrait, ", 16)
        stop = threading.Event()
        outcome: list[BaseException | object] = []
        original_step = engine.runner.step

        def step_then_stop(rows, tokens):  # the flag is set by "the client" mid-request
            stop.set()
            return original_step(rows, tokens)

        engine.runner.step = step_then_stop  # type: ignore[method-assign]

        def run() -> None:
            try:
                outcome.append(engine.expand("woman portrait, ", 32, stop=stop))
            except Cancelled as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive()
        assert isinstance(outcome[0], Cancelled)
        engine.runner.step = original_step  # type: ignore[method-assign]
        assert engine.inline("woman portrait, ", 16) == before


class TestOddInput:
    @pytest.mark.parametrize(
        "text",
        [
            "",
            " ",
            "\n",
            "🐱",
            "猫",
            "日本の庭",
            "cafe\u0301",
            "e\u0301\u0301\u0301",
            "👩‍🚀 astro",
            "\u200b",
            "a\tb",
            "((((((((",
            "))))",
            "<",
            "--",
            "\\(",
            "x" * 300,
            "word " * 400,
        ],
    )
    def test_no_crash_and_valid_spans(self, engine: CompletionEngine, text: str) -> None:
        for cursor in {0, len(text) // 2, len(text)}:
            for suggestion in engine.complete(text, cursor) + engine.inline(text, cursor):
                assert 0 <= suggestion.start <= cursor <= suggestion.end <= len(text)
                assert applied(text, suggestion).startswith(text[:cursor])
        for result in engine.expand(text, 2):
            assert result.startswith(text)

    def test_cursor_at_zero(self, engine: CompletionEngine) -> None:
        for suggestion in engine.complete("woman portrait", 0):
            assert suggestion.start == suggestion.end == 0

    def test_cursor_past_the_end_is_clamped(self, engine: CompletionEngine) -> None:
        assert engine.complete("woman portra", 12)
        assert engine.complete("woman portra", 99) == engine.complete("woman portra", 12)
        assert engine.inline("woman portra", 99) == engine.inline("woman portra", 12)

    def test_negative_cursor_and_wrong_types_are_errors(self, engine: CompletionEngine) -> None:
        with pytest.raises(ValueError):
            engine.complete("abc", -1)
        with pytest.raises(TypeError):
            engine.complete("abc", 1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            engine.inline(None, 0)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            engine.complete("abc", 3, limit=-1)
        with pytest.raises(ValueError):
            engine.expand("abc", -1)


def test_threads_must_be_positive(default_model_dir: Path) -> None:
    with pytest.raises(ValueError):
        CompletionEngine.from_checkpoint(default_model_dir, threads=0)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        CompletionEngine.from_checkpoint(tmp_path)


def test_generic_runner_gives_the_same_suggestions(default_model_dir: Path) -> None:
    """Models other than GPT-2 go through transformers' DynamicCache: same answers, slower."""
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir, local_files_only=True)
    backend, eos = tokenizer.backend_tokenizer, tokenizer.eos_token_id
    weights = {name: value.numpy() for name, value in model.eval().state_dict().items()}
    fast = GPT2Runner(model.config.to_dict(), weights)
    exact = CompletionEngine(fast, backend, eos, SETTINGS)
    generic = CompletionEngine(HFRunner(model), backend, eos, SETTINGS)
    for text in ["woman portra", "woman portrait, ", "(masterpi"]:
        for method in ("complete", "inline"):
            expected = getattr(exact, method)(text, len(text))
            actual = getattr(generic, method)(text, len(text))
            assert expected or method == "inline", (method, text)
            assert [s.new_text for s in actual] == [s.new_text for s in expected]


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_thread_count_reaches_numpy_and_torch() -> None:
    """BLAS runs the default model, torch the engines that import it: both follow the setting."""
    try:
        set_threads(2)
        assert torch.get_num_threads() == 2 and _blas_threads() == {2}
        set_threads(None)
        assert torch.get_num_threads() == 1 and _blas_threads() == {1}
    finally:
        set_threads(None)
