"""The study's word-LSTM benchmark: tokenisation, windows, training through the store, use."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model_store import cli
from model_store.checkpoint import Checkpoint, CheckpointError
from model_store.corpus import load_corpus
from model_store.presets import get_preset
from model_store.store import ModelStore, StoreError
from model_store.study.lstm import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    EncodedPrompts,
    Vocabulary,
    _TrainingState,
    detokenize,
    load_word_lstm,
    lstm_perplexity,
    train_word_lstm,
)
from prompt_words import study_tokens
from server.engine.study.lstm_engine import WordLSTMPredictor
from tests.study_prompts import make_prompts, write_prompts


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkpoint]:
    """``lstm-tiny`` trained through the CLI into a private store (about 5 s)."""
    root = tmp_path_factory.mktemp("lstm")
    data = write_prompts(root / "prompts.txt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMPT_AUTOCOMPLETE_HOME", str(root / "home"))
        patch.delenv("PROMPT_AUTOCOMPLETE_CACHE", raising=False)
        assert cli.main(["train", "lstm-tiny", "--data", str(data)]) == 0
        yield ModelStore().resolve("lstm-tiny")


@pytest.fixture(scope="module")
def predictor(trained: Checkpoint) -> WordLSTMPredictor:
    return WordLSTMPredictor.from_checkpoint(trained.path)


# -- tokenisation and vocabulary -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "after", "text"),
    [
        (["a", "cat", ",", "8k"], "", "a cat, 8k"),
        (["(", "(", "masterpiece", ")", ")", ","], "", "((masterpiece)),"),
        (["woman", ","], "portrait of a", " woman,"),
        ([",", "detailed"], "a cat", ", detailed"),
        (["detailed"], "a cat, ", "detailed"),
        ([], "a cat", ""),
    ],
)
def test_detokenize_continues_the_text(tokens: list[str], after: str, text: str) -> None:
    assert detokenize(tokens, after=after) == text


# A checkpoint saved in the first format ("word-lstm-1") by the tokenizer of its time, from these
# prompts (a 35-token vocabulary, untrained 4-wide weights: 2 kB).
SAVED = Path(__file__).resolve().parent / "data" / "word_lstm_v1"
SAVED_PROMPTS = [
    "Portrait of a cat, highly detailed, 8k",
    "a self-portrait (masterpiece:1.2), don\u2019t stop, sci-fi city",
    "Cat's eye, 1.5x zoom; [dusk] {red|blue}",
]


def test_a_saved_checkpoint_loads_and_todays_tokens_rebuild_its_vocabulary() -> None:
    model, vocab, config = load_word_lstm(SAVED)
    assert Vocabulary.build(SAVED_PROMPTS, max_size=1000, min_count=1).words == vocab.words
    assert vocab.encode(study_tokens("a self-portrait, don\u2019")) == [5, 12, 4, UNK_ID, UNK_ID]
    predictor = WordLSTMPredictor(model, vocab, config)
    # What the predictor answered when the checkpoint was saved.
    assert [word for word, _ in predictor.complete_word("Portrait of a c", k=3)] == [
        "city", "cat", "cat's",
    ]  # fmt: skip
    assert [word for word, _ in predictor.complete_word("a self-portrait, don\u2019")] == [
        "don\u2019t"
    ]
    assert [word for word, _ in predictor.complete_word("Cat's eye, 1.")] == ["1.2", "1.5x"]


def test_vocabulary_caps_by_frequency_and_maps_the_rest_to_unk() -> None:
    vocab = Vocabulary.build(["a cat", "a dog", "a cat, a bird", "rare"], max_size=7, min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "cat"]
    assert vocab.encode(["a", "bird", "cat"]) == [4, UNK_ID, 5]
    assert Vocabulary.build(["a b c d e f"], max_size=6, min_count=1).words[4:] == ["a", "b"]
    assert Vocabulary(vocab.words).ids == vocab.ids
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "b"])


def test_prefix_lookup_returns_only_matching_words() -> None:
    vocab = Vocabulary.build(["art artwork artistic arts bart , ("], max_size=100, min_count=1)
    assert sorted(w for w, _ in vocab.with_prefix("art")) == ["art", "artistic", "arts", "artwork"]
    assert vocab.with_prefix("zz") == []
    assert {w for w, _ in vocab.word_entries} == {"art", "artwork", "artistic", "arts", "bart"}


def test_windows_are_left_padded_and_never_cross_prompts() -> None:
    vocab = Vocabulary.build(["a b c", "d e"], max_size=100, min_count=1)
    data = EncodedPrompts.encode(["a b c", "d e"], vocab)
    a, b, c, d, e = vocab.encode(["a", "b", "c", "d", "e"])
    assert data.stream.tolist() == [BOS_ID, a, b, c, EOS_ID, BOS_ID, d, e, EOS_ID]
    assert data.targets.tolist() == [1, 2, 3, 4, 6, 7, 8]  # every position but the <bos>
    inputs, targets = data.windows(data.targets, context=3)
    assert targets.tolist() == [a, b, c, EOS_ID, d, e, EOS_ID]
    assert inputs.tolist() == [
        [PAD_ID, PAD_ID, BOS_ID],
        [PAD_ID, BOS_ID, a],
        [BOS_ID, a, b],
        [a, b, c],
        [PAD_ID, PAD_ID, BOS_ID],  # the second prompt does not see the first
        [PAD_ID, BOS_ID, d],
        [BOS_ID, d, e],
    ]


def test_early_stopping_counts_evaluations_since_the_best() -> None:
    state = _TrainingState(0, [], False)
    for loss in (3.0, 2.0):
        state.record(0.0, 1.0, loss)
    assert state.improved()
    state.record(0.0, 0.5, 2.5)
    state.record(0.0, 0.1, 2.1)
    assert not state.improved()
    assert state.evals_since_best() == 2


# -- training through the store -------------------------------------------------------------------


def test_trained_checkpoint_has_manifest_kind_files_and_metrics(trained: Checkpoint) -> None:
    manifest = trained.manifest
    assert manifest["kind"] == "word-lstm"
    assert {"model.safetensors", "vocab.json", "config.json", "history.json", "loss.png"} <= set(
        manifest["files"]
    )
    assert manifest["preset"]["name"] == "lstm-tiny"
    metrics = manifest["metrics"]
    assert (
        1 < metrics["token_perplexity"] < len(json.loads((trained.path / "vocab.json").read_text()))
    )
    assert metrics["word_perplexity"] > metrics["token_perplexity"]  # more tokens than words
    assert 0 <= metrics["oov_rate"] <= 1
    history = json.loads((trained.path / "history.json").read_text())
    assert metrics["valid_loss"] == min(h["valid_loss"] for h in history)


def test_a_changed_byte_in_the_vocabulary_is_refused(trained: Checkpoint, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    vocab = copy / "vocab.json"
    vocab.write_text(vocab.read_text().replace('"scene"', '"sceNe"'))
    with pytest.raises(CheckpointError, match=r"vocab\.json.*corrupt"):
        ModelStore().resolve(str(copy))


def test_training_stopped_by_its_time_budget_resumes(tmp_path: Path, store_home: Path) -> None:
    data = write_prompts(tmp_path / "p.txt")
    store = ModelStore()
    with pytest.raises(StoreError, match="rerun the same command to resume"):
        store.train("lstm-tiny", data=str(data), max_minutes=1e-9)
    saved = json.loads((store_home / "runs" / "lstm-tiny" / "state" / "state.json").read_text())
    assert saved["step"] == 1
    checkpoint = store.train("lstm-tiny", data=str(data))
    history = json.loads((checkpoint.path / "history.json").read_text())
    assert [h["step"] for h in history] == [20, 40, 60]


def test_perplexity_counts_unknown_words_and_refuses_nothing(trained: Checkpoint) -> None:
    model, vocab, config = load_word_lstm(trained.path)
    known = lstm_perplexity(model, vocab, config, make_prompts(20))
    unknown = lstm_perplexity(model, vocab, config, ["zyzzyva quokka xylophone"])
    assert known["oov_rate"] == 0
    assert unknown["oov_rate"] == pytest.approx(3 / 4)  # three words and the end
    assert known["tokens"] > known["words"] and math.isfinite(known["token_perplexity"])
    with pytest.raises(ValueError, match="no prompts"):
        lstm_perplexity(model, vocab, config, [])


def test_cli_eval_reports_word_lstm_perplexity(
    trained: Checkpoint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_prompts(tmp_path / "dev.txt", 30)
    assert cli.main(["eval", str(trained.path), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "(word-lstm)" in out and "ppl/token" in out and "oov rate" in out


# -- prediction ----------------------------------------------------------------------------------


def test_complete_word_ranks_matching_words_and_keeps_what_was_typed(
    predictor: WordLSTMPredictor,
) -> None:
    results = predictor.complete_word("scene 3, a castle on a hill, Art", k=3)
    assert 1 <= len(results) <= 3
    assert all(word.startswith("Art") for word, _ in results)
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    assert predictor.complete_word("a cat, qqqq", k=5) == []


def test_next_word_candidates_after_a_space_are_words(predictor: WordLSTMPredictor) -> None:
    results = predictor.complete_word("scene 3, a castle on ", k=10)
    assert len(results) == 10
    assert all(word[0].isalnum() for word, _ in results)


def test_generation_is_greedy_and_expansions_are_distinct_prompts(
    predictor: WordLSTMPredictor,
) -> None:
    text = "scene 7, a cat"
    continuation = predictor.next_words(text, 4)
    assert predictor.generate_text(text, 4) == text + continuation
    assert "<unk>" not in continuation and "<pad>" not in continuation
    expansions = predictor.expand(text, 3, seed=1)
    assert 1 <= len(expansions) <= 3 and len(set(expansions)) == len(expansions)
    assert all(e.startswith(text) for e in expansions)
    assert predictor.expand(text, 3, seed=1) == expansions
    assert predictor.expand(text, 0) == []


def test_a_trained_lstm_learns_the_regular_ending(tmp_path: Path, store_home: Path) -> None:
    """Every made-up prompt ends "trending on artstation": 300 steps learn that much."""
    preset = dataclasses.replace(get_preset("lstm-tiny"), max_steps=300, eval_every_steps=100)
    corpus = load_corpus(write_prompts(tmp_path / "p.txt"))
    result = train_word_lstm(preset, corpus, tmp_path / "run")
    predictor = WordLSTMPredictor.from_checkpoint(result.path)
    text = "scene 9, a red fox in the snow, watercolor, 8k, trending"
    assert predictor.next_words(text, 1) == " on"
    # "artwork" and "artistic" start with "art" too, but not after "trending on"
    assert predictor.complete_word(text + " on art", k=1)[0][0] == "artstation"


def test_rate_command_runs_two_lstms_blind_from_scripted_stdin(
    trained: Checkpoint,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real command and real expanders, two checkpoints as A and B, answers on stdin."""
    other = tmp_path / "other"
    shutil.copytree(trained.path, other)
    ideas = tmp_path / "ideas.txt"
    ideas.write_text("a castle\n# a comment\na red fox\n")
    out = tmp_path / "ratings.csv"
    answers = "4 4 3 4\n9\n2 3 3 2\n5555\n1111\n"  # the "9" is refused and asked again
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    command = ["rate", "--models", str(trained.path), str(other), "--ideas", str(ideas)]
    assert cli.main([*command, "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "not understood" in shown and "2 judgements appended" in shown
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["idea"] for row in rows] == [
        line.split("idea: ")[1] for line in shown.splitlines() if "idea: " in line
    ]
    assert {rows[0]["model_a"], rows[0]["model_b"]} == {str(trained.path), str(other)}
    assert (rows[0]["a_overall"], rows[0]["b_overall"]) == ("4", "2")
    assert all(row["expansion_a"].startswith(row["idea"]) for row in rows)
    assert str(other) in shown.split("judgements appended")[1]  # the summary names models


def test_windows_cover_every_target_once() -> None:
    vocab = Vocabulary.build(make_prompts(50), max_size=1000, min_count=1)
    data = EncodedPrompts.encode(make_prompts(50), vocab)
    assert len(data.targets) == len(data.stream) - 50
    _, targets = data.windows(data.targets, context=4)
    assert np.array_equal(targets.numpy(), data.stream[data.stream != BOS_ID])
