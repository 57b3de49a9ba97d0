"""Load a verified checkpoint into transformers objects, never touching a hub."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import logging as transformers_logging


def load_causal_lm(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Weights in fp32 for CPU inference (fp16 on disk halves the package, not the maths)."""
    transformers_logging.disable_progress_bar()  # stderr noise in servers and REPLs
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, local_files_only=True, use_safetensors=True
    )
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    model.eval()
    return model, tokenizer
