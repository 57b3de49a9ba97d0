"""model_store.runs: what the causal, LSTM and masked-LM trainers share about a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_store.corpus import Corpus, family_bucket
from model_store.presets import get_preset
from model_store.runs import RunLog, deadline_after, held_out_split, open_run

PROMPTS = ["a castle on a hill, detailed", "a forest at dawn, matte painting"]


def corpus_of(prompts: list[str], sha256: str = "a" * 64) -> Corpus:
    return Corpus(name="mine.txt", sha256=sha256, prompts=prompts)


def test_a_run_refuses_to_resume_with_another_preset_or_corpus(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x"
    open_run(run, get_preset("tiny"), corpus_of(PROMPTS))
    open_run(run, get_preset("tiny"), corpus_of(PROMPTS))  # the same run resumes
    with pytest.raises(ValueError, match="another preset or corpus"):
        open_run(run, get_preset("small"), corpus_of(PROMPTS))
    with pytest.raises(ValueError, match="another preset or corpus"):
        open_run(run, get_preset("tiny"), corpus_of(PROMPTS, sha256="b" * 64))


def test_held_out_prompts_do_not_depend_on_the_training_cap() -> None:
    prompts = [f"subject {n} in a field, detailed" for n in range(400)]
    corpus = corpus_of(prompts)
    train_all, valid_all = held_out_split(corpus, None, 1000)
    train_few, valid_few = held_out_split(corpus, 10, 1000)
    assert valid_few == valid_all and train_few == train_all[:10]
    assert all(family_bucket(p, "valid") < 2 for p in valid_all)
    assert not set(train_all) & set(valid_all)
    assert held_out_split(corpus, None, 1)[1] == valid_all[:1]


def test_a_corpus_too_small_to_split_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too small to split"):
        held_out_split(corpus_of(PROMPTS[:1]), None, 10)


def test_run_log_goes_to_stderr_and_the_progress_callback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[tuple[str, float | None]] = []
    log = RunLog(lambda message, fraction: seen.append((message, fraction)))
    log("step 1")
    log("step 2", 0.5)
    RunLog(None)("quiet caller")
    assert seen == [("step 1", None), ("step 2", 0.5)]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == ["step 1", "step 2", "quiet caller"]


def test_no_budget_means_no_deadline() -> None:
    assert deadline_after(None) is None and deadline_after(0) is None
    assert deadline_after(1.0) is not None
