"""Train a GPT-2 causal LM on prompts with the transformers Trainer, resumably.

A run lives in ``<store>/runs/<name>/``: the tokenizer, the token arrays and the Trainer's
numbered checkpoints. Rerunning the same command continues from the newest complete
checkpoint, so Ctrl-C, kill -9 or the end of a session costs at most one save interval.
The same code runs on CPU, one CUDA GPU (bf16) or several processes under ``torchrun`` or
``accelerate launch`` (docs/training.md): rank 0 alone prepares and exports, the Trainer shards
the batches, and a preset's ``batch_size`` is the batch of all processes together, so a run
learns the same whatever the number of processes and resumes with another number. The
masked-LM trainer (model_store.study.mlm) runs the Trainer through the same helpers.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    DataCollator,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    set_seed,
)

from model_store import distributed
from model_store.corpus import Corpus, split_prompts
from model_store.presets import MaskedLMPreset, Preset
from model_store.runs import (
    ProgressCallback,
    RunLog,
    TrainedModel,
    deadline_after,
    open_run,
)
from model_store.tokenizer import load_tokenizer, train_tokenizer

TRAINER_STATE = "trainer_state.json"
TOKENS = "train_tokens.npy"  # the training prompts as one array of token ids


def _silent(message: str, fraction: float | None) -> None:
    del message, fraction


class TokenBlocks(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Fixed-length windows over one long array of token ids (prompts joined by EOS)."""

    def __init__(self, tokens: np.ndarray, block_size: int):
        self.tokens = tokens
        self.block_size = block_size

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.block_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = index * self.block_size
        ids = torch.from_numpy(self.tokens[start : start + self.block_size].astype(np.int64))
        return {"input_ids": ids, "labels": ids}


def encode_prompts(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> np.ndarray:
    """All prompts as one uint16/int32 array, each preceded by EOS as GPT-2 separates texts."""
    eos = tokenizer.eos_token_id
    dtype = np.uint16 if len(tokenizer) < 65536 else np.int32
    chunks: list[np.ndarray] = []
    for start in range(0, len(prompts), 10_000):
        batch = tokenizer(list(prompts[start : start + 10_000]), add_special_tokens=False)
        for ids in batch["input_ids"]:
            chunks.append(np.asarray([eos, *ids], dtype=dtype))
    chunks.append(np.asarray([eos], dtype=dtype))
    return np.concatenate(chunks)


def last_complete_checkpoint(run_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` whose trainer state was written (saves write it last)."""
    candidates = []
    for child in run_dir.glob("checkpoint-*"):
        suffix = child.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (child / TRAINER_STATE).is_file():
            candidates.append((int(suffix), child))
    return max(candidates)[1] if candidates else None


class _ThroughputAndDeadline(TrainerCallback):
    """Adds tokens/s to the logs, reports progress, and stops (with a save) at the deadline."""

    def __init__(self, tokens_per_step: int, deadline: float | None, progress: ProgressCallback):
        self.tokens_per_step = tokens_per_step
        self.deadline = deadline
        self.progress = progress
        self.last_time = time.monotonic()
        self.last_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        now = time.monotonic()
        steps = state.global_step - self.last_step
        if logs is not None and steps > 0:
            logs["tokens_per_s"] = round(steps * self.tokens_per_step / (now - self.last_time))
            logs["tokens_seen"] = state.global_step * self.tokens_per_step
            loss = f", loss {logs['loss']:.3f}" if "loss" in logs else ""
            self.progress(
                f"training step {state.global_step}/{state.max_steps}{loss}",
                state.global_step / max(1, state.max_steps),
            )
        self.last_time, self.last_step = now, state.global_step

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        # rank 0's clock decides: a process stopping alone would leave the others waiting
        if self.deadline is not None and distributed.share(time.monotonic() > self.deadline):
            control.should_save = True
            control.should_training_stop = True
        return control


def build_model(preset: Preset, vocab_size: int, eos_id: int) -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=max(256, preset.block_size),
        n_embd=preset.n_embd,
        n_layer=preset.n_layer,
        n_head=preset.n_head,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=True,
    )
    return GPT2LMHeadModel(config)


def train_causal_lm(
    preset: Preset,
    corpus: Corpus,
    run_dir: Path,
    *,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    seed: int = 42,
    progress: ProgressCallback | None = None,
) -> TrainedModel:
    """Train (or resume) the preset on the corpus in ``run_dir``; export the final model."""
    log = RunLog(progress)
    with distributed.main_first():
        if not distributed.is_main() and not (run_dir / TOKENS).is_file():
            raise ValueError(
                f"process {distributed.rank()} cannot see {run_dir / TOKENS} that rank 0 has "
                "written: put the store ($PROMPT_AUTOCOMPLETE_HOME) on a file system that "
                "every machine of the job shares"
            )
        open_run(run_dir, preset, corpus)
        tokenizer, tokens, valid_prompts = prepare_run(preset, corpus, run_dir, log)
    dataset = TokenBlocks(tokens, preset.block_size)
    steps = max_steps or preset.max_steps
    tokens_per_step = preset.block_size * preset.batch_size
    log(
        f"{len(tokens):,} training tokens; {steps} steps of {tokens_per_step} tokens "
        f"({steps * tokens_per_step / len(tokens):.2f} epochs)"
        + (f" over {distributed.world_size()} processes" if distributed.world_size() > 1 else "")
    )
    set_seed(seed)  # the same initial weights in every run (and process) of this seed
    model = build_model(preset, len(tokenizer), tokenizer.eos_token_id)
    args = resumable_arguments(
        run_dir,
        preset,
        steps,
        seed,
        lr_scheduler_type="cosine",
        weight_decay=0.1,
        adam_beta2=0.99,
        max_grad_norm=1.0,
    )
    trainer = train_resuming(model, args, dataset, tokens_per_step, max_minutes, progress)
    export_dir, metrics = run_dir / "export", {}
    if distributed.is_main():
        export_dir, metrics = _export(
            trainer, tokenizer, valid_prompts, run_dir, tokens_per_step, log
        )
    return TrainedModel(
        path=export_dir,
        metrics=metrics,
        tokens_seen=trainer.state.global_step * tokens_per_step,
        finished=trainer.state.global_step >= steps,
    )


def prepare_run(
    preset: Preset, corpus: Corpus, run_dir: Path, log: Callable[[str], None]
) -> tuple[PreTrainedTokenizerFast, np.ndarray, list[str]]:
    """The run's tokenizer, training tokens and held-out prompts, made once and cached in
    ``run_dir`` (the first process of a job makes them, the others read them)."""
    prompts = corpus.prompts[: preset.max_train_prompts or None]
    train_prompts, valid_prompts = split_prompts(prompts)
    if not train_prompts or not valid_prompts:
        raise ValueError(f"corpus {corpus.name!r} is too small to split ({len(prompts)} prompts)")

    tokenizer_dir = run_dir / "tokenizer"
    if (tokenizer_dir / "tokenizer.json").is_file():
        tokenizer = load_tokenizer(tokenizer_dir)
    else:
        log(f"training a {preset.vocab_size}-token BPE tokenizer")
        sample = train_prompts[: preset.tokenizer_prompts]
        tokenizer = train_tokenizer(sample, preset.vocab_size, run_dir / "tokenizer.tmp")
        shutil.rmtree(tokenizer_dir, ignore_errors=True)
        (run_dir / "tokenizer.tmp").rename(tokenizer_dir)
    tokens = _cached_tokens(run_dir / TOKENS, tokenizer, train_prompts, log)
    log(f"{len(train_prompts):,} training prompts, {len(valid_prompts):,} held out")
    return tokenizer, tokens, valid_prompts


def resumable_arguments(
    run_dir: Path, preset: Preset | MaskedLMPreset, steps: int, seed: int, **recipe: Any
) -> TrainingArguments:
    """Trainer arguments for a run that saves every ``save_every_steps`` into ``run_dir`` (the
    last two checkpoints kept) and logs twice per save; ``recipe`` adds the optimiser's.

    The preset's batch is split between the job's processes, so that a step means the same
    batch (and a checkpoint the same point of the schedule) with any number of them.
    """
    processes = distributed.world_size()
    if preset.batch_size % processes:
        raise ValueError(
            f"preset {preset.name!r} trains on batches of {preset.batch_size}, which do not "
            f"split evenly over {processes} processes; launch a divisor of {preset.batch_size}"
        )
    cuda = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(run_dir),
        max_steps=steps,
        per_device_train_batch_size=preset.batch_size // processes,
        learning_rate=preset.learning_rate,
        warmup_steps=preset.warmup_steps,
        logging_steps=max(1, min(50, preset.save_every_steps // 2)),
        save_strategy="steps",
        save_steps=preset.save_every_steps,
        save_total_limit=2,
        seed=seed,
        data_seed=seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        # without it the Trainer runs each CPU process of a torchrun job on its own (no gloo)
        use_cpu=not cuda and processes > 1,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=False,
        **recipe,
    )


def train_resuming(
    model: PreTrainedModel,
    args: TrainingArguments,
    dataset: torch.utils.data.Dataset[Any],
    tokens_per_step: int,
    max_minutes: float | None,
    progress: ProgressCallback | None,
    data_collator: DataCollator | None = None,
) -> Trainer:
    """Train from the newest complete checkpoint in ``args.output_dir`` (if any) until the last
    step or the time budget, which saves and stops; the Trainer holds the result."""
    deadline = deadline_after(max_minutes)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=data_collator,
        callbacks=[_ThroughputAndDeadline(tokens_per_step, deadline, progress or _silent)],
    )
    # rank 0's choice: a process that chose another checkpoint (or none) would hang the job
    resume = distributed.share(last_complete_checkpoint(Path(args.output_dir)))
    if resume is not None:
        state = TrainerState.load_from_json(str(resume / TRAINER_STATE))
        if state.global_step >= args.max_steps:
            # Trained to the end but not exported (killed while exporting): the Trainer would
            # take one more step before noticing, so load the last step's weights instead.
            RunLog(progress)(f"{resume.name} is the last step; exporting it")
            trainer._load_from_checkpoint(str(resume))
            trainer.state = state
            return trainer
        RunLog(progress)(f"resuming from {resume.name}")
    # The Trainer prints its logs on stdout, which belongs to the caller (LSP, CLI output).
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer


def save_export(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    history: list[dict[str, Any]],
    run_dir: Path,
    tokens_per_step: int,
) -> Path:
    """``run_dir/export``: the model, its tokenizer and the training-loss curve, replacing any
    earlier export."""
    out = run_dir / "export"
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    _plot_loss(history, out / "loss.png", tokens_per_step)
    return out


def _cached_tokens(
    path: Path,
    tokenizer: PreTrainedTokenizerFast,
    prompts: Sequence[str],
    log: Callable[[str], None],
) -> np.ndarray:
    if path.is_file():
        return np.load(path, mmap_mode="r")
    log(f"tokenizing {len(prompts):,} prompts")
    tokens = encode_prompts(tokenizer, prompts)
    tmp = path.with_name(path.stem + ".tmp.npy")
    np.save(tmp, tokens)
    tmp.rename(path)
    return np.load(path, mmap_mode="r")


def _export(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerFast,
    valid_prompts: Sequence[str],
    run_dir: Path,
    tokens_per_step: int,
    log: Callable[[str], None],
) -> tuple[Path, dict[str, float]]:
    """Write a self-contained model directory: weights, tokenizer, generation config, curve."""
    from model_store.evaluation import perplexity

    model = trainer.model.float().eval()
    metrics = perplexity(model, tokenizer, valid_prompts[:2000])
    log(
        f"held-out perplexity: {metrics['token_perplexity']:.2f} per token, "
        f"{metrics['word_perplexity']:.2f} per word"
    )
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        do_sample=True,
        temperature=0.8,
        top_k=40,
        repetition_penalty=1.2,
        max_new_tokens=60,
    )
    out = save_export(model, tokenizer, trainer.state.log_history, run_dir, tokens_per_step)
    return out, metrics


def _plot_loss(history: list[dict[str, Any]], path: Path, tokens_per_step: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"] * tokens_per_step, h["loss"]) for h in history if "loss" in h]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] / 1e6 for p in points], [p[1] for p in points])
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"training loss (final {points[-1][1]:.3f}, ppl {math.exp(points[-1][1]):.1f})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
