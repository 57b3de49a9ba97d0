"""Named training recipes: model shape, tokenizer size and training budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    """Everything that decides what a training run produces, so a checkpoint can name it."""

    name: str
    kind: str  # "causal-lm"; other kinds (lstm, mlm) register their own trainers
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    block_size: int
    batch_size: int
    max_steps: int
    learning_rate: float
    warmup_steps: int
    save_every_steps: int
    tokenizer_prompts: int  # how many prompts the BPE tokenizer is trained on
    max_train_prompts: int | None = None  # None: the whole corpus

    def describe(self) -> dict[str, object]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    # For tests: seconds on two CPU cores, output is noise but the whole path is exercised.
    "tiny": Preset(
        name="tiny",
        kind="causal-lm",
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=1024,
        block_size=64,
        batch_size=16,
        max_steps=120,
        learning_rate=3e-3,
        warmup_steps=10,
        save_every_steps=40,
        tokenizer_prompts=5_000,
        max_train_prompts=20_000,
    ),
    # The CPU default (5.3M parameters): about 2.5k tokens/s on two cores.
    "small": Preset(
        name="small",
        kind="causal-lm",
        n_layer=4,
        n_embd=256,
        n_head=4,
        vocab_size=8192,
        block_size=128,
        batch_size=16,
        max_steps=2400,
        learning_rate=1.5e-3,
        warmup_steps=100,
        save_every_steps=100,
        tokenizer_prompts=300_000,
    ),
    # For a GPU: 8 layers, width 512, 16k vocabulary (about 34M parameters).
    "base": Preset(
        name="base",
        kind="causal-lm",
        n_layer=8,
        n_embd=512,
        n_head=8,
        vocab_size=16384,
        block_size=128,
        batch_size=256,
        max_steps=6000,
        learning_rate=1e-3,
        warmup_steps=300,
        save_every_steps=1000,
        tokenizer_prompts=1_000_000,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
