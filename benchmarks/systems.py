"""The registry of benchmarked systems: what each can do (KSR, perplexity, expansion).

To add a system, write a factory ``(context, argument) -> Benchmarked`` and add it to
``REGISTRY``; ``--systems name`` or ``--systems name:argument`` then runs it in every
section it supports, and it gets its own rows in docs/BENCHMARKS.md. Systems that cannot be
built yet are listed in ``PENDING`` and the report says they were not measured. The original
study's word LSTM and masked LM are ``study-lstm[:MODEL]`` and ``study-mlm[:MODEL]``
(``benchmarks/study_systems.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from benchmarks import data
from benchmarks.baselines import NoSystem, PrefixHistory
from benchmarks.ksr import System
from benchmarks.ngram import NgramSystem
from model_store import paths
from model_store.corpus import Corpus
from model_store.ngram import storage
from model_store.ngram.model import WordNgram

DEFAULT_MODEL_DIR = data.REPO_ROOT / "model_store" / "default_model"

PENDING: dict[str, str] = {}


@dataclass
class Benchmarked:
    """One system's capabilities; ``None`` means the system cannot be measured that way."""

    name: str
    system: System | None = None
    perplexity: Callable[[Sequence[str]], dict[str, float]] | None = None
    expand: Callable[[str, int], list[str]] | None = None
    model_backed: bool = False  # slow per call: KSR runs on the smaller model sample
    expands: bool = False  # can turn a short idea into full prompts (when available)
    unavailable: str | None = None  # why KSR/expansion could not run, shown in the report
    model: str | None = None  # which weights, for model-backed rows (see model_identity)
    close: Callable[[], None] = field(default=lambda: None)


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
    """A model directory from "default", a path, or (once it exists) a model-store reference."""
    if reference == "default":
        return DEFAULT_MODEL_DIR
    path = Path(reference).expanduser()
    if path.is_dir():
        return path
    try:
        from model_store.store import ModelStore
    except ImportError as exc:
        raise FileNotFoundError(
            f"{reference}: not a directory, and the model store is not available ({exc})"
        ) from exc
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


def _none(context: Context, argument: str | None) -> Benchmarked:
    return Benchmarked(name="none", system=NoSystem())


def _prefix(context: Context, argument: str | None) -> Benchmarked:
    return Benchmarked(name="prefix history", system=PrefixHistory(context.train.prompts))


def _ngram(context: Context, argument: str | None) -> Benchmarked:
    """The word n-gram alone: the issue's trigram baseline, or ``ngram:5`` for every order
    the engine blends (the ablation of the LM's share)."""
    if argument is not None and not argument.isdigit():
        raise ValueError(f"ngram:ORDER takes a number of words, got {argument!r}")
    order = int(argument) if argument else 3
    model = context.ngram.limited(order)
    name = "word trigram (KN)" if order == 3 else f"word {order}-gram (KN)"
    system = NgramSystem(model, name=name)
    return Benchmarked(
        name=system.name,
        system=system,
        perplexity=model.perplexity,
        expand=system.expand,
        expands=True,
    )


def causal_lm_perplexity(
    model_dir: Path, threads: int | None
) -> Callable[[Sequence[str]], dict[str, float]]:
    """model_store's perplexity for a Hugging Face causal LM directory (loaded on first use)."""

    def measure(prompts: Sequence[str]) -> dict[str, float]:
        import torch
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        from model_store.evaluation import perplexity

        if threads:
            torch.set_num_threads(threads)
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, use_safetensors=True
        )
        tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir, local_files_only=True)
        return perplexity(model, tokenizer, prompts)

    return measure


def _engine_row(context: Context, argument: str | None, blend: bool) -> Benchmarked:
    """The product's engine in-process; perplexity comes from its model directly.

    ``blend``: with the training corpus's word statistics (the n-gram above), as ``prompt-ls``
    serves once ``prompt-models stats`` has built them; without, the LM alone (the ablation).
    """
    from benchmarks.engine_system import EngineSystem
    from server.engine import CompletionEngine, EngineSettings

    reference = argument or "default"
    model_dir = resolve_model(reference)
    label = model_label(reference)
    name = f"LM engine + corpus statistics: {label}" if blend else f"LM engine: {label}"
    # The simulated person sees ghost text beside the menu, as in a client that declares
    # inline completion, where the server makes the menu offer alternatives to the ghost.
    engine = CompletionEngine.from_checkpoint(
        model_dir,
        settings=EngineSettings(menu_skips_ghost=True),
        threads=context.threads,
        word_stats=context.ngram if blend else None,
    )
    return Benchmarked(
        name=name,
        system=EngineSystem(engine, name),
        perplexity=causal_lm_perplexity(model_dir, context.threads),
        # Expansions are the LM's either way: measured once, on the LM-only row. The LM-only
        # engine decodes at every state, so it gets the smaller model sample; the blend is
        # mostly table lookups and runs on the whole sample, like the n-gram.
        expand=None if blend else lambda idea, n: engine.expand(idea, n),
        model_backed=not blend,
        expands=not blend,
        model=model_identity(model_dir),
    )


def _engine(context: Context, argument: str | None) -> Benchmarked:
    return _engine_row(context, argument, blend=False)


def _blend(context: Context, argument: str | None) -> Benchmarked:
    return _engine_row(context, argument, blend=True)


def _study_lstm(context: Context, argument: str | None) -> Benchmarked:
    from benchmarks.study_systems import study_lstm  # it imports this module

    return study_lstm(context, argument)


def _study_mlm(context: Context, argument: str | None) -> Benchmarked:
    from benchmarks.study_systems import study_mlm

    return study_mlm(context, argument)


REGISTRY: dict[str, Callable[[Context, str | None], Benchmarked]] = {
    "none": _none,
    "prefix": _prefix,
    "ngram": _ngram,
    "engine": _engine,
    "blend": _blend,
    "study-lstm": _study_lstm,
    "study-mlm": _study_mlm,
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """ "engine:path/to/model" -> ("engine", "path/to/model")."""
    key, _, argument = spec.partition(":")
    if key not in REGISTRY and key != "lsp":
        known = ", ".join([*REGISTRY, "lsp"])
        pending = f" ({PENDING[key]})" if key in PENDING else ""
        raise ValueError(f"unknown system {key!r}{pending}; known: {known}")
    return key, argument or None
