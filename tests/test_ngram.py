"""Word statistics (model_store.ngram): Kneser-Ney probabilities, ranking, pruning, storage."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from model_store.checkpoint import Checkpoint, CheckpointError
from model_store.corpus import Corpus
from model_store.ngram import counting, storage
from model_store.ngram.model import UNKNOWN, SortedWords, WordNgram
from model_store.store import DEFAULT_STATS_DIR, ModelStore
from server.engine.words import split_typed
from tests.test_benchmarks_baselines import CORPUS


@pytest.fixture(scope="module")
def model() -> WordNgram:
    return counting.build(CORPUS)


def _distribution_sum(model: WordNgram, history: list[int]) -> float:
    targets = np.array([*range(len(model.vocab)), model.eos, UNKNOWN], dtype=np.int64)
    return float(model.probability(np.repeat([history], len(targets), axis=0), targets).sum())


def test_kneser_ney_is_a_distribution_in_every_context(model: WordNgram) -> None:
    assert model.order == 5 and all(len(level.words) for level in model.levels)
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
    model = counting.build(twice)
    for words, expected in [(["cat", "on", "a"], "mat"), (["dog", "on", "a"], "rug")]:
        assert model.vocab[model.ranked(model.history(words), "")[0][0]] == expected
    trigram = model.limited(3)
    assert trigram.vocab[trigram.ranked(trigram.history(["dog", "on", "a"]), "")[0][0]] == "mat"
    # Seen once, "frog on a" is pruned above the trigram: the trigram decides.
    frog = model.ranked(model.history(["frog", "on", "a"]), "")
    assert frog == trigram.ranked(trigram.history(["frog", "on", "a"]), "")
    unpruned = counting.build(twice, min_count=1)
    best = unpruned.ranked(unpruned.history(["frog", "on", "a"]), "")[0][0]
    assert unpruned.vocab[best] == "mat"


def test_the_trigram_view_is_the_trigram(model: WordNgram) -> None:
    prompts = ["a cat on a mat", "portrait of a knight, oil painting", "a zebra"]
    trigram = counting.build(CORPUS, order=3)
    assert trigram.order == 3 and len(trigram.levels) == 2
    assert model.limited(3).perplexity(prompts) == trigram.perplexity(prompts)
    assert (
        model.perplexity(prompts)["word_perplexity"]
        < trigram.perplexity(prompts)["word_perplexity"]
    )
    with pytest.raises(ValueError, match="order"):
        model.limited(6)
    with pytest.raises(ValueError, match="order"):
        counting.build(CORPUS, order=2)
    with pytest.raises(ValueError, match="one id"):
        model.probability(np.zeros((1, 0), dtype=np.int64), np.array([0]))


def test_perplexity_prefers_corpus_text_and_counts_unknown_words(
    model: WordNgram,
) -> None:
    seen = model.perplexity(["a cat on a mat"])
    scrambled = model.perplexity(["mat a on cat a"])
    unknown = model.perplexity(["a zebra on a mat"])
    assert 1 < seen["word_perplexity"] < scrambled["word_perplexity"]
    assert seen["oov_rate"] == 0
    assert unknown["oov_rate"] == pytest.approx(1 / 6)  # 5 words + end of prompt
    assert math.isfinite(unknown["word_perplexity"])
    assert seen["tokens"] == 6 and seen["words"] == 5


def test_the_partial_word_is_split_off() -> None:
    assert split_typed("a ca") == (["a"], "ca", 2)
    assert split_typed("a cat ") == (["a", "cat"], "", 6)
    assert split_typed("") == ([], "", 0)


def test_ranked_words_start_with_the_partial_word_best_first(
    model: WordNgram,
) -> None:
    ranked = model.ranked(model.history(["a"]), "ca")
    words = [model.vocab[token] for token, _ in ranked]
    assert words[0] == "cat" and set(words) <= {"cat", "cathedral"}
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)
    assert model.ranked(model.history(["a"]), "zz") == []


def test_statistics_are_built_once_per_corpus_and_memory_mapped(
    model: WordNgram, tmp_path: Path
) -> None:
    digest = "f" * 64
    assert storage.find(digest, tmp_path) is None
    first = storage.build_cached(Corpus("tiny", digest, CORPUS), tmp_path)
    again = storage.build_cached(Corpus("other", digest, ["unrelated"]), tmp_path)  # loaded
    found = storage.find(digest, tmp_path)
    trigrams = found.levels[1]
    assert found is not None and isinstance(trigrams.words.base, np.memmap)  # mapped, not read
    assert again.vocab.lines == first.vocab.lines == found.vocab.lines == model.vocab.lines
    prompts = ["a cat on a mat", "portrait of a zebra"]
    assert again.perplexity(prompts) == first.perplexity(prompts)
    # stored as float32
    assert first.perplexity(prompts) == pytest.approx(model.perplexity(prompts), rel=1e-6)
    # Orders 4 and 5 are read from disk, not mapped, and rank as the tables in memory do.
    assert all(isinstance(level.words, storage.DiskArray) for level in found.levels[2:])
    for words in (["a", "cat", "on", "a"], ["of", "a"], []):
        for partial in ("", "m", "ca"):
            stored = found.ranked(found.history(words), partial)
            exact = model.ranked(model.history(words), partial)
            assert [token for token, _ in stored] == [token for token, _ in exact]
            assert [p for _, p in stored] == pytest.approx([p for _, p in exact], rel=1e-6)
    assert storage.find("e" * 64, tmp_path) is None


def test_the_store_finds_the_statistics_of_a_models_training_corpus(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    trained_on = Checkpoint("m", tmp_path, {"corpus": {"name": "tiny", "sha256": "d" * 64}})
    assert store.word_stats(trained_on) is None  # not built yet
    assert store.word_stats(Checkpoint("hub", tmp_path, {})) is None  # corpus unknown
    storage.build_cached(Corpus("tiny", "d" * 64, CORPUS), tmp_path / "wordstats")
    found = store.word_stats(trained_on)
    assert found is not None and "cat" in found.vocab


def test_sorted_words_find_words_and_prefixes_by_their_bytes() -> None:
    words = sorted(["cat", "cat,", "cathedral", "café", "caña", "dog", "猫", "🐱"])
    vocab = SortedWords.from_words(words)
    assert list(vocab) == words and len(vocab) == len(words)
    assert [vocab.index_of(word) for word in words] == list(range(len(words)))
    assert vocab.index_of("ca") == vocab.index_of("cats") == vocab.index_of("") == UNKNOWN
    low, high = vocab.prefix_range("cat")
    assert [vocab[i] for i in range(low, high)] == ["cat", "cat,", "cathedral"]
    low, high = vocab.prefix_range("caf")
    assert [vocab[i] for i in range(low, high)] == ["café"]
    assert vocab.prefix_range("zebra")[0] == vocab.prefix_range("zebra")[1]
    assert vocab[-1] == "🐱"
    with pytest.raises(IndexError):
        vocab[len(words)]
    empty = SortedWords(b"")
    assert len(empty) == 0 and empty.index_of("cat") == UNKNOWN and list(empty) == []


def test_disk_arrays_read_and_search_as_numpy_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.DiskArray, "FENCE", 4)  # many blocks for 50 keys
    monkeypatch.setattr(storage.DiskArray, "SPAN", 8)  # and indices read one by one
    keys = np.unique(np.random.default_rng(0).integers(0, 1000, 60)).astype(np.int64)
    np.save(tmp_path / "keys.npy", keys)
    stored = storage.DiskArray(tmp_path / "keys.npy")
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
        storage.DiskArray(tmp_path / "grid.npy")
    np.save(tmp_path / "short.npy", keys)
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match="header needs"):
        storage.DiskArray(tmp_path / "short.npy")


def test_pruning_at_zero_keeps_the_model_and_more_pruning_keeps_less(model: WordNgram) -> None:
    same = counting.prune(model, 0.0)
    histories = np.array([model.history(w) for w in (["a", "cat"], ["on", "a"], [])])
    targets = np.arange(len(model.vocab) + 1)
    for history in histories:
        rows = np.repeat([history], len(targets), axis=0)
        assert np.allclose(same.probability(rows, targets), model.probability(rows, targets))
    sizes = [
        sum(len(level.words) for level in counting.prune(model, t).levels) for t in (0, 1e-4, 1e-2)
    ]
    assert sizes[0] > sizes[1] > sizes[2] > 0


def test_a_pruned_model_is_still_a_distribution_in_every_context(model: WordNgram) -> None:
    pruned = counting.prune(model, 1e-3)
    assert sum(len(level.words) for level in pruned.levels) < sum(
        len(level.words) for level in model.levels
    )
    for words in (["a", "cat"], ["on", "a"], [], ["a", "cat", "on", "a"], ["zebra"]):
        assert _distribution_sum(pruned, pruned.history(words)) == pytest.approx(1.0)


def test_the_pack_round_trips_quantised_narrow_and_mapped(model: WordNgram, tmp_path: Path) -> None:
    storage.save(model, tmp_path / "pack", quantised=True, name="pack")
    pack = storage.load(tmp_path / "pack", "rebuild it")
    assert np.load(tmp_path / "pack" / "order3_prob.npy").dtype == np.uint8  # 8-bit codes
    assert np.load(tmp_path / "pack" / "order2_words.npy").dtype == np.uint8  # a tiny vocabulary
    assert list(pack.vocab) == list(model.vocab) and pack.order == model.order
    for words in (["a", "cat"], ["portrait", "of", "a"], []):
        for partial in ("", "c"):
            exact = model.ranked(model.history(words), partial)
            packed = pack.ranked(pack.history(words), partial)
            assert packed[0][0] == exact[0][0]
            packed_p = dict(packed)
            for token, probability in exact[:5]:
                assert packed_p[token] == pytest.approx(probability, rel=0.2)  # 256 levels


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove"])
def test_damaged_statistics_are_refused_with_the_file_and_the_repair(
    model: WordNgram, tmp_path: Path, damage: str
) -> None:
    directory = tmp_path / "stats"
    storage.save(model, directory, quantised=True, name="stats")
    victim = directory / "order3_words.npy"
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        victim.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        victim.unlink()
    with pytest.raises(CheckpointError, match=r"order3_words\.npy.*rebuild them with"):
        storage.load(directory, storage.rebuild_hint(directory))


def test_the_pack_serves_the_default_models_corpus_until_full_statistics_are_built(
    tmp_path: Path,
) -> None:
    store = ModelStore(tmp_path)
    default = store.resolve("default")
    assert store.word_stats_dir(default) == DEFAULT_STATS_DIR
    assert store.statistics_label(default.path) == "pack"
    pack = store.word_stats(default)
    assert pack is not None and pack.order == 5 and "portrait" in pack.vocab
    digest = default.manifest["corpus"]["sha256"]
    storage.save(
        counting.build(CORPUS),
        storage.stats_dir(digest, tmp_path / "wordstats"),
        quantised=False,
        name="full",
    )
    assert store.statistics_label(default.path) == "full"  # built: preferred to the pack
    assert store.word_stats_dir(default) == storage.stats_dir(digest, tmp_path / "wordstats")
