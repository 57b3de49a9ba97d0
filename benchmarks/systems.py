"""The registry of benchmarked systems: what each can do (KSR, perplexity, expansion).

To add a system, write a factory ``(context, argument) -> Benchmarked`` and add it to
``REGISTRY``; ``--systems name`` or ``--systems name:argument`` then runs it in every
section it supports, and it gets its own rows in docs/BENCHMARKS.md. The original
study's word LSTM and masked LM are ``study-lstm[:MODEL]`` and ``study-mlm[:MODEL]``
(``benchmarks/study_systems.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.baselines import NoSystem, PrefixHistory
from benchmarks.benchmarked import (
    Benchmarked,
    Context,
    model_identity,
    model_label,
    resolve_model,
)
from benchmarks.ngram import NgramSystem
from benchmarks.study_systems import study_lstm, study_mlm


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
        spec="ngram" if order == 3 else f"ngram:{order}",  # "ngram:3" is the trigram's row too
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


REGISTRY: dict[str, Callable[[Context, str | None], Benchmarked]] = {
    "none": _none,
    "prefix": _prefix,
    "ngram": _ngram,
    "engine": _engine,
    "blend": _blend,
    "study-lstm": study_lstm,
    "study-mlm": study_mlm,
}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """ "engine:path/to/model" -> ("engine", "path/to/model")."""
    key, _, argument = spec.partition(":")
    if key not in REGISTRY and key != "lsp":
        known = ", ".join([*REGISTRY, "lsp"])
        raise ValueError(f"unknown system {key!r}; known: {known}")
    return key, argument or None
