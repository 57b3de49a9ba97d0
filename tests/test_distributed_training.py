"""Training under torchrun: two CPU processes (gloo) learn what one process learns.

One small generated corpus and 40 steps of ``tiny`` keep it to about a minute on two busy
cores: one process trains a baseline in this process, another run is stopped by its time
budget after one step and finished by a two-process torchrun job, whose model must verify and
whose final loss must match the baseline's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_store.checkpoint import verify
from model_store.store import ModelStore, StoreError
from tests.conftest import subprocess_env
from tests.study_prompts import write_prompts

STEPS = 40  # tiny saves every 40 steps: the last step is also a checkpoint
LOSS_TOLERANCE = 0.1  # nats/token; the same batches in another order of float sums


def _final_loss(run_dir: Path) -> float:
    state = json.loads((run_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    history = state["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry][-1]


def _torchrun(processes: int, data: Path, home: Path) -> subprocess.CompletedProcess[str]:
    command = [
        *[sys.executable, "-m", "torch.distributed.run", "--standalone"],
        *["--nproc-per-node", str(processes), "-m", "model_store"],
        *["train", "tiny", "--data", str(data), "--max-steps", str(STEPS)],
    ]
    env = subprocess_env(PROMPT_AUTOCOMPLETE_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("corpus") / "prompts.txt", count=2000)


@pytest.fixture(scope="module")
def baseline(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, uninterrupted: the run directory of the loss to match."""
    store = ModelStore(tmp_path_factory.mktemp("baseline"))
    store.train("tiny", data=str(corpus), max_steps=STEPS)
    return store.runs_dir / "tiny"


@pytest.fixture(scope="module")
def two_process_store(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelStore, subprocess.CompletedProcess[str]]:
    """A one-process run stopped by its time budget after a step, finished by torchrun."""
    store = ModelStore(tmp_path_factory.mktemp("two-processes"))
    with pytest.raises(StoreError, match="before its last step; rerun"):
        store.train("tiny", data=str(corpus), max_steps=STEPS, max_minutes=1e-6)
    run_dir = store.runs_dir / "tiny"
    assert (run_dir / "checkpoint-1" / "trainer_state.json").is_file()
    # token arrays are a cache: without them rank 0 must prepare while rank 1 waits
    (run_dir / "train_tokens.npy").unlink()
    return store, _torchrun(2, corpus, store.root)


def test_two_cpu_processes_resume_and_publish_a_verified_model(
    two_process_store: tuple[ModelStore, subprocess.CompletedProcess[str]], baseline: Path
) -> None:
    store, job = two_process_store
    assert job.returncode == 0, job.stderr[-3000:]
    model_dir = store.models_dir / "tiny"
    assert job.stdout.splitlines()[-1] == str(model_dir)  # rank 0 alone reports
    checkpoint = verify(model_dir, "tiny", "retrain")
    assert checkpoint.manifest["training"]["tokens_seen"] == STEPS * 16 * 64
    assert checkpoint.manifest["preset"]["max_steps"] == STEPS
    assert checkpoint.manifest["training"]["command"].endswith(f"--max-steps {STEPS}")
    assert "resuming from checkpoint-1" in job.stderr
    assert "tokenizing 1,964 prompts" in job.stderr  # rank 0 prepared while rank 1 waited
    assert "waiting for another process" not in job.stderr
    losses = _final_loss(store.runs_dir / "tiny"), _final_loss(baseline)
    assert abs(losses[0] - losses[1]) < LOSS_TOLERANCE, losses


def test_an_interrupted_export_is_redone_without_another_step(
    two_process_store: tuple[ModelStore, subprocess.CompletedProcess[str]],
    corpus: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Killed between the last checkpoint and publishing: one process exports it as it is."""
    store, job = two_process_store
    assert job.returncode == 0, job.stderr[-3000:]
    published = verify(store.models_dir / "tiny", "tiny", "retrain").manifest
    shutil.rmtree(store.models_dir / "tiny")
    shutil.rmtree(store.runs_dir / "tiny" / "export")

    again = store.train("tiny", data=str(corpus), max_steps=STEPS)

    assert again.manifest["training"]["tokens_seen"] == STEPS * 16 * 64
    assert not (store.runs_dir / "tiny" / f"checkpoint-{STEPS + 1}").exists()
    assert again.manifest["metrics"] == pytest.approx(published["metrics"])
    assert f"checkpoint-{STEPS} is the last step; exporting it" in capfd.readouterr().err


def test_presets_without_a_rank_aware_trainer_refuse_several_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(StoreError, match="trains in one process only; run it without torchrun"):
        ModelStore(tmp_path).train("lstm-tiny", data=str(tmp_path / "unread.txt"))
    assert not (tmp_path / "runs").exists()
