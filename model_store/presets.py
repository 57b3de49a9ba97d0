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


@dataclass(frozen=True)
class WordLSTMPreset:
    """The study's benchmark: a word-level LSTM trained on fixed-length n-gram windows."""

    name: str
    kind: str  # "word-lstm"
    embedding_dim: int
    hidden_size: int
    num_layers: int
    dropout: float
    max_vocab: int  # words kept (most frequent first), special tokens included
    min_count: int  # rarer words become <unk>, so the <unk> row is trained too
    sequence_length: int  # window length: input is all but the last word, target the last
    batch_size: int
    learning_rate: float
    max_epochs: int
    max_steps: int
    eval_every_steps: int  # validation loss, early stopping and a resumable save
    patience: int  # evaluations without a better validation loss before stopping
    max_train_prompts: int | None
    valid_prompts: int  # held-out prompts scored at each evaluation

    def describe(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class MaskedLMPreset:
    """The study's refinement: a RoBERTa masked LM, trained from scratch or fine-tuned."""

    name: str
    kind: str  # "masked-lm"
    n_layer: int
    n_embd: int
    n_head: int
    vocab_size: int
    block_size: int  # tokens per prompt, <s> and </s> included
    batch_size: int
    max_steps: int
    learning_rate: float
    warmup_steps: int
    save_every_steps: int
    tokenizer_prompts: int
    max_train_prompts: int | None = None
    mlm_probability: float = 0.15
    base_model: str | None = None  # a store reference to fine-tune (its tokenizer is kept)

    def describe(self) -> dict[str, object]:
        return asdict(self)


AnyPreset = Preset | WordLSTMPreset | MaskedLMPreset

BASELINE_PRESETS: dict[str, AnyPreset] = {
    # For tests: a few seconds on one core.
    "lstm-tiny": WordLSTMPreset(
        name="lstm-tiny",
        kind="word-lstm",
        embedding_dim=16,
        hidden_size=32,
        num_layers=2,
        dropout=0.2,
        max_vocab=500,
        min_count=1,
        sequence_length=8,
        batch_size=64,
        learning_rate=5e-3,
        max_epochs=2,
        max_steps=60,
        eval_every_steps=20,
        patience=2,
        max_train_prompts=2_000,
        valid_prompts=200,
    ),
    # The study's benchmark at CPU scale: 4 minutes on two quiet cores (about 2,700 windows/s;
    # 30 when they were busy).
    # 10k words cover ~96% of prompt tokens; width 128 because the LSTM reruns each window.
    "lstm": WordLSTMPreset(
        name="lstm",
        kind="word-lstm",
        embedding_dim=64,
        hidden_size=128,
        num_layers=2,
        dropout=0.2,
        max_vocab=10_000,
        min_count=3,
        sequence_length=16,
        batch_size=128,
        learning_rate=2e-3,
        max_epochs=30,
        max_steps=5_000,
        eval_every_steps=500,
        patience=3,
        max_train_prompts=60_000,
        valid_prompts=1_000,
    ),
    # For tests: RoBERTa with 2 layers of width 64.
    "mlm-tiny": MaskedLMPreset(
        name="mlm-tiny",
        kind="masked-lm",
        n_layer=2,
        n_embd=64,
        n_head=2,
        vocab_size=512,
        block_size=64,
        batch_size=16,
        max_steps=40,
        learning_rate=5e-4,
        warmup_steps=4,
        save_every_steps=20,
        tokenizer_prompts=2_000,
        max_train_prompts=2_000,
    ),
    # A RoBERTa trained from scratch on CPU (4 layers, width 256, 8k vocabulary): 12 minutes
    # on two quiet cores (about 30 on busy ones).
    "mlm": MaskedLMPreset(
        name="mlm",
        kind="masked-lm",
        n_layer=4,
        n_embd=256,
        n_head=4,
        vocab_size=8192,
        block_size=96,
        batch_size=32,
        max_steps=1_200,
        learning_rate=5e-4,
        warmup_steps=60,
        save_every_steps=200,
        tokenizer_prompts=50_000,
        max_train_prompts=50_000,
    ),
    # The study's recipe: distilroberta-base fine-tuned at 2e-5, batch 8, linear schedule
    # (needs the Hugging Face Hub once; 3 epochs over 1k prompts as in the study).
    "mlm-distilroberta": MaskedLMPreset(
        name="mlm-distilroberta",
        kind="masked-lm",
        n_layer=6,
        n_embd=768,
        n_head=12,
        vocab_size=50265,
        block_size=128,
        batch_size=8,
        max_steps=375,
        learning_rate=2e-5,
        warmup_steps=0,
        save_every_steps=125,
        tokenizer_prompts=0,
        max_train_prompts=1_000,
        base_model="hf:distilroberta-base",
    ),
}

PRESETS: dict[str, AnyPreset] = {
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
    # The GPU recipe's (scripts/gpu_recipe.py, docs/training.md): 6 layers, width 512, 16k
    # vocabulary (27M parameters, 55 MB in fp16: the most a lent H200 can send back); its
    # max_steps is only a default, the recipe sizes it to the machine's minutes.
    "medium": Preset(
        name="medium",
        kind="causal-lm",
        n_layer=6,
        n_embd=512,
        n_head=8,
        vocab_size=16384,
        block_size=128,
        batch_size=256,
        max_steps=10_000,
        learning_rate=1e-3,
        warmup_steps=300,
        save_every_steps=1000,
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


PRESETS.update(BASELINE_PRESETS)


def get_preset(name: str) -> AnyPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
