"""The original study's systems as benchmark rows: the word LSTM and the masked LM.

Both are served through their engine adapters (``server.engine.kinds``), so KSR measures what
the product would offer with that model configured. Perplexity is each model's own measure:
the LSTM's per word (``model_store.study.lstm.lstm_perplexity``, unknown words scored as ``<unk>``)
and the masked LM's exp(mean loss over 15% masked tokens) on one seeded draw of the masks, the
study's metric (``model_store.study.mlm.masked_perplexity``); a masked LM has no left-to-right
likelihood, so it has no word perplexity to compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.benchmarked import Benchmarked, Context, model_identity, model_label
from benchmarks.engine_system import EngineSystem
from model_store.checkpoint import MANIFEST, Checkpoint
from model_store.store import ModelStore


def _checkpoint(reference: str, kind: str) -> Checkpoint | str:
    """The verified checkpoint, or why there is none; a stored name never starts training."""
    store = ModelStore()
    stored_name = "/" not in reference and not reference.startswith(("hf:", ".", "~"))
    if stored_name and not (store.path_of(reference) / MANIFEST).is_file():
        return (
            f"no trained model {reference!r} in the store; train it with "
            f"`prompt-models train {reference} --data <train.txt.gz>`"
        )
    checkpoint = store.resolve(reference)
    if checkpoint.kind != kind:
        return f"{reference} is a {checkpoint.kind}, not a {kind}"
    return checkpoint


def _row(name: str, reference: str, kind: str, context: Context) -> tuple[Benchmarked, Any]:
    """A row with the engine for ``reference``, or an unavailable row (engine None)."""
    found = _checkpoint(reference, kind)
    if isinstance(found, str):
        return Benchmarked(name=name, model_backed=True, expands=True, unavailable=found), None
    from server.engine.kinds import engine_for

    engine = engine_for(kind, found.path, context.threads)
    row = Benchmarked(
        name=name,
        system=EngineSystem(engine, name),
        expand=lambda idea, n: engine.expand(idea, n),
        model_backed=True,
        expands=True,
        model=model_identity(found.path),
    )
    return row, engine


def study_lstm(context: Context, argument: str | None) -> Benchmarked:
    """The word LSTM (store name ``lstm`` unless told otherwise)."""
    reference = argument or "lstm"
    row, engine = _row(f"study LSTM: {model_label(reference)}", reference, "word-lstm", context)
    if engine is not None:
        predictor = engine.predictor

        def perplexity(prompts: Sequence[str]) -> dict[str, float]:
            from model_store.study.lstm import lstm_perplexity

            return lstm_perplexity(predictor.model, predictor.vocab, predictor.config, prompts)

        row.perplexity = perplexity
    return row


def study_mlm(context: Context, argument: str | None) -> Benchmarked:
    """The masked LM (store name ``mlm`` unless told otherwise)."""
    reference = argument or "mlm"
    row, engine = _row(f"study MLM: {model_label(reference)}", reference, "masked-lm", context)
    if engine is not None:

        def perplexity(prompts: Sequence[str]) -> dict[str, float]:
            from model_store.study.mlm import STUDY_PERPLEXITY, masked_perplexity

            measured = masked_perplexity(engine.model, engine.tokenizer, prompts)
            return {
                **measured,
                "tokens": measured["masked_tokens"],
                "study_reported": STUDY_PERPLEXITY,
            }

        row.perplexity = perplexity
    return row
