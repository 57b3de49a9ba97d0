"""Word statistics (model_store.wordstats): Kneser-Ney probabilities, ranking and storage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from model_store import wordstats
from model_store.checkpoint import Checkpoint
from model_store.corpus import Corpus
from model_store.store import ModelStore
from tests.test_benchmarks_baselines import CORPUS


@pytest.fixture(scope="module")
def model() -> wordstats.KneserNeyTrigram:
    return wordstats.build(CORPUS)


def _distribution_sum(model: wordstats.KneserNeyTrigram, a: int, b: int) -> float:
    targets = np.array([*range(len(model.vocab)), model.eos, wordstats.UNKNOWN], dtype=np.int64)
    size = len(targets)
    return float(model.probability(np.full(size, a), np.full(size, b), targets).sum())


def test_kneser_ney_is_a_distribution_in_every_context(model: wordstats.KneserNeyTrigram) -> None:
    cat, on, a = model.id_of("cat"), model.id_of("on"), model.id_of("a")
    for context in [
        (a, cat),
        (on, a),
        (model.bos, model.bos),
        (model.bos, a),
        (wordstats.UNKNOWN, a),
        (wordstats.UNKNOWN, wordstats.UNKNOWN),
        (cat, a),
    ]:
        assert _distribution_sum(model, *context) == pytest.approx(1.0)


def test_perplexity_prefers_corpus_text_and_counts_unknown_words(
    model: wordstats.KneserNeyTrigram,
) -> None:
    seen = model.perplexity(["a cat on a mat"])
    scrambled = model.perplexity(["mat a on cat a"])
    unknown = model.perplexity(["a zebra on a mat"])
    assert 1 < seen["word_perplexity"] < scrambled["word_perplexity"]
    assert seen["oov_rate"] == 0
    assert unknown["oov_rate"] == pytest.approx(1 / 6)  # 5 words + end of prompt
    assert math.isfinite(unknown["word_perplexity"])
    assert seen["tokens"] == 6 and seen["words"] == 5


def test_tokens_keep_punctuation_and_the_partial_word_is_split_off() -> None:
    assert wordstats.tokenize("a cat, highly detailed") == ["a", "cat,", "highly", "detailed"]
    assert wordstats.split_typed("a ca") == (["a"], "ca", 2)
    assert wordstats.split_typed("a cat ") == (["a", "cat"], "", 6)
    assert wordstats.split_typed("") == ([], "", 0)


def test_ranked_words_start_with_the_partial_word_best_first(
    model: wordstats.KneserNeyTrigram,
) -> None:
    a = model.id_of("a")
    ranked = model.ranked(model.bos, a, "ca")
    words = [model.vocab[token] for token, _ in ranked]
    assert words[0] == "cat" and set(words) <= {"cat", "cathedral"}
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert model.ranked(model.bos, a, "zz") == []


def test_statistics_are_built_once_per_corpus_and_memory_mapped(
    model: wordstats.KneserNeyTrigram, tmp_path: Path
) -> None:
    digest = "f" * 64
    assert wordstats.find(digest, tmp_path) is None
    first = wordstats.build_cached(Corpus("tiny", digest, CORPUS), tmp_path)
    again = wordstats.build_cached(Corpus("other", digest, ["unrelated"]), tmp_path)  # loaded
    found = wordstats.find(digest, tmp_path)
    assert found is not None and isinstance(found.tri_words.base, np.memmap)  # mapped, not read
    assert again.vocab.lines == first.vocab.lines == found.vocab.lines == model.vocab.lines
    prompts = ["a cat on a mat", "portrait of a zebra"]
    assert again.perplexity(prompts) == first.perplexity(prompts) == model.perplexity(prompts)
    assert wordstats.find("e" * 64, tmp_path) is None


def test_the_store_finds_the_statistics_of_a_models_training_corpus(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    trained_on = Checkpoint("m", tmp_path, {"corpus": {"name": "tiny", "sha256": "d" * 64}})
    assert store.word_stats(trained_on) is None  # not built yet
    assert store.word_stats(Checkpoint("hub", tmp_path, {})) is None  # corpus unknown
    wordstats.build_cached(Corpus("tiny", "d" * 64, CORPUS), tmp_path / "wordstats")
    found = store.word_stats(trained_on)
    assert found is not None and "cat" in found.vocab


def test_sorted_words_find_words_and_prefixes_by_their_bytes() -> None:
    words = sorted(["cat", "cat,", "cathedral", "café", "caña", "dog", "猫", "🐱"])
    vocab = wordstats.SortedWords.from_words(words)
    assert list(vocab) == words and len(vocab) == len(words)
    assert [vocab.index_of(word) for word in words] == list(range(len(words)))
    assert vocab.index_of("ca") == vocab.index_of("cats") == vocab.index_of("") == wordstats.UNKNOWN
    low, high = vocab.prefix_range("cat")
    assert [vocab[i] for i in range(low, high)] == ["cat", "cat,", "cathedral"]
    low, high = vocab.prefix_range("caf")
    assert [vocab[i] for i in range(low, high)] == ["café"]
    assert vocab.prefix_range("zebra")[0] == vocab.prefix_range("zebra")[1]
    assert vocab[-1] == "🐱"
    with pytest.raises(IndexError):
        vocab[len(words)]
    empty = wordstats.SortedWords(b"")
    assert len(empty) == 0 and empty.index_of("cat") == wordstats.UNKNOWN and list(empty) == []
