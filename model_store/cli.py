"""`prompt-models`: list, fetch, train, evaluate, verify and remove models in the store."""

from __future__ import annotations

import argparse
import errno
import json
import sqlite3
import sys
from collections.abc import Callable, Sequence
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

from model_store import distributed
from model_store.checkpoint import CheckpointError, read_manifest, verify, write_manifest
from model_store.corpus import CORPUS_ENV, CorpusError
from model_store.paths import STORE_ENV
from model_store.presets import PRESETS
from model_store.store import (
    DEFAULT_MODEL_DIR,
    DEFAULT_STATS_DIR,
    REINSTALL_HINT,
    ModelStore,
    StoreError,
)

DATA_HELP = f"prompt corpus: file, directory or dataset id (default: ${CORPUS_ENV})"


def print_progress(message: str, fraction: float | None) -> None:
    suffix = f" ({fraction:.0%})" if fraction is not None else ""
    print(f"{message}{suffix}", file=sys.stderr)


def cmd_list(store: ModelStore, args: argparse.Namespace) -> int:
    rows = store.list()
    print(
        f"{'NAME':<28} {'STATUS':<12} {'KIND':<10} {'SIZE':>8} {'PPL/TOKEN':>10} "
        f"{'STATISTICS':<10}  PATH"
    )
    for row in rows:
        size = f"{row['size_mb']} MB" if row.get("size_mb") is not None else ""
        ppl = row.get("token_perplexity")
        ppl_text = f"{ppl:.2f}" if isinstance(ppl, float) else ""
        print(
            f"{row['name']:<28} {row['status']:<12} {row['kind']:<10} {size:>8} "
            f"{ppl_text:>10} {row.get('statistics', ''):<10}  {row['path']}"
        )
    return 0


def cmd_info(store: ModelStore, args: argparse.Namespace) -> int:
    path = Path(args.name).expanduser() if "/" in args.name else store.path_of(args.name)
    manifest = read_manifest(path)
    files = manifest.pop("files")
    manifest["files"] = {name: entry["size"] for name, entry in files.items()}
    manifest["path"] = str(path)
    manifest["statistics"] = store.statistics_label(path)
    print(json.dumps(manifest, indent=2))
    return 0


def cmd_pull(store: ModelStore, args: argparse.Namespace) -> int:
    checkpoint = store.resolve(args.name, progress=print_progress, data=args.data)
    print(checkpoint.path)
    return 0


def cmd_train(store: ModelStore, args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    checkpoint = store.train(
        args.preset,
        data=args.data,
        name=args.name,
        max_minutes=args.max_minutes,
        max_steps=args.max_steps,
        progress=print_progress,
    )
    if not distributed.is_main():
        return 0  # rank 0 of a torchrun job reports for all of them
    metrics = checkpoint.manifest.get("metrics", {})
    figures = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.endswith("perplexity"))
    print(f"{checkpoint.name}: held-out {figures}")
    print(checkpoint.path)
    return 0


def cmd_stats(store: ModelStore, args: argparse.Namespace) -> int:
    from model_store.corpus import load_corpus
    from model_store.ngram import counting, sharded, storage

    corpus = load_corpus(args.data)
    print(
        f"counting the words of {len(corpus.prompts):,} prompts of {corpus.name}", file=sys.stderr
    )
    count = partial(
        sharded.count,
        workers=args.workers,
        shard_prompts=args.shard_prompts or sharded.SHARD_PROMPTS,
        scratch=args.scratch,
    )
    stats = storage.build_cached(corpus, store.root / "wordstats", count)
    full = storage.stats_dir(corpus.sha256, store.root / "wordstats")
    print(f"{corpus.name}: {_describe(stats.size)}; {_megabytes(full)}")
    print(full)
    if args.pack:
        print(f"pruning at relative entropy {args.prune:g}", file=sys.stderr)
        everything = storage.load(full, storage.rebuild_hint(full), piecewise=False)
        scores = storage.pruning_scores(full, everything)
        pack = counting.prune(everything, args.prune, scores)
        out = Path(args.pack).expanduser()
        command = (
            f"prompt-models stats --data {args.data} --pack {args.pack} --prune {args.prune:g}"
        )
        storage.save(
            pack,
            out,
            quantised=True,
            name="default statistics",
            **storage.corpus_fields(corpus),
            pruning={"relative_entropy": args.prune, "min_count_above_trigram": counting.MIN_COUNT},
            command=command,
        )
        print(f"pack: {_describe(pack.size)}; {_megabytes(out)}")
        print(out)
    return 0


def _positive(text: str) -> int:
    """An argparse type: a whole number above zero."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _describe(size: dict[str, int]) -> str:
    return ", ".join(f"{count:,} {what}" for what, count in size.items())


def _megabytes(directory: Path) -> str:
    total = sum(file.stat().st_size for file in directory.iterdir() if file.is_file())
    return f"{total / 1e6:.1f} MB in {directory}"


def cmd_learn(store: ModelStore, args: argparse.Namespace) -> int:
    """Import prompts from files; every prompt in one transaction, so an interruption
    leaves the personal layer as it was."""
    from tqdm import tqdm

    from model_store.personal import PersonalStore, Prompts, store_path
    from model_store.prompt_files import Refused, files_under, read_prompts

    files = list(files_under([Path(p).expanduser() for p in args.paths]))
    positive: list[str] = []
    negative: list[str] = []
    refused: list[tuple[Path, str]] = []
    for path in tqdm(files, desc="reading", unit="file", file=sys.stderr, leave=False):
        try:
            found = read_prompts(path)
        except Refused as exc:
            refused.append((path, str(exc)))
            continue
        positive.extend(found.positive)
        negative.extend(found.negative)
    personal = PersonalStore(store_path(store.root))
    learned = personal.add(Prompts(tuple(positive), tuple(negative)))
    personal.close()
    print(
        f"{len(files) - len(refused)} files read, {learned.learned} prompts learned, "
        f"{learned.duplicates} duplicates skipped, {len(refused)} files refused"
        + (f", {learned.refused} prompts too long" if learned.refused else "")
        + (f", {learned.pruned} old rare prompts pruned" if learned.pruned else "")
    )
    for path, reason in refused:
        print(f"  refused {path}: {reason}")
    return 0


def cmd_personal(store: ModelStore, args: argparse.Namespace) -> int:
    from model_store.personal import PersonalStore, frequent_phrases, size_summary, store_path

    personal = PersonalStore(store_path(store.root))
    summary = size_summary(personal)
    print(
        f"{summary['positive']} prompts, {summary['negative']} negative prompts, "
        f"{summary['megabytes']} MB in {personal.path}"
    )
    for negative, title in ((False, "most frequent phrases"), (True, "in negative prompts")):
        phrases = frequent_phrases(personal.prompts(negative), args.top)
        if phrases:
            print(f"{title}:")
            for phrase, count in phrases:
                print(f"  {count:>6}  {phrase}")
    personal.close()
    return 0


def cmd_forget(store: ModelStore, args: argparse.Namespace) -> int:
    from model_store.personal import PersonalStore, store_path

    if args.all == (args.text is not None):
        raise ValueError("forget takes either --all or a TEXT to match, not both or neither")
    personal = PersonalStore(store_path(store.root))
    removed = personal.forget(None if args.all else args.text)
    personal.close()
    print(f"{removed} prompts forgotten")
    return 0


def cmd_eval(store: ModelStore, args: argparse.Namespace) -> int:
    from model_store.corpus import load_corpus
    from model_store.evaluation import perplexity
    from model_store.loading import load_causal_lm

    checkpoint = store.resolve(args.name, progress=print_progress)
    corpus = load_corpus(args.data)
    prompts = corpus.prompts[: args.limit] if args.limit else corpus.prompts
    print(f"model          {checkpoint.name} ({checkpoint.kind})")
    print(f"data           {corpus.name} ({len(prompts):,} prompts)")
    if checkpoint.kind == "masked-lm":
        from model_store.study.mlm import (
            PERPLEXITY_NOTE,
            STUDY_PERPLEXITY,
            load_masked_lm,
            masked_perplexity,
        )

        metrics = masked_perplexity(*load_masked_lm(checkpoint.path), prompts)
        print(f"ppl/masked     {metrics['masked_token_perplexity']:.3f} (15% masks, seed 0)")
        print(f"study          {STUDY_PERPLEXITY} ({PERPLEXITY_NOTE})")
        return 0
    if checkpoint.kind == "word-lstm":
        from model_store.study.lstm import load_word_lstm, lstm_perplexity

        metrics = lstm_perplexity(*load_word_lstm(checkpoint.path), prompts)
        print(f"oov rate       {metrics['oov_rate']:.3%} (scored as the <unk> class)")
    else:
        model, tokenizer = load_causal_lm(checkpoint.path)
        metrics = perplexity(model, tokenizer, prompts)
    print(f"ppl/token      {metrics['token_perplexity']:.3f}")
    print(f"ppl/word       {metrics['word_perplexity']:.3f}")
    return 0


def cmd_verify(store: ModelStore, args: argparse.Namespace) -> int:
    if args.write_manifest:
        directory = Path(args.name).expanduser()
        if not directory.is_dir():
            raise StoreError(f"{directory}: --write-manifest needs a model directory")
        write_manifest(directory, directory.name, kind="causal-lm", source={"local": True})
    if "/" in args.name or args.name.startswith("."):
        directory = Path(args.name).expanduser()
        checkpoint = verify(
            directory, directory.name, f"restore the files of {directory}", rehash=True
        )
    elif args.name == "default":
        checkpoint = verify(DEFAULT_MODEL_DIR, "default", REINSTALL_HINT, rehash=True)
        pack = verify(DEFAULT_STATS_DIR, "default statistics", REINSTALL_HINT, rehash=True)
        print(f"{pack.name}: {len(pack.manifest['files'])} files verified")
    else:
        path = store.path_of(args.name)
        checkpoint = verify(path, args.name, store.repair_hint(args.name), rehash=True)
    print(f"{checkpoint.name}: {len(checkpoint.manifest['files'])} files verified")
    return 0


def cmd_rm(store: ModelStore, args: argparse.Namespace) -> int:
    print(f"removed {store.remove(args.name)}")
    return 0


def cmd_embed(store: ModelStore, args: argparse.Namespace) -> int:
    from model_store.embedding import embed_default

    checkpoint = embed_default(store.resolve(args.name), DEFAULT_MODEL_DIR)
    size = sum(entry["size"] for entry in checkpoint.manifest["files"].values())
    print(f"embedded {args.name} as the default model ({size / 1e6:.1f} MB)")
    return 0


def cmd_explore(store: ModelStore, args: argparse.Namespace) -> int:
    from model_store.corpus import load_corpus
    from model_store.explore import write_report

    corpus = load_corpus(args.data)
    report = write_report(corpus, Path(args.out), tokenizer_dir=DEFAULT_MODEL_DIR)
    print(report)
    return 0


Handler = Callable[[ModelStore, argparse.Namespace], int]
# Commands other packages add (the study's ``rate``, which needs the completion engine): each
# entry point names a function that adds its sub-parser to ours and returns its handler.
COMMANDS_GROUP = "prompt_models.commands"


HANDLERS: dict[str, Handler] = {
    "list": cmd_list,
    "info": cmd_info,
    "pull": cmd_pull,
    "train": cmd_train,
    "stats": cmd_stats,
    "eval": cmd_eval,
    "verify": cmd_verify,
    "rm": cmd_rm,
    "embed": cmd_embed,
    "explore": cmd_explore,
    "learn": cmd_learn,
    "personal": cmd_personal,
    "forget": cmd_forget,
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser, and the handler of each command (installed packages' commands too)."""
    parser = argparse.ArgumentParser(
        prog="prompt-models",
        description="Manage the models behind prompt autocompletion.",
        epilog="Store: $PROMPT_AUTOCOMPLETE_HOME or the user data directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="models in the store and trainable presets")
    info = commands.add_parser("info", help="show a model's manifest")
    info.add_argument("name", help="model name or directory")
    pull = commands.add_parser("pull", help="download (hf:<repo>[@rev]) or train a model")
    pull.add_argument("name", help="default, a stored name, hf:<repo>[@rev] or a preset")
    pull.add_argument("--data", help=DATA_HELP)
    train = commands.add_parser("train", help="train a preset (resumes an interrupted run)")
    train.add_argument("preset", choices=sorted(PRESETS))
    train.add_argument("--data", help=DATA_HELP)
    train.add_argument("--name", help="store the result under this name (default: the preset)")
    train.add_argument("--max-minutes", type=float, help="stop after this long; rerun to resume")
    train.add_argument(
        "--max-steps", type=int, help="train this many steps instead of the preset's"
    )
    train.add_argument(
        "--threads", type=int, help="CPU threads (1 trains faster on a busy machine)"
    )
    stats = commands.add_parser(
        "stats", help="count a corpus's words for the engine to blend with its model"
    )
    stats.add_argument("--data", help=DATA_HELP)
    stats.add_argument(
        "--workers", type=_positive, default=1, help="processes that count (default 1)"
    )
    stats.add_argument(
        "--shard-prompts",
        type=_positive,
        help="prompts counted at once by one worker; smaller: less memory, more runs to merge "
        "(default 100000)",
    )
    stats.add_argument(
        "--scratch",
        type=Path,
        help="folder for the sorted runs on disk (default: the system's temporary folder)",
    )
    stats.add_argument(
        "--pack", metavar="DIR", help="also write a pruned, 8-bit quantised pack into DIR"
    )
    stats.add_argument(
        "--prune",
        type=float,
        default=5e-8,
        help="the pack drops n-grams whose removal changes the model by less than this "
        "relative entropy (Stolcke pruning; larger: smaller pack; default: the shipped "
        "pack's, the lowest that keeps the wheel under 60 MB)",
    )
    evaluate = commands.add_parser("eval", help="token and word perplexity on a corpus")
    evaluate.add_argument("name")
    evaluate.add_argument("--data", help=DATA_HELP)
    evaluate.add_argument("--limit", type=int, help="evaluate only the first N prompts")
    check = commands.add_parser("verify", help="check every file against the manifest")
    check.add_argument("name", help="model name or directory")
    check.add_argument(
        "--write-manifest", action="store_true", help="trust a directory and write its manifest"
    )
    remove = commands.add_parser("rm", help="remove a stored model")
    remove.add_argument("name")
    embed = commands.add_parser("embed", help="make a model the packaged default (fp16)")
    embed.add_argument("name")
    explore = commands.add_parser("explore", help="write the corpus analysis report with plots")
    explore.add_argument("data", help=DATA_HELP)
    explore.add_argument("--out", default="corpus-report", help="report directory")
    learn = commands.add_parser(
        "learn",
        help="learn your prompts from text files, A1111/Forge/ComfyUI PNGs, styles.csv, folders",
    )
    learn.add_argument("paths", nargs="+", metavar="PATH")
    personal = commands.add_parser("personal", help="what was learned from your prompts")
    personal.add_argument("--top", type=int, default=10, help="phrases to show (10)")
    forget = commands.add_parser("forget", help="forget learned prompts")
    forget.add_argument("text", nargs="?", help="forget the prompts containing this text")
    forget.add_argument("--all", action="store_true", help="forget every learned prompt")
    handlers = dict(HANDLERS)
    for entry in entry_points(group=COMMANDS_GROUP):
        handlers[entry.name] = entry.load()(commands)
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](ModelStore(), args)
    except (StoreError, CheckpointError, CorpusError, KeyError, ValueError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"prompt-models: error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:  # a read-only store, a full disk, a file where a directory belongs
        print(f"prompt-models: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"prompt-models: error: the personal prompts database: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("prompt-models: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line: the path, what went wrong and what to do (never a traceback)."""
    where = exc.filename or "the model store"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        advice = f"free some disk space or point ${STORE_ENV} at a disk with room"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"make it writable or point ${STORE_ENV} at a writable directory"
    else:
        advice = f"check that path, or point ${STORE_ENV} at another directory"
    return f"{where}: {reason}; {advice}; nothing was installed"


if __name__ == "__main__":
    sys.exit(main())
