"""What every trainer does with its run directory, whatever model it trains.

A run lives in ``<store>/runs/<name>/`` and rerunning the same command resumes it. The causal
LM, word LSTM and masked LM trainers share: refusing to resume another preset's run, logging,
the held-out split, the time budget and the result they return. Nothing here imports torch or
transformers, so the LSTM's trainer stays as light to import as its predictor.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from model_store import distributed
from model_store.corpus import Corpus, split_prompts

ProgressCallback = Callable[[str, float | None], None]


class DescribedPreset(Protocol):
    """A preset of any kind: what it describes decides what its run produces."""

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class TrainedModel:
    """An exported model directory (not yet published to the store) and its metrics."""

    path: Path
    metrics: dict[str, float]
    tokens_seen: int
    finished: bool  # False when a time budget stopped it early: rerun to resume


class RunLog:
    """Messages go to stderr and to the caller's progress callback; stdout is the caller's
    (LSP messages, CLI output). Only rank 0 of a multi-process job speaks: the others do the
    same work."""

    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress

    def __call__(self, message: str, fraction: float | None = None) -> None:
        if not distributed.is_main():
            return
        print(message, file=sys.stderr)
        if self.progress is not None:
            self.progress(message, fraction)


def open_run(run_dir: Path, preset: DescribedPreset, corpus: Corpus) -> None:
    """Create ``run_dir``, or check that it holds a run of this preset on this corpus.

    Resuming another preset's or corpus's run would load checkpoints that do not fit.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    identity = {"preset": preset.describe(), "corpus_sha256": corpus.sha256}
    marker = run_dir / "run.json"
    if marker.is_file():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        if previous != identity:
            raise ValueError(
                f"{run_dir} holds a run with another preset or corpus; "
                "remove it or choose another --name"
            )
    else:
        marker.write_text(json.dumps(identity, indent=2), encoding="utf-8")


def held_out_split(
    corpus: Corpus, max_train: int | None, max_valid: int
) -> tuple[list[str], list[str]]:
    """Split by prompt family, then cap each side: a small training cap keeps the same
    held-out prompts, so even a 1k-prompt run is scored on unseen families."""
    train_prompts, valid_prompts = split_prompts(corpus.prompts)
    train_prompts = train_prompts[: max_train or None]
    valid_prompts = valid_prompts[:max_valid]
    if not train_prompts or not valid_prompts:
        raise ValueError(f"corpus {corpus.name!r} is too small to split ({len(corpus.prompts)})")
    return train_prompts, valid_prompts


def deadline_after(max_minutes: float | None) -> float | None:
    """The ``time.monotonic()`` at which a time budget runs out; None without a budget."""
    return time.monotonic() + max_minutes * 60 if max_minutes else None
