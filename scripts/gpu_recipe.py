"""Train a preset on a lent GPU in one command and bring its fp16 checkpoint back.

A lent H200 (the `device` tool) gives 15 minutes in all, at most 10 per command, and sends
back at most 8 files of 16 MiB. From the repository root there (docs/training.md has the
whole procedure, with the corpus and the command to run):

    python3 scripts/gpu_recipe.py train --data .corpus/train.txt.gz --out "$OUT"

prepares the run (corpus, tokenizer, token arrays), measures how fast the preset trains on
this machine, sizes ``max_steps`` to fill what is left of ``--budget-minutes`` (keeping time to
export), trains and publishes with the store's own trainer (bf16 on a GPU), halves the weights
to fp16 and packs the checkpoint into parts of 15 MiB with their sha256. Back here,

    python3 scripts/gpu_recipe.py unpack FOLDER_OF_PARTS

puts the checkpoint into the store, verified. Tested on CPU with ``tiny``
(tests/test_gpu_recipe.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedTokenizerFast

    from model_store.checkpoint import Checkpoint
    from model_store.presets import Preset
    from model_store.store import ModelStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_store.paths import STORE_ENV

PART_BYTES = 15 * 1024 * 1024  # the tool brings back files of at most 16 MiB
TRAINING_STORE = "/tmp/gpu-recipe-store"  # a lent machine is bare and given back after
SAFETY = 0.85  # the Trainer's data loading, logging and saves cost more than the bare steps


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.store:
        os.environ[STORE_ENV] = str(Path(args.store).resolve())
    elif args.command == "train":
        os.environ.setdefault(STORE_ENV, TRAINING_STORE)
    from model_store.store import ModelStore, StoreError

    store = ModelStore()
    try:
        if args.command == "train":
            return train(store, args)
        checkpoint = unpack(store, Path(args.parts))
        print(checkpoint.path)
        return 0
    except (StoreError, OSError, ValueError) as exc:
        print(f"gpu_recipe: error: {exc}", file=sys.stderr)
        return 1


def train(store: ModelStore, args: argparse.Namespace) -> int:
    """Prepare, measure, train for the minutes left, then pack the fp16 checkpoint."""
    import torch

    from model_store.corpus import load_corpus
    from model_store.embedding import halved_copy
    from model_store.presets import get_preset
    from model_store.runs import RunLog
    from model_store.training import prepare_run

    started = time.monotonic()
    times: dict[str, float] = {}
    log = RunLog(None)
    name = args.name or args.preset
    preset = get_preset(args.preset)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    corpus = load_corpus(args.data)
    tokenizer, tokens, _ = prepare_run(preset, corpus, store.runs_dir / name, log)
    times["prepare_s"] = time.monotonic() - started

    tokens_per_s = measure_tokens_per_second(preset, tokenizer, tokens, args.calibration_steps)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the measured model is gone; give the Trainer its memory
    times["measure_s"] = time.monotonic() - started - times["prepare_s"]
    train_minutes = args.budget_minutes - args.reserve_minutes - (time.monotonic() - started) / 60
    tokens_per_step = preset.block_size * preset.batch_size
    steps = max(1, int(train_minutes * 60 * tokens_per_s * SAFETY / tokens_per_step))
    if args.max_steps:
        steps = min(steps, args.max_steps)
    earlier = store.runs_dir / name / "run.json"
    if earlier.is_file():  # a rerun on the same machine resumes the run it sized before
        steps = json.loads(earlier.read_text(encoding="utf-8"))["preset"]["max_steps"]
    log(
        f"{tokens_per_s:,.0f} tokens/s measured: {steps} steps of {tokens_per_step} tokens "
        f"({steps * tokens_per_step / len(tokens):.2f} epochs) in {train_minutes:.1f} minutes"
    )

    checkpoint = store.train(
        args.preset, data=args.data, name=name, max_steps=steps, max_minutes=train_minutes
    )
    times["train_s"] = time.monotonic() - started - times["prepare_s"] - times["measure_s"]
    halved = halved_copy(
        checkpoint, store.root / "fp16" / name, name, "rerun scripts/gpu_recipe.py"
    )
    parts = pack(halved.path, out, name)
    times["total_s"] = time.monotonic() - started
    report = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "preset": halved.manifest["preset"],
        "tokens_per_s_measured": round(tokens_per_s),
        "tokens_seen": halved.manifest["training"]["tokens_seen"],
        "corpus_tokens": len(tokens),
        "metrics": halved.manifest["metrics"],
        "seconds": {key: round(value, 1) for key, value in times.items()},
        "parts": [part.name for part in parts],
    }
    (out / "recipe.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


def measure_tokens_per_second(
    preset: Preset, tokenizer: PreTrainedTokenizerFast, tokens: np.ndarray, steps: int
) -> float:
    """Tokens per second of the preset's training step (bf16 on a GPU) on real batches."""
    import torch

    from model_store.training import TokenBlocks, build_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    model = build_model(preset, len(tokenizer), tokenizer.eos_token_id).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=preset.learning_rate)
    blocks = TokenBlocks(tokens, preset.block_size)
    batch = torch.stack([blocks[i % len(blocks)]["input_ids"] for i in range(preset.batch_size)])
    batch = batch.to(device)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the first step allocates and picks kernels
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * preset.batch_size * preset.block_size / (time.perf_counter() - start)


def pack(checkpoint_dir: Path, out: Path, name: str) -> list[Path]:
    """``name.tar.part-NN`` files of at most 15 MiB holding ``checkpoint_dir`` as ``name/``,
    and ``name.tar.sha256`` naming the whole archive's digest."""
    archive = checkpoint_dir.with_name(f"{name}.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(checkpoint_dir, arcname=name)
    digest = hashlib.sha256()
    parts = []
    with archive.open("rb") as source:
        for chunk in iter(lambda: source.read(PART_BYTES), b""):
            digest.update(chunk)
            part = out / f"{name}.tar.part-{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append(part)
    (out / f"{name}.tar.sha256").write_text(f"{digest.hexdigest()}  {name}.tar\n")
    archive.unlink()
    return parts


def unpack(store: ModelStore, parts_dir: Path) -> Checkpoint:
    """Join the parts, check their digest, and install the checkpoint in the store."""
    from model_store.checkpoint import verify

    digests = list(parts_dir.glob("*.tar.sha256"))
    if len(digests) != 1:
        raise ValueError(f"{parts_dir}: expected one NAME.tar.sha256, found {len(digests)}")
    name = digests[0].name.removesuffix(".tar.sha256")
    parts = sorted(parts_dir.glob(f"{name}.tar.part-*"))
    expected = digests[0].read_text().split()[0]
    target = store.models_dir / name
    if target.exists():
        raise ValueError(f"{target} exists; remove it first with `prompt-models rm {name}`")
    staging = store.root / "partial" / f"unpack-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    archive = staging / f"{name}.tar"
    digest = hashlib.sha256()
    with archive.open("wb") as joined:
        for part in parts:
            chunk = part.read_bytes()
            digest.update(chunk)
            joined.write(chunk)
    if digest.hexdigest() != expected:
        raise ValueError(f"{parts_dir}: the {len(parts)} parts do not match {digests[0].name}")
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    verify(staging / name, name, "bring the parts back again")
    store.models_dir.mkdir(parents=True, exist_ok=True)
    os.replace(staging / name, target)
    shutil.rmtree(staging)
    return verify(target, name, "bring the parts back again")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--store",
        help=f"the store to train in or unpack into (default: ${STORE_ENV}, else the user's "
        f"store for unpack and {TRAINING_STORE} for train)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="prepare, measure, train, pack")
    train_cmd.add_argument("--data", required=True, help="the training corpus (train.txt.gz)")
    train_cmd.add_argument("--out", required=True, help="where the parts go ($OUT)")
    train_cmd.add_argument("--preset", default="medium")
    train_cmd.add_argument("--name", help="the checkpoint's name (default: the preset)")
    train_cmd.add_argument(
        "--budget-minutes", type=float, default=9.0, help="the whole command, from its start"
    )
    train_cmd.add_argument(
        "--reserve-minutes", type=float, default=1.5, help="kept for export and packing"
    )
    train_cmd.add_argument("--calibration-steps", type=int, default=20)
    train_cmd.add_argument("--max-steps", type=int, help="at most this many steps (tests)")
    unpack_cmd = commands.add_parser("unpack", help="install brought-back parts in the store")
    unpack_cmd.add_argument("parts", help="the folder holding NAME.tar.part-* and NAME.tar.sha256")
    return parser


if __name__ == "__main__":
    sys.exit(main())
