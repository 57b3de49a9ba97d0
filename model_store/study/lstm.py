"""The study's benchmark: a word-level LSTM next-word model, with the study's mistakes fixed.

The study trained this LSTM for 30 epochs on 1k prompts with no held-out data; it reached a
training loss of 0.002 (memorised) and could not generate. Here it keeps the study's shape
(n-gram windows, left padding, embedding + 2-layer LSTM + dropout + a head over the last step,
Adam, cross-entropy) but trains on many more prompts, watches the loss on held-out prompt
families, stops early and keeps the best weights.

Tokenisation (``prompt_words.study_tokens``, chosen for completion):
- lower-cased: Stable Diffusion's CLIP text encoder lower-cases prompts, so case carries no
  meaning for the image and would only split the vocabulary ("Portrait"/"portrait");
- words keep inner hyphens, apostrophes and decimal points ("self-portrait", "1.2");
- every other punctuation character is its own token: commas separate the phrases of a
  prompt, so predicting "," is predicting where a phrase ends;
- ``<bos>`` starts and ``<eos>`` ends every prompt, so the first word is predicted too and
  generation knows when a prompt is finished; ``<unk>`` stands for every word outside the
  vocabulary (the ``max_vocab`` most frequent words seen at least ``min_count`` times).
"""

from __future__ import annotations

import bisect
import json
import math
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from model_store.corpus import Corpus
from model_store.presets import WordLSTMPreset
from model_store.runs import (
    ProgressCallback,
    RunLog,
    TrainedModel,
    deadline_after,
    held_out_split,
    open_run,
)
from prompt_words import study_tokens, whitespace_words

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)
FORMAT = "word-lstm-1"

_WORDLIKE = re.compile(r"\w")
_NO_SPACE_BEFORE = frozenset(",.;:!?)]}%")
_NO_SPACE_AFTER = frozenset("([{")


def detokenize(tokens: Iterable[str], after: str = "") -> str:
    """Join tokens as a person types them, continuing the text ``after`` (not included)."""
    pieces: list[str] = []
    previous = after[-1:] if after else ""
    for token in tokens:
        glue = not previous or previous.isspace() or previous[-1] in _NO_SPACE_AFTER
        if not glue and token not in _NO_SPACE_BEFORE:
            pieces.append(" ")
        pieces.append(token)
        previous = token
    return "".join(pieces)


class Vocabulary:
    """Word <-> index; ids 0-3 are ``<pad> <unk> <bos> <eos>``, then words by frequency."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.ids = {word: index for index, word in enumerate(self.words)}
        # (word, id) sorted by word, for prefix lookups while a word is being typed
        self._sorted = sorted((w, i) for i, w in enumerate(self.words) if i >= len(SPECIALS))
        self._sorted_words = [w for w, _ in self._sorted]
        self.word_entries = [(w, i) for w, i in self._sorted if _WORDLIKE.match(w)]

    @classmethod
    def build(cls, prompts: Iterable[str], max_size: int, min_count: int) -> Vocabulary:
        """The ``max_size - 4`` most frequent words seen at least ``min_count`` times."""
        counts = Counter(token for prompt in prompts for token in study_tokens(prompt))
        kept = [w for w, c in counts.most_common() if c >= min_count][: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.ids.get(token, UNK_ID) for token in tokens]

    def with_prefix(self, prefix: str) -> list[tuple[str, int]]:
        """Vocabulary words (no special tokens) that start with ``prefix``."""
        start = bisect.bisect_left(self._sorted_words, prefix)
        stop = bisect.bisect_left(self._sorted_words, prefix + "\U0010ffff")
        return self._sorted[start:stop]


@dataclass(frozen=True)
class WordLSTMConfig:
    """What a checkpoint needs to rebuild the network and its input windows."""

    vocab_size: int
    embedding_dim: int
    hidden_size: int
    num_layers: int
    dropout: float
    sequence_length: int  # the model reads sequence_length - 1 words
    format: str = FORMAT
    lowercase: bool = True

    @property
    def context(self) -> int:
        return self.sequence_length - 1


class WordLSTM(nn.Module):
    """Embedding, stacked LSTM, dropout, and a linear head over the last time step."""

    def __init__(self, config: WordLSTMConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, PAD_ID)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(batch, context) left-padded word ids -> (batch, vocab) next-word logits."""
        hidden, _ = self.lstm(self.embedding(inputs))
        return self.head(self.dropout(hidden[:, -1]))


# -- n-gram windows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedPrompts:
    """Prompts as one id stream ``<bos> w... <eos> <bos> ...`` with each position's prompt start.

    Every position except a ``<bos>`` is a target; its input window is the (at most
    ``context``) preceding ids of the same prompt, left-padded: the study's n-gram sequences,
    built on the fly instead of materialised (they would take ~16x the memory).
    """

    stream: np.ndarray
    starts: np.ndarray
    targets: np.ndarray

    @classmethod
    def encode(cls, prompts: Iterable[str], vocab: Vocabulary) -> EncodedPrompts:
        ids: list[int] = []
        starts: list[int] = []
        for prompt in prompts:
            row = [BOS_ID, *vocab.encode(study_tokens(prompt)), EOS_ID]
            starts.extend([len(ids)] * len(row))
            ids.extend(row)
        stream = np.asarray(ids, dtype=np.int64)
        return cls(stream, np.asarray(starts, dtype=np.int64), np.flatnonzero(stream != BOS_ID))

    def windows(self, positions: np.ndarray, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (len(positions), context) and targets (len(positions),)."""
        index = positions[:, None] + np.arange(-context, 0)[None, :]
        inside = index >= self.starts[positions][:, None]
        inputs = np.where(inside, self.stream[np.maximum(index, 0)], PAD_ID)
        return torch.from_numpy(inputs), torch.from_numpy(self.stream[positions])


def context_window(ids: Sequence[int], context: int) -> list[int]:
    """The last ``context`` ids, left-padded, as the model was trained to read them."""
    tail = list(ids[-context:])
    return [PAD_ID] * (context - len(tail)) + tail


# -- evaluation --------------------------------------------------------------------------------


@torch.inference_mode()
def window_nll(
    model: WordLSTM, data: EncodedPrompts, context: int, batch_size: int = 1024
) -> tuple[float, int]:
    """Summed cross-entropy (nats) over every target of ``data``, and the number of targets."""
    model.eval()
    total = 0.0
    for start in range(0, len(data.targets), batch_size):
        inputs, targets = data.windows(data.targets[start : start + batch_size], context)
        logits = model(inputs)
        total += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
    return total, len(data.targets)


def lstm_perplexity(
    model: WordLSTM, vocab: Vocabulary, config: WordLSTMConfig, prompts: Sequence[str]
) -> dict[str, float]:
    """Perplexity per LSTM token and per whitespace word, like model_store.evaluation.

    Each prompt is scored as ``<bos> tokens <eos>``: the first word and the end count, as
    EOS + prompt + EOS does for the causal LMs. OOV handling: a word outside the vocabulary is
    scored as a prediction of the ``<unk>`` class, which covers every such word at once, so
    the figure is optimistic when ``oov_rate`` is high; it is reported beside the perplexity.
    """
    if not prompts:
        raise ValueError("no prompts to evaluate")
    data = EncodedPrompts.encode(prompts, vocab)
    nll, count = window_nll(model, data, config.context)
    words = sum(len(whitespace_words(prompt)) for prompt in prompts)
    unknown = int(np.count_nonzero(data.stream[data.targets] == UNK_ID))
    return {
        "token_perplexity": math.exp(nll / count),
        "word_perplexity": math.exp(nll / max(1, words)),
        "oov_rate": unknown / count,
        "prompts": float(len(prompts)),
        "tokens": float(count),
        "words": float(words),
    }


# -- training ----------------------------------------------------------------------------------


def train_word_lstm(
    preset: WordLSTMPreset,
    corpus: Corpus,
    run_dir: Path,
    *,
    max_minutes: float | None = None,
    seed: int = 42,
    progress: ProgressCallback | None = None,
) -> TrainedModel:
    """Train (or resume) the LSTM in ``run_dir`` with early stopping; export the best weights.

    The corpus is split by prompt family first (held-out families measure generalisation,
    which the study never did), then the training side is capped at ``max_train_prompts``.
    State is saved at every evaluation and when ``max_minutes`` runs out; a rerun resumes.
    """
    log = RunLog(progress)
    open_run(run_dir, preset, corpus)
    train_prompts, valid_prompts = held_out_split(
        corpus, preset.max_train_prompts, preset.valid_prompts
    )

    vocab_file = run_dir / "vocab.json"
    if vocab_file.is_file():
        vocab = Vocabulary(json.loads(vocab_file.read_text(encoding="utf-8")))
    else:
        vocab = Vocabulary.build(train_prompts, preset.max_vocab, preset.min_count)
        vocab_file.write_text(json.dumps(vocab.words, ensure_ascii=False), encoding="utf-8")
    config = WordLSTMConfig(
        vocab_size=len(vocab),
        embedding_dim=preset.embedding_dim,
        hidden_size=preset.hidden_size,
        num_layers=preset.num_layers,
        dropout=preset.dropout,
        sequence_length=preset.sequence_length,
    )
    train_data = EncodedPrompts.encode(train_prompts, vocab)
    valid_data = EncodedPrompts.encode(valid_prompts, vocab)
    steps_per_epoch = math.ceil(len(train_data.targets) / preset.batch_size)
    max_steps = min(preset.max_steps, preset.max_epochs * steps_per_epoch)
    log(
        f"{len(train_prompts):,} training prompts ({len(train_data.targets):,} n-gram windows), "
        f"{len(valid_prompts):,} held-out; vocabulary {len(vocab):,}; up to {max_steps} steps "
        f"({max_steps / steps_per_epoch:.2f} epochs)"
    )

    torch.manual_seed(seed)
    model = WordLSTM(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.learning_rate)
    state = _TrainingState.load(run_dir, model, optimizer)
    if state.step:
        log(f"resuming from step {state.step}")
    deadline = deadline_after(max_minutes)
    order = np.empty(0, dtype=np.int64)
    order_epoch = -1
    running_loss, running_count = 0.0, 0
    while state.step < max_steps and not state.stopped_early:
        epoch, batch_index = divmod(state.step, steps_per_epoch)
        if epoch != order_epoch:
            order = np.random.default_rng(seed + epoch).permutation(len(train_data.targets))
            order_epoch = epoch
        batch = order[batch_index * preset.batch_size : (batch_index + 1) * preset.batch_size]
        inputs, targets = train_data.windows(train_data.targets[batch], config.context)
        model.train()
        loss = nn.functional.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        state.step += 1
        running_loss += loss.item() * len(batch)
        running_count += len(batch)
        if state.step % preset.eval_every_steps == 0 or state.step == max_steps:
            nll, count = window_nll(model, valid_data, config.context)
            state.record(state.step / steps_per_epoch, running_loss / running_count, nll / count)
            running_loss, running_count = 0.0, 0
            if state.improved():
                save_file(model.state_dict(), str(run_dir / "best.safetensors"))
            elif state.evals_since_best() >= preset.patience:
                state.stopped_early = True
            last = state.history[-1]
            log(
                f"step {state.step}/{max_steps} epoch {last['epoch']:.2f}: train loss "
                f"{last['train_loss']:.3f}, held-out loss {last['valid_loss']:.3f}"
                + (" (early stop: no better held-out loss)" if state.stopped_early else ""),
                state.step / max_steps,
            )
            state.save(run_dir, model, optimizer)
        elif state.step % max(1, preset.eval_every_steps // 10) == 0:
            log(
                f"step {state.step}/{max_steps}: batch loss {loss.item():.3f}",
                state.step / max_steps,
            )
        out_of_time = deadline is not None and time.monotonic() > deadline
        if out_of_time and state.step < max_steps and not state.stopped_early:
            # no held-out pass here: on a starved machine it could outlast the budget itself
            state.save(run_dir, model, optimizer)
            log(f"time budget spent at step {state.step}; rerun the same command to resume")
            return TrainedModel(run_dir / "export", {}, state.step * preset.batch_size, False)
    model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    export_dir = _export(model, vocab, config, valid_prompts, state.history, run_dir, log)
    metrics = json.loads((export_dir / "metrics.json").read_text(encoding="utf-8"))
    return TrainedModel(
        path=export_dir,
        metrics=metrics,
        tokens_seen=state.step * preset.batch_size,
        finished=True,
    )


class _TrainingState:
    """Step, loss history and early-stopping counters, saved beside the weights."""

    def __init__(self, step: int, history: list[dict[str, float]], stopped_early: bool):
        self.step = step
        self.history = history
        self.stopped_early = stopped_early

    @classmethod
    def load(
        cls, run_dir: Path, model: WordLSTM, optimizer: torch.optim.Optimizer
    ) -> _TrainingState:
        state_dir = run_dir / "state"
        if not (state_dir / "state.json").is_file():
            return cls(0, [], False)
        saved = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
        model.load_state_dict(load_file(str(state_dir / "model.safetensors")))
        _load_adam(optimizer, load_file(str(state_dir / "optimizer.safetensors")))
        return cls(saved["step"], saved["history"], saved["stopped_early"])

    def record(self, epoch: float, train_loss: float, valid_loss: float) -> None:
        self.history.append(
            {"step": self.step, "epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss}
        )

    def improved(self) -> bool:
        return self.evals_since_best() == 0

    def evals_since_best(self) -> int:
        losses = [h["valid_loss"] for h in self.history]
        return len(losses) - 1 - losses.index(min(losses))

    def save(self, run_dir: Path, model: WordLSTM, optimizer: torch.optim.Optimizer) -> None:
        """Write a complete new state directory, then swap it in: a kill never leaves half."""
        tmp = run_dir / "state.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file(model.state_dict(), str(tmp / "model.safetensors"))
        save_file(_adam_tensors(optimizer), str(tmp / "optimizer.safetensors"))
        record = {"step": self.step, "history": self.history, "stopped_early": self.stopped_early}
        (tmp / "state.json").write_text(json.dumps(record), encoding="utf-8")
        old = run_dir / "state.old"
        shutil.rmtree(old, ignore_errors=True)
        if (run_dir / "state").exists():
            (run_dir / "state").rename(old)
        tmp.rename(run_dir / "state")
        shutil.rmtree(old, ignore_errors=True)


def _adam_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's moments as flat named tensors: safetensors instead of a pickle."""
    tensors = {}
    for index, entry in optimizer.state_dict()["state"].items():
        for key, value in entry.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).clone()
    return tensors


def _load_adam(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    saved = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    saved["state"] = state
    optimizer.load_state_dict(saved)


def _export(
    model: WordLSTM,
    vocab: Vocabulary,
    config: WordLSTMConfig,
    valid_prompts: Sequence[str],
    history: list[dict[str, float]],
    run_dir: Path,
    log: Callable[[str], None],
) -> Path:
    """A self-contained directory: weights, vocabulary, config, metrics and the loss curves."""
    model.eval()
    metrics = lstm_perplexity(model, vocab, config, valid_prompts)
    best = min(history, key=lambda h: h["valid_loss"])
    metrics.update(
        best_step=float(best["step"]),
        train_loss=best["train_loss"],
        valid_loss=best["valid_loss"],
        epochs=history[-1]["epoch"],
    )
    log(
        f"held-out perplexity: {metrics['token_perplexity']:.2f} per token, "
        f"{metrics['word_perplexity']:.2f} per word (OOV {metrics['oov_rate']:.1%})"
    )
    out = run_dir / "export"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    save_file(model.state_dict(), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "vocab.json").write_text(json.dumps(vocab.words, ensure_ascii=False), encoding="utf-8")
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (out / "history.json").write_text(json.dumps(history, indent=2), encoding="utf-8")
    _plot_history(history, out / "loss.png")
    return out


def _plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Training and held-out loss on one plot: the gap is the overfitting the study missed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="training")
    ax.plot(epochs, [h["valid_loss"] for h in history], label="held-out families")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats/word)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- loading and prediction --------------------------------------------------------------------


def load_word_lstm(path: Path) -> tuple[WordLSTM, Vocabulary, WordLSTMConfig]:
    """Rebuild the network from a checkpoint directory (verify it through the store first)."""
    raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a word-LSTM checkpoint (format {raw.get('format')!r})")
    config = WordLSTMConfig(**raw)
    vocab = Vocabulary(json.loads((path / "vocab.json").read_text(encoding="utf-8")))
    if len(vocab) != config.vocab_size:
        raise ValueError(
            f"{path}: vocab.json has {len(vocab)} words, config says {config.vocab_size}"
        )
    model = WordLSTM(config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.eval()
    return model, vocab, config
