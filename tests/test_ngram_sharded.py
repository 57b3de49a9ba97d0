"""Sharded counting (model_store.ngram.sharded) gives exactly the in-memory counts."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from model_store import cli
from model_store.corpus import load_corpus
from model_store.ngram import counting, sharded, storage
from model_store.ngram.counting import Counts


def _generated_prompts(count: int = 400, seed: int = 7) -> list[str]:
    """Prompts recombined from a few phrases: many 4- and 5-grams repeat (so count pruning
    keeps some and drops others), plus the odd cases: empty, one word, non-ASCII words."""
    rng = random.Random(seed)
    phrases = [
        "a portrait of a woman",
        "a cat on a sofa",
        "highly detailed",
        "trending on artstation",
        "by greg rutkowski",
        "oil painting",
        "8k",
        "ciudad de méxico",
        "夜の街",
        "((masterpiece))",
    ]
    words = [f"w{n}" for n in range(60)]
    prompts = ["", "solo", "a", "a cat", "a cat"]
    for _ in range(count):
        parts = rng.sample(phrases, rng.randint(1, 4))
        parts.insert(rng.randint(0, len(parts)), " ".join(rng.choices(words, k=rng.randint(1, 3))))
        prompts.append(", ".join(parts))
    return prompts


def _assert_identical(expected: Counts, found: Counts) -> None:
    assert found.vocab == expected.vocab
    assert found.unknown_probability == expected.unknown_probability
    np.testing.assert_array_equal(found.unigram, expected.unigram, strict=True)
    assert len(found.orders) == len(expected.orders)
    for mine, theirs in zip(found.orders, expected.orders, strict=True):
        assert mine.discount == theirs.discount
        for field in ("keys", "start", "total", "words", "counts", "backoff"):
            a, b = getattr(mine, field), getattr(theirs, field)
            assert (a is None) == (b is None), field
            if a is not None:
                np.testing.assert_array_equal(a, b, err_msg=field, strict=True)


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return _generated_prompts()


@pytest.fixture(scope="module")
def in_memory(prompts: list[str]) -> Counts:
    counts = counting.count(prompts)
    assert [len(level.words) for level in counts.orders[2:]] > [0, 0]  # the case is not trivial
    assert min(int(level.counts.min()) for level in counts.orders) == 1
    return counts


def test_tiny_shards_over_two_workers_count_exactly_what_memory_does(
    prompts: list[str], in_memory: Counts, tmp_path: Path
) -> None:
    found = sharded.count(
        iter(prompts), workers=2, shard_prompts=13, merge_rows=60, scratch=tmp_path
    )
    _assert_identical(in_memory, found)
    assert list(tmp_path.iterdir()) == []  # the runs on disk are gone


@pytest.mark.parametrize(("order", "min_count"), [(3, 2), (4, 1), (5, 3)])
def test_one_worker_and_other_orders_count_exactly_what_memory_does(
    prompts: list[str], order: int, min_count: int
) -> None:
    found = sharded.count(prompts, order, min_count, shard_prompts=50, merge_rows=200)
    _assert_identical(counting.count(prompts, order, min_count), found)


def test_one_shard_holding_everything_is_the_same(prompts: list[str], in_memory: Counts) -> None:
    _assert_identical(in_memory, sharded.count(prompts, shard_prompts=10 * len(prompts)))


@pytest.mark.parametrize(
    "arguments", [{"order": 2}, {"min_count": 0}, {"workers": 0}, {"shard_prompts": 0}]
)
def test_bad_arguments_are_refused(arguments: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be"):
        sharded.count(["a cat"], **arguments)


def test_stats_command_counts_in_shards_over_workers(
    prompts: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPT_AUTOCOMPLETE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROMPT_AUTOCOMPLETE_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "prompts.txt"
    data.write_text("\n".join(p for p in prompts if p) + "\n", encoding="utf-8")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command = ["stats", "--data", str(data), "--workers", "2", "--shard-prompts", "40"]
    assert cli.main([*command, "--scratch", str(scratch)]) == 0
    built = next((tmp_path / "home").rglob(storage.META)).parent
    model = storage.load(built, "rebuild")
    expected = counting.build(load_corpus(data).prompts)
    assert list(model.vocab) == list(expected.vocab)
    for mine, theirs in zip(model.levels, expected.levels, strict=True):
        np.testing.assert_array_equal(np.asarray(mine.words[0 : len(mine.words)]), theirs.words)
        stored = np.asarray(mine.prob[0 : len(mine.prob)])  # the store keeps float32
        np.testing.assert_array_equal(stored, theirs.prob.astype(stored.dtype))


def test_stats_command_refuses_zero_workers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["stats", "--workers", "0"])
    assert "must be at least 1" in capsys.readouterr().err


def test_a_vocabulary_too_large_for_int64_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    many = [f"w{n}" for n in range(2_097_150)]
    monkeypatch.setattr(sharded, "_encode_shard", lambda task: many)
    with pytest.raises(ValueError, match="2,097,150 words are too many"):
        sharded.count(["a cat"])
