"""``prompt-models rate``: the study's blind rating of two models' expansions.

The session (``model_store.study.rating``) takes injected expanders and knows no models.
Expanding is completion logic, so the command that builds the expanders lives beside the
engines and joins ``prompt-models`` through the ``prompt_models.commands`` entry point
(pyproject.toml): ``model_store`` imports nothing from the server.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from model_store.cli import Handler, print_progress
from model_store.store import ModelStore
from model_store.study import rating


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> Handler:
    """Add ``rate`` to ``prompt-models``' sub-commands; its handler."""
    rate = commands.add_parser("rate", help="rate two models' expansions blind (terminal)")
    rate.add_argument("--models", nargs=2, metavar=("A", "B"), help="two model references")
    rate.add_argument("--ideas", help="file of short ideas, one per line")
    rate.add_argument("--data", help="without --ideas: take ideas from these prompts (dev)")
    rate.add_argument("--n", type=int, default=20, help="without --ideas: how many ideas")
    rate.add_argument("--seed", type=int, default=0, help="ideas, order, blinding, sampling")
    rate.add_argument("--mode", choices=["scores", "preference"], default="scores")
    rate.add_argument("--rater", default="anonymous", help="your name in the CSV")
    rate.add_argument("--out", default="ratings.csv", help="CSV to append judgements to")
    rate.add_argument("--summary", action="store_true", help="only summarise --out")
    return cmd_rate


def cmd_rate(store: ModelStore, args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.summary:
        print(rating.format_summary(rating.summarize(rating.read_ratings(out))))
        return 0
    if not args.models:
        raise rating.RatingError("name two models: --models A B")
    if args.ideas:
        ideas = rating.read_ideas(Path(args.ideas))
    else:
        from model_store.corpus import load_corpus

        ideas = rating.default_ideas(load_corpus(args.data).prompts, args.n, args.seed)
    pairs = rating.plan(ideas, args.models, args.seed)
    expanders = {ref: _rating_expander(store, ref, args.seed) for ref in args.models}
    rows = rating.run_session(pairs, expanders, out, mode=args.mode, rater=args.rater)
    print(f"\n{len(rows)} judgements appended to {out}")
    print(rating.format_summary(rating.summarize(rating.read_ratings(out))) if rows else "")
    return 0


def _rating_expander(store: ModelStore, ref: str, seed: int) -> Callable[[str], str]:
    """One expansion per idea, made the way the product makes them for the model's kind."""
    checkpoint = store.resolve(ref, progress=print_progress)
    if checkpoint.kind == "word-lstm":
        from server.engine.study.lstm_engine import WordLSTMPredictor

        predictor = WordLSTMPredictor.from_checkpoint(checkpoint.path)
        return lambda idea: next(iter(predictor.expand(idea, 1, seed=seed)), "")
    if checkpoint.kind == "masked-lm":
        from model_store.study.mlm import load_masked_lm
        from server.engine.study.mlm_infill import expand_with_masked_lm

        model, tokenizer = load_masked_lm(checkpoint.path)
        return lambda idea: expand_with_masked_lm(model, tokenizer, idea, seed=seed)
    from server.engine import CompletionEngine, EngineSettings

    # offline rating: a whole expansion matters more than the interactive latency budget
    settings = EngineSettings(seed=seed, time_budget_ms=60_000)
    engine = CompletionEngine.from_checkpoint(checkpoint.path, settings)
    return lambda idea: next(iter(engine.expand(idea, 1)), "")  # none inside a tag
