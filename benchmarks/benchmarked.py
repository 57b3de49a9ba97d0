"""What a benchmarked system offers, and the inputs every system shares.

Both registries of systems (``systems`` and the study's ``study_systems``) build these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from benchmarks import data
from benchmarks.ksr import System
from model_store import paths
from model_store.corpus import Corpus
from model_store.ngram import storage
from model_store.ngram.model import WordNgram

DEFAULT_MODEL_DIR = data.REPO_ROOT / "model_store" / "default_model"


@dataclass
class Benchmarked:
    """One system's capabilities; ``None`` means the system cannot be measured that way."""

    name: str  # shown in the report; may change with the model or wording
    system: System | None = None
    perplexity: Callable[[Sequence[str]], dict[str, float]] | None = None
    expand: Callable[[str, int], list[str]] | None = None
    model_backed: bool = False  # slow per call: KSR runs on the smaller model sample
    expands: bool = False  # can turn a short idea into full prompts (when available)
    unavailable: str | None = None  # why KSR/expansion could not run, shown in the report
    model: str | None = None  # which weights, for model-backed rows (see model_identity)
    close: Callable[[], None] = field(default=lambda: None)
    # The --systems spec that built it ("blend", "ngram:5"): what the report looks rows up by.
    spec: str = ""


class Context:
    """Shared, lazily built inputs (the training corpus and n-gram are built once per run)."""

    def __init__(self, data_dir: Path, threads: int | None = None) -> None:
        self.data_dir = data_dir
        self.threads = threads
        self.cache_root = paths.cache_dir() / "benchmarks"

    @cached_property
    def train(self) -> Corpus:
        return data.training_corpus(self.data_dir)

    @cached_property
    def ngram(self) -> WordNgram:
        return storage.build_cached(self.train)


def resolve_model(reference: str) -> Path:
    """A model directory from "default", a path, or a model-store reference."""
    if reference == "default":
        return DEFAULT_MODEL_DIR
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    from model_store.store import ModelStore

    return Path(ModelStore().resolve(reference).path)


def model_identity(model_dir: Path) -> str:
    """Name, preset and weights digest from the checkpoint manifest, so rows name their model."""
    try:
        manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return str(model_dir)
    weights = manifest.get("files", {}).get("model.safetensors", {})
    preset = manifest.get("preset", "?")
    if isinstance(preset, dict):  # a preset's full description: its name says enough here
        preset = preset.get("name", "?")
    digest = weights.get("sha256", "")
    return f"{manifest.get('name', model_dir.name)} ({preset}, weights {digest[:10] or '?'})"


def model_label(reference: str) -> str:
    return reference if reference == "default" else Path(reference).name or reference
