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
def model() -> wordstats.KneserNeyNgram:
    return wordstats.build(CORPUS)


def _distribution_sum(model: wordstats.KneserNeyNgram, history: list[int]) -> float:
    targets = np.array([*range(len(model.vocab)), model.eos, wordstats.UNKNOWN], dtype=np.int64)
    return float(model.probability(np.repeat([history], len(targets), axis=0), targets).sum())


def test_kneser_ney_is_a_distribution_in_every_context(model: wordstats.KneserNeyNgram) -> None:
    assert model.order == 5 and all(len(level.keys) for level in model.higher)
    for words in [
        ["a", "cat"],
        ["on", "a"],
        [],
        ["a"],
        ["a", "cat", "on"],  # a pruned 4-gram context: "a cat on a" is seen twice
        ["a", "cat", "on", "a"],
        ["zebra", "a"],
        ["zebra", "gnu"],
        ["cat", "a"],
        ["portrait", "of", "a", "woman,"],
    ]:
        for order in (3, 4, 5):
            limited = model.limited(order)
            assert _distribution_sum(limited, limited.history(words)) == pytest.approx(1.0)


def test_longer_contexts_tell_apart_what_the_trigram_cannot() -> None:
    twice = ["red cat on a mat", "blue dog on a rug"] * 2 + ["green frog on a mat"]
    model = wordstats.build(twice)
    for words, expected in [(["cat", "on", "a"], "mat"), (["dog", "on", "a"], "rug")]:
        assert model.vocab[model.ranked(model.history(words), "")[0][0]] == expected
    trigram = model.limited(3)
    assert trigram.vocab[trigram.ranked(trigram.history(["dog", "on", "a"]), "")[0][0]] == "mat"
    # Seen once, "frog on a" is pruned above the trigram: the trigram decides.
    frog = model.ranked(model.history(["frog", "on", "a"]), "")
    assert frog == trigram.ranked(trigram.history(["frog", "on", "a"]), "")
    unpruned = wordstats.build(twice, min_count=1)
    best = unpruned.ranked(unpruned.history(["frog", "on", "a"]), "")[0][0]
    assert unpruned.vocab[best] == "mat"


def test_the_trigram_view_is_the_trigram(model: wordstats.KneserNeyNgram) -> None:
    prompts = ["a cat on a mat", "portrait of a knight, oil painting", "a zebra"]
    trigram = wordstats.build(CORPUS, order=3)
    assert trigram.order == 3 and trigram.higher == ()
    assert model.limited(3).perplexity(prompts) == trigram.perplexity(prompts)
    assert (
        model.perplexity(prompts)["word_perplexity"]
        < trigram.perplexity(prompts)["word_perplexity"]
    )
    with pytest.raises(ValueError, match="order"):
        model.limited(6)
    with pytest.raises(ValueError, match="order"):
        wordstats.build(CORPUS, order=2)
    with pytest.raises(ValueError, match="two ids"):
        model.probability(np.array([[model.bos]]), np.array([0]))


def test_perplexity_prefers_corpus_text_and_counts_unknown_words(
    model: wordstats.KneserNeyNgram,
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
    model: wordstats.KneserNeyNgram,
) -> None:
    ranked = model.ranked(model.history(["a"]), "ca")
    words = [model.vocab[token] for token, _ in ranked]
    assert words[0] == "cat" and set(words) <= {"cat", "cathedral"}
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert model.ranked(model.history(["a"]), "zz") == []


def test_statistics_are_built_once_per_corpus_and_memory_mapped(
    model: wordstats.KneserNeyNgram, tmp_path: Path
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
    # Orders 4 and 5 are read from disk, not mapped, and rank as the tables in memory do.
    assert all(isinstance(level.words, wordstats.DiskArray) for level in found.higher)
    for words in (["a", "cat", "on", "a"], ["of", "a"], []):
        for partial in ("", "m", "ca"):
            assert found.ranked(found.history(words), partial) == model.ranked(
                model.history(words), partial
            )
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


def test_disk_arrays_read_and_search_as_numpy_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wordstats.DiskArray, "FENCE", 4)  # many blocks for 50 keys
    monkeypatch.setattr(wordstats.DiskArray, "SPAN", 8)  # and indices read one by one
    keys = np.unique(np.random.default_rng(0).integers(0, 1000, 60)).astype(np.int64)
    np.save(tmp_path / "keys.npy", keys)
    stored = wordstats.DiskArray(tmp_path / "keys.npy")
    assert len(stored) == len(keys)
    assert np.array_equal(stored[3:17], keys[3:17]) and len(stored[len(keys) :]) == 0
    for index in (np.array([0, 5, 5, 2]), np.array([1, len(keys) - 1, 0]), np.array([], int)):
        assert np.array_equal(stored[index], keys[index])
    query = np.array([-5, keys[0], keys[7] + 1, keys[-1], keys[-1] + 1, 500])
    assert np.array_equal(stored.searchsorted(query), np.searchsorted(keys, query))
    with pytest.raises(ValueError, match="contiguous"):
        stored[::2]
    np.save(tmp_path / "grid.npy", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="flat array"):
        wordstats.DiskArray(tmp_path / "grid.npy")
