"""Model runners and the byte-level vocabulary: exactness, cache reuse, batch isolation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from server.engine.engine import load_runner
from server.engine.hf_runner import HFRunner
from server.engine.numeric import log_softmax
from server.engine.runner import GPT2Runner, Runner
from server.engine.vocab import Vocabulary


@pytest.fixture(scope="module")
def model(default_model_dir: Path):
    return AutoModelForCausalLM.from_pretrained(default_model_dir, local_files_only=True).eval()


@pytest.fixture(scope="module")
def tokenizer(default_model_dir: Path):
    return AutoTokenizer.from_pretrained(default_model_dir, local_files_only=True)


@pytest.fixture(scope="module")
def ids(tokenizer) -> list[int]:
    text = "portrait of a woman, highly detailed, (masterpiece:1.2), 猫 🐱"
    return [tokenizer.eos_token_id, *tokenizer.encode(text, add_special_tokens=False)]


def reference_logprobs(model, ids: list[int]) -> np.ndarray:
    with torch.inference_mode():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], dim=-1).numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def fast_runner(model) -> GPT2Runner:
    """The numpy path over a GPT-2 already in memory (the same weights as transformers')."""
    weights = {name: value.numpy() for name, value in model.eval().state_dict().items()}
    return GPT2Runner(model.config.to_dict(), weights)


def runners(model) -> list[tuple[Runner, float]]:
    """Each runner with the tolerance it is held to against transformers' plain forward."""
    return [(fast_runner(model), 1e-4), (HFRunner(model), 1e-4)]


def test_prime_matches_transformers(model, ids: list[int]) -> None:
    expected = reference_logprobs(model, ids)
    for runner, tolerance in runners(model):
        assert_close(runner.prime(ids).logprobs, expected, tolerance)


def test_steps_match_transformers(model, ids: list[int]) -> None:
    """Batched steps, reordering and repeating rows behave like separate full forwards."""
    continuations = [[5, 6, 7], [8, 9, 10], [11, 12, 13]]
    for runner, tolerance in runners(model):
        rows = runner.fork(runner.prime(ids), 3, capacity=8)
        runner.step(rows, np.array([c[0] for c in continuations]))
        runner.select(rows, np.array([2, 0, 0]))  # reorder and repeat
        picked = [continuations[2], continuations[0], continuations[0]]
        logits = runner.step(rows, np.array([c[1] for c in picked]))
        for row, continuation in enumerate(picked):
            expected = reference_logprobs(model, ids + continuation[:2])
            assert_close(log_softmax(logits[row]), expected, tolerance)


def test_prefix_reuse_equals_a_cold_start(model, ids: list[int]) -> None:
    for runner, tolerance in runners(model):
        runner.prime(ids[:6])
        runner.prime([*ids[:4], 20, 21])  # the user edited the end
        assert runner.reused_tokens == 4
        warm = runner.prime([*ids[:4], 20, 21, 22]).logprobs
        assert runner.reused_tokens == 6
        shorter = runner.prime(ids[:3]).logprobs  # the user deleted text
        assert_close(warm, reference_logprobs(model, [*ids[:4], 20, 21, 22]), tolerance)
        assert_close(shorter, reference_logprobs(model, ids[:3]), tolerance)


def test_decoding_does_not_touch_the_stored_context(model, ids: list[int]) -> None:
    for runner, _ in runners(model):
        before = runner.prime(ids).logprobs.copy()
        rows = runner.fork(runner.prime(ids), 2, capacity=4)
        for token in (30, 31, 32):
            runner.step(rows, np.array([token, token + 1]))
        runner.select(rows, np.array([1]))
        again = runner.prime(ids).logprobs
        extended = runner.prime([*ids, 40]).logprobs
        assert_close(again, before, 0)
        fresh = type(runner)(model) if isinstance(runner, HFRunner) else fast_runner(model)
        assert_close(extended, fresh.prime([*ids, 40]).logprobs, 1e-5)


def test_context_length_is_checked(model) -> None:
    for runner, _ in runners(model):
        with pytest.raises(ValueError):
            runner.prime([])
        with pytest.raises(ValueError):
            runner.prime([1] * (runner.max_positions + 1))


def test_gpt2_checkpoints_load_without_transformers(model, ids: list[int], default_model_dir: Path):
    """The serving path reads the safetensors itself; its answers are transformers'."""
    runner = load_runner(default_model_dir)
    assert isinstance(runner, GPT2Runner)
    assert_close(runner.prime(ids).logprobs, reference_logprobs(model, ids), 1e-4)


def test_other_checkpoints_run_through_transformers(tmp_path: Path, model) -> None:
    """A causal LM that is not plain GPT-2 gets the generic runner."""
    config = model.config.to_dict() | {"add_cross_attention": True}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert not GPT2Runner.supports(config)
    with pytest.raises(ValueError, match="not a plain GPT-2"):
        GPT2Runner.from_directory(tmp_path)


def test_an_untied_checkpoint_without_its_output_layer_is_refused(model) -> None:
    weights = {k: v.numpy() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    config = model.config.to_dict() | {"tie_word_embeddings": False}
    with pytest.raises(ValueError, match=r"lm_head\.weight"):
        GPT2Runner(config, weights)


def test_a_token_tree_scores_each_node_after_its_own_path(model, ids: list[int]) -> None:
    """``logits_tree``: node i sees the context and its ancestors only, not its siblings."""
    tokens, parents = [5, 6, 7, 8], [-1, 0, 0, 2]
    paths = [[5], [5, 6], [5, 7], [5, 7, 8]]
    for runner, tolerance in runners(model):
        logits = runner.logits_tree(runner.prime(ids), tokens, parents)
        unchanged = runner.prime(ids).logprobs
        assert runner.context_ids == ids and runner.reused_tokens == len(ids)
        assert_close(unchanged, reference_logprobs(model, ids), tolerance)
        for node, path in enumerate(paths):
            expected = reference_logprobs(model, ids + path)
            assert_close(log_softmax(logits[node]), expected, tolerance)


@pytest.fixture(scope="module")
def vocab(tokenizer, model) -> Vocabulary:
    return Vocabulary(tokenizer.backend_tokenizer, tokenizer.eos_token_id, model.config.vocab_size)


class TestVocabulary:
    def test_token_bytes_round_trip(self, vocab: Vocabulary, tokenizer) -> None:
        text = "Café 猫, (masterpiece:1.2) 🐱 über"
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert b"".join(vocab.token_bytes[i] for i in ids).decode("utf-8") == text

    def test_special_tokens_have_no_bytes(self, vocab: Vocabulary) -> None:
        assert vocab.token_bytes[vocab.eos_id] is None
        assert bool(vocab.boundary_mask[vocab.eos_id])

    def test_consistent_tokens_agree_with_the_typed_bytes(self, vocab: Vocabulary) -> None:
        typed = b" portra"
        ids = vocab.consistent(typed).tolist()
        assert ids
        for token in ids:
            data = vocab.token_bytes[token]
            assert data and (typed.startswith(data) or data.startswith(typed))
        everything = [
            t
            for t, d in enumerate(vocab.token_bytes)
            if d and (typed.startswith(d) or d.startswith(typed))
        ]
        assert sorted(ids) == sorted(everything)

    def test_word_consistent_only_continues_the_word(self, vocab: Vocabulary) -> None:
        for token in vocab.word_consistent(b" ca").tolist():
            data = vocab.token_bytes[token]
            assert data is not None
            assert data[3:].decode("utf-8", errors="replace").isalpha() or len(data) <= 3

    def test_banned_tokens_may_still_retype_the_users_text(self, vocab: Vocabulary) -> None:
        typed = b" cat"
        ids = vocab.consistent(typed)
        banned = np.ones(vocab.size, dtype=bool)
        kept = vocab.allowed(ids, typed, banned).tolist()
        assert kept and all(len(vocab.token_bytes[t] or b"") <= len(typed) for t in kept)


def test_a_primed_context_is_continued_even_after_another_is_primed(
    model, tokenizer, ids: list[int]
) -> None:
    """The blend primes the line before the typed word between the engine's ``prime`` and its
    ``fork``: decoding must continue the context it was handed, whatever was primed since."""
    other = [
        tokenizer.eos_token_id,
        *tokenizer.encode("a castle on a hill", add_special_tokens=False),
    ]
    for runner, tolerance in runners(model):
        first = runner.prime(ids)
        runner.prime(other)
        if isinstance(runner, HFRunner):  # one cache, edited in place: refused, not wrong
            with pytest.raises(RuntimeError, match="prime it again"):
                runner.fork(first, 1, capacity=2)
            continue
        rows = runner.fork(first, 1, capacity=2)
        logits = runner.step(rows, np.array([5]))
        tree = runner.logits_tree(first, [5], [-1])
        expected = reference_logprobs(model, [*ids, 5])
        assert_close(log_softmax(logits[0]), expected, tolerance)
        assert_close(log_softmax(tree[0]), expected, tolerance)
