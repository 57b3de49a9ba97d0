"""The study's masked LM: tokenizer, training through the store, perplexity and fill-mask."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model_store import cli
from model_store.checkpoint import Checkpoint
from model_store.corpus import load_corpus
from model_store.loading import load_causal_lm
from model_store.presets import get_preset
from model_store.store import ModelStore, _hub_kind
from model_store.study.mlm import (
    PERPLEXITY_NOTE,
    load_masked_lm,
    masked_perplexity,
    train_masked_lm,
    train_roberta_tokenizer,
)
from server.engine.study.mlm_infill import expand_with_masked_lm, fill_mask
from server.engine.types import Cancelled
from tests.study_prompts import make_prompts, write_prompts


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mlm")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMPT_AUTOCOMPLETE_HOME", str(root / "home"))
        patch.delenv("PROMPT_AUTOCOMPLETE_CACHE", raising=False)
        yield root


@pytest.fixture(scope="module")
def trained(store_root: Path) -> Checkpoint:
    """``mlm-tiny`` trained through the CLI into a private store (about 10 s)."""
    data = write_prompts(store_root / "prompts.txt")
    assert cli.main(["train", "mlm-tiny", "--data", str(data)]) == 0
    return ModelStore().resolve("mlm-tiny")


@pytest.fixture(scope="module")
def masked_lm(trained: Checkpoint) -> tuple[torch.nn.Module, object]:
    return load_masked_lm(trained.path)


def test_roberta_tokenizer_has_roberta_specials_and_a_space_eating_mask(tmp_path: Path) -> None:
    tokenizer = train_roberta_tokenizer(make_prompts(200), 400, 64, tmp_path / "tok")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert tokenizer.convert_tokens_to_ids(specials) == [0, 1, 2, 3, 4]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a portrait of <mask> art")["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert not tokens[tokens.index("<mask>") - 1].endswith("Ġ")  # the space went into the mask
    assert tokens[tokens.index("<mask>") + 1].startswith("Ġ")


def test_trained_checkpoint_is_a_verified_masked_lm(trained: Checkpoint) -> None:
    assert trained.kind == "masked-lm"
    assert {"model.safetensors", "config.json", "tokenizer.json", "evaluation.json"} <= set(
        trained.manifest["files"]
    )
    metrics = trained.manifest["metrics"]
    assert 1 < metrics["masked_token_perplexity"] < 512  # better than uniform over 512 tokens
    assert metrics["study_reported"] == 3.83 and metrics["mlm_probability"] == 0.15
    evaluation = json.loads((trained.path / "evaluation.json").read_text())
    assert evaluation["note"] == PERPLEXITY_NOTE


def test_masked_perplexity_is_fixed_by_its_seed(masked_lm: tuple) -> None:
    model, tokenizer = masked_lm
    prompts = make_prompts(40)
    first = masked_perplexity(model, tokenizer, prompts)
    assert masked_perplexity(model, tokenizer, prompts) == first
    other = masked_perplexity(model, tokenizer, prompts, seed=1)
    assert (
        other["masked_tokens"] != first["masked_tokens"] or other["eval_loss"] != first["eval_loss"]
    )
    assert math.isclose(first["masked_token_perplexity"], math.exp(first["eval_loss"]))
    with pytest.raises(ValueError, match="no prompts"):
        masked_perplexity(model, tokenizer, [])


def test_cli_eval_reports_masked_perplexity_beside_the_study(
    trained: Checkpoint, store_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_prompts(store_root / "dev.txt", 30)
    assert cli.main(["eval", "mlm-tiny", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "(masked-lm)" in out and "ppl/masked" in out and "3.83" in out


@pytest.mark.parametrize(
    "text",
    [
        "A portrait of <mask> in the style of",
        "<mask> on a hill, oil painting",
        "a castle, <mask>",
        "a castle on a <mask>, <mask> painting",
    ],
)
def test_fill_mask_returns_ranked_whole_words(masked_lm: tuple, text: str) -> None:
    model, tokenizer = masked_lm
    fillers = fill_mask(model, tokenizer, text, k=5)
    assert 1 <= len(fillers) <= 5
    words = [word for word, _ in fillers]
    assert len(set(words)) == len(words)
    assert all(re.fullmatch(r"\S*\w\S*", word) for word in words), words
    assert not any("<" in word for word in words)
    scores = [score for _, score in fillers]
    assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)


def test_fill_mask_without_a_mask_or_a_masked_lm(masked_lm: tuple, default_model_dir: Path) -> None:
    model, tokenizer = masked_lm
    assert fill_mask(model, tokenizer, "a castle on a hill", k=5) == []
    assert fill_mask(model, tokenizer, "a <mask>", k=0) == []
    causal, causal_tokenizer = load_causal_lm(default_model_dir)
    with pytest.raises(ValueError, match="no mask token"):
        fill_mask(causal, causal_tokenizer, "a <mask>", k=3)


def test_fill_mask_stops_when_asked(masked_lm: tuple) -> None:
    import threading

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        fill_mask(*masked_lm, "a portrait of <mask>", k=3, stop=stop)


def test_masked_lm_expansion_continues_the_text(masked_lm: tuple) -> None:
    model, tokenizer = masked_lm
    expansion = expand_with_masked_lm(model, tokenizer, "a castle", max_tokens=5, seed=3)
    assert expansion.startswith("a castle") and len(expansion) > len("a castle")
    assert expand_with_masked_lm(model, tokenizer, "a castle", max_tokens=5, seed=3) == expansion
    assert "<mask>" not in expansion and "<s>" not in expansion


def test_training_stopped_by_its_time_budget_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preset = dataclasses.replace(get_preset("mlm-tiny"), max_steps=3)
    corpus = load_corpus(write_prompts(tmp_path / "p.txt", 200))
    run = tmp_path / "run"
    stopped = train_masked_lm(preset, corpus, run, resolve=ModelStore().resolve, max_minutes=1e-9)
    assert not stopped.finished and (run / "checkpoint-1").is_dir()
    capsys.readouterr()
    assert train_masked_lm(preset, corpus, run, resolve=ModelStore().resolve).finished
    assert "resuming from checkpoint-1" in capsys.readouterr().err


def test_fine_tuning_keeps_the_base_tokenizer(
    trained: Checkpoint, store_root: Path, tmp_path: Path
) -> None:
    """The distilroberta path, with a local base instead of the Hub (no network in tests)."""
    preset = dataclasses.replace(
        get_preset("mlm-tiny"), name="mlm-finetune", base_model=str(trained.path), max_steps=4
    )
    corpus = load_corpus(write_prompts(tmp_path / "p.txt", 200))
    result = train_masked_lm(preset, corpus, tmp_path / "run", resolve=ModelStore().resolve)
    assert result.finished and not (tmp_path / "run" / "tokenizer").exists()
    tuned = json.loads((result.path / "tokenizer.json").read_text())
    base = json.loads((trained.path / "tokenizer.json").read_text())
    assert tuned["model"]["vocab"] == base["model"]["vocab"]
    with pytest.raises(ValueError, match="not a masked LM"):
        causal = dataclasses.replace(preset, base_model="default")
        train_masked_lm(causal, corpus, tmp_path / "run2", resolve=ModelStore().resolve)


@pytest.mark.parametrize(
    ("architectures", "kind"),
    [
        (["RobertaForMaskedLM"], "masked-lm"),
        (["GPT2LMHeadModel"], "causal-lm"),
        (None, "causal-lm"),
    ],
)
def test_hub_downloads_record_their_kind(
    tmp_path: Path, architectures: list | None, kind: str
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": architectures}))
    assert _hub_kind(tmp_path) == kind


def test_prompts_longer_than_the_model_are_cut_around_the_mask(masked_lm: tuple) -> None:
    """A long prompt once overflowed the position embeddings (an IndexError in the model)."""
    model, tokenizer = masked_lm
    long_text = ", ".join(["a castle on a hill"] * 60)  # far beyond max_position_embeddings
    assert len(tokenizer(long_text)["input_ids"]) > model.config.max_position_embeddings
    for text in (long_text + ", <mask>", "<mask> " + long_text, long_text + " <mask> " + long_text):
        assert fill_mask(model, tokenizer, text, k=3), text
    expansion = expand_with_masked_lm(model, tokenizer, long_text, max_tokens=2, seed=1)
    assert expansion.startswith(long_text)
