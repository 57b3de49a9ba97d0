"""Any transformers causal LM as a ``Runner``, through its own forward and a ``DynamicCache``.

Slower than ``GPT2Runner`` and the only code on the serving path that needs torch and
transformers' modelling code, so it is imported only for checkpoints that are not plain
GPT-2. It speaks numpy to the engine, as every runner does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, DynamicCache, PreTrainedModel

from server.engine.runner import Array, Context, Rows, Runner, check_context


@dataclass
class _CacheRows(Rows):
    cache: DynamicCache


class HFRunner(Runner):
    """Any transformers causal LM, through its own forward and a ``DynamicCache``."""

    @classmethod
    def from_directory(cls, path: Path) -> HFRunner:
        model = AutoModelForCausalLM.from_pretrained(
            str(path), local_files_only=True, dtype=torch.float32, use_safetensors=True
        )
        return cls(model.eval())

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        config = model.config
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.max_positions = int(
            getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048)
        )
        self._cache = DynamicCache(config=config)

    def prime(self, ids: Sequence[int]) -> Context:
        """The cache is cropped and extended in place, so only the last context can be forked."""
        ids = check_context(ids, self.max_positions)
        keep = self._cached_prefix(ids)
        if keep is None and self._last is not None:
            return self._last
        if not keep:
            self._cache = DynamicCache(config=self.model.config)
        elif self._cache.get_seq_length() > keep:
            self._cache.crop(keep - self._cache.get_seq_length())  # negative: tokens to remove
        with torch.inference_mode():
            output = self.model(
                input_ids=torch.tensor([ids[keep:]]), cache=self._cache, use_cache=True
            )
        logprobs = torch.log_softmax(output.logits[0, -1].float(), dim=-1).numpy()
        self._last = Context(tuple(ids), logprobs, self._cache)
        return self._last

    def fork(self, context: Context, rows: int, capacity: int) -> Rows:
        if context is not self._last:
            raise RuntimeError("this runner forks only the context it primed last: prime it again")
        with torch.inference_mode():
            cache = copy.deepcopy(self._cache)
            cache.batch_repeat_interleave(rows)
        return _CacheRows(cache)

    def step(self, rows: Rows, tokens: Array) -> Array:
        assert isinstance(rows, _CacheRows)
        input_ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64).reshape(-1, 1))
        with torch.inference_mode():
            output = self.model(input_ids=input_ids, cache=rows.cache, use_cache=True)
        return output.logits[:, -1].float().numpy()

    def select(self, rows: Rows, indices: Array) -> None:
        assert isinstance(rows, _CacheRows)
        with torch.inference_mode():
            rows.cache.batch_select_indices(torch.from_numpy(np.asarray(indices, dtype=np.int64)))
