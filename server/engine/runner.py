"""Running the language model step by step, with a KV cache that outlives a request.

The hot path of every keystroke is a handful of one-token forward passes on a 5M-parameter
model, where Python overhead, not arithmetic, dominates. ``GPT2Runner`` therefore runs GPT-2
checkpoints with its own short forward pass (preallocated KV buffers, no masks or output
objects for single-token steps), read straight from the checkpoint's safetensors: the server
never imports transformers' modelling code, which alone takes seconds to import. Any other
causal LM runs through transformers (``hf_runner.HFRunner``), which is also the reference the
fast path is tested against.

Both keep the last context (token ids plus KV states) so the next request for the same prompt
only feeds the tokens that changed: the user typing one more word costs one or two tokens.
``prime`` returns that context as a handle (``Context``) and decoding forks copies of the
handle it is given into a batch, so the stored context is never modified by candidates and
priming another context in between (the blend scores the line before the typed word) cannot
change what a later ``fork`` continues.
"""

from __future__ import annotations

import functools
import json
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

Tensor = torch.Tensor


def common_prefix_length(first: Sequence[int], second: Sequence[int]) -> int:
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def check_context(ids: Sequence[int], max_positions: int) -> list[int]:
    ids = [int(token) for token in ids]
    if not ids or len(ids) > max_positions:
        raise ValueError(f"a context must have 1 to {max_positions} tokens, got {len(ids)}")
    return ids


class Rows(ABC):  # noqa: B024 - a marker base: each runner has its own batch state
    """A batch of decoding rows that all continue one primed context."""


@dataclass(frozen=True)
class Context:
    """A primed context, as ``prime`` returns it: what ``fork`` and ``logits_tree`` continue."""

    ids: tuple[int, ...]
    logprobs: Tensor  # of the next token, shape (V,)
    state: Any  # the runner's cache after ``ids`` (GPT-2: each layer's keys and values)


class Runner(ABC):
    """Log-probabilities after a context, and batched one-token steps from there."""

    vocab_size: int
    max_positions: int
    reused_tokens: int = 0  # how many context tokens the last ``prime`` took from the cache
    _last: Context | None = None

    @property
    def context_ids(self) -> list[int]:
        """The context the last ``prime`` was given (kept for the next one to reuse)."""
        return list(self._last.ids) if self._last is not None else []

    def _cached_prefix(self, ids: list[int]) -> int | None:
        """How many leading tokens of ``ids`` the cache holds and the next pass can skip
        (sets ``reused_tokens``); None when ``ids`` is the last context itself.

        At least the last token is always run again: its output is the answer.
        """
        last = list(self._last.ids) if self._last is not None else []
        if ids == last:
            self.reused_tokens = len(ids)
            return None
        self.reused_tokens = min(common_prefix_length(last, ids), len(ids) - 1)
        return self.reused_tokens

    @abstractmethod
    def prime(self, ids: Sequence[int]) -> Context:
        """Run ``ids`` (reusing the cache of the last context) and return them primed."""

    @abstractmethod
    def fork(self, context: Context, rows: int, capacity: int) -> Rows:
        """``rows`` copies of ``context``, with room for ``capacity`` more tokens."""

    @abstractmethod
    def step(self, rows: Rows, tokens: Tensor) -> Tensor:
        """Feed one token per row; return the next-token logits, shape (rows, V)."""

    @abstractmethod
    def select(self, rows: Rows, indices: Tensor) -> None:
        """Keep (and reorder or repeat) the rows at ``indices``."""

    def logits_tree(
        self, context: Context, tokens: Sequence[int], parents: Sequence[int]
    ) -> Tensor:
        """Next-token logits after each node of a token tree that continues ``context``.

        Node ``i`` is token ``tokens[i]`` following node ``parents[i]`` (-1: the end of the
        context); parents come before their children. Returns shape (nodes, V); the context
        is left as it is. Candidate words share their first tokens ("portrait",
        "portrait,", "portraits"), so a tree scores them all with each prefix computed once.
        """
        paths: list[list[int]] = []
        for token, parent in zip(tokens, parents, strict=True):
            paths.append([*(paths[parent] if parent >= 0 else []), int(token)])
        if not paths:
            return torch.empty(0, self.vocab_size)
        depth = max(len(path) for path in paths)
        padded = torch.tensor([path + [path[-1]] * (depth - len(path)) for path in paths])
        rows = self.fork(context, len(paths), depth)
        logits = [self.step(rows, padded[:, index]) for index in range(depth)]
        last = torch.tensor([len(path) - 1 for path in paths])
        return torch.stack(logits, dim=1)[torch.arange(len(paths)), last]


class _Linear:
    """``x @ weight + bias``, with the weight prepacked as fp16 for fbgemm when allowed.

    Measured on the target CPUs (AMD EPYC, MKL): MKL's fp32 GEMM repacks the weight on every
    call, so a (4, 256) x (256, 8192) product takes ~3 ms; fbgemm's prepacked fp16-weight
    kernel takes ~0.25 ms, and 2-3x less for the layers' smaller products. Activations and
    accumulation stay fp32; logits move by about 1e-3.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, half: bool) -> None:
        if half and not fp16_kernels_available():
            raise RuntimeError("this torch build has no fbgemm fp16 kernels; use half=False")
        self.bias = bias if bias is not None else torch.zeros(weight.shape[1])
        # Only one copy is kept: the fp32 weights of the packed layers were 21 MB of RSS.
        self.packed = torch.fbgemm_pack_gemm_matrix_fp16(weight.t().contiguous()) if half else None
        self.weight = None if half else weight  # (in, out), the layout of GPT-2's Conv1D

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return torch.fbgemm_linear_fp16_weight_fp32_activation(x, self.packed, self.bias)
        assert self.weight is not None
        return torch.addmm(self.bias, x, self.weight)


@functools.lru_cache(maxsize=1)
def fp16_kernels_available() -> bool:
    """True when this torch build has fbgemm's fp16-weight linear.

    The kernels are deprecated but shipped with the pinned torch; they are used deliberately,
    so their one-time deprecation warnings are silenced here, where they would first fire.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            packed = torch.fbgemm_pack_gemm_matrix_fp16(torch.ones(2, 2))
            torch.fbgemm_linear_fp16_weight_fp32_activation(
                torch.ones(1, 2), packed, torch.zeros(2)
            )
        except (AttributeError, RuntimeError):
            return False
    return True


@dataclass
class _Block:
    ln1: tuple[Tensor, Tensor]
    attention: _Linear
    attention_out: _Linear
    ln2: tuple[Tensor, Tensor]
    mlp_in: _Linear
    mlp_out: _Linear
    scale: float


@dataclass
class _BufferRows(Rows):
    keys: list[Tensor]  # per layer (rows, heads, capacity, head_dim)
    values: list[Tensor]
    length: int


# GPT-2's activation names -> the function; other activations go through transformers.
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


class GPT2Runner(Runner):
    """GPT-2 with a hand-written forward pass that matches transformers' to float precision."""

    @staticmethod
    def supports(config: Mapping[str, Any]) -> bool:
        """True for plain GPT-2 language models (``config.json`` as a dict)."""
        return (
            config.get("model_type") == "gpt2"
            and (config.get("architectures") or ["GPT2LMHeadModel"]) == ["GPT2LMHeadModel"]
            and not config.get("add_cross_attention", False)
            and config.get("activation_function", "gelu_new") in _ACTIVATIONS
        )

    @classmethod
    def from_directory(cls, path: Path, half_weights: bool | None = None) -> GPT2Runner:
        """Read ``config.json`` and ``model.safetensors`` of a GPT-2 checkpoint directory."""
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not cls.supports(config):
            raise ValueError(f"{path}: not a plain GPT-2 language model")
        weights = load_file(path / "model.safetensors")
        return cls(config, weights, half_weights)

    def __init__(
        self,
        config: Mapping[str, Any],
        weights: Mapping[str, Tensor],
        half_weights: bool | None = None,
    ) -> None:
        """``config``: GPT-2's config.json; ``weights``: GPT2LMHeadModel's state dict (the
        output layer may be missing, as tied checkpoints store it once).

        ``half_weights``: fp16 weight kernels (default: when available); False is exact.
        """
        half = fp16_kernels_available() if half_weights is None else half_weights
        self.half_weights = half

        def weight(name: str) -> Tensor:
            if name not in weights:
                raise ValueError(f"the checkpoint has no weight {name!r}")
            return weights[name].detach().float()

        def linear(name: str) -> _Linear:
            return _Linear(weight(f"{name}.weight"), weight(f"{name}.bias"), half)

        def norm(name: str) -> tuple[Tensor, Tensor]:
            return weight(f"{name}.weight"), weight(f"{name}.bias")

        self.max_positions = int(config["n_positions"])
        self.width = int(config["n_embd"])
        self.heads = int(config["n_head"])
        self.head_dim = self.width // self.heads
        self.eps = float(config.get("layer_norm_epsilon", 1e-5))
        self.activation = _ACTIVATIONS[config.get("activation_function", "gelu_new")]
        self.blocks = []
        for index in range(int(config["n_layer"])):
            scale = self.head_dim**-0.5 if config.get("scale_attn_weights", True) else 1.0
            if config.get("scale_attn_by_inverse_layer_idx", False):
                scale /= float(index + 1)
            layer = f"transformer.h.{index}"
            self.blocks.append(
                _Block(
                    ln1=norm(f"{layer}.ln_1"),
                    attention=linear(f"{layer}.attn.c_attn"),
                    attention_out=linear(f"{layer}.attn.c_proj"),
                    ln2=norm(f"{layer}.ln_2"),
                    mlp_in=linear(f"{layer}.mlp.c_fc"),
                    mlp_out=linear(f"{layer}.mlp.c_proj"),
                    scale=scale,
                )
            )
        self.token_embedding = weight("transformer.wte.weight")
        self.position_embedding = weight("transformer.wpe.weight")
        self.final_norm = norm("transformer.ln_f")
        tied = config.get("tie_word_embeddings", True)
        head = (
            "transformer.wte.weight"
            if tied and "lm_head.weight" not in weights
            else "lm_head.weight"
        )
        self.output = _Linear(weight(head).t().contiguous(), None, half)
        self.vocab_size = int(self.token_embedding.shape[0])

    def _layer_norm(self, x: Tensor, weight_bias: tuple[Tensor, Tensor]) -> Tensor:
        return F.layer_norm(x, (self.width,), weight_bias[0], weight_bias[1], self.eps)

    def _forward(
        self,
        tokens: Tensor,
        positions: Tensor,
        attend: Callable[[int, Tensor, Tensor, Tensor], Tensor],
    ) -> Tensor:
        """Hidden states after the final norm for ``tokens`` (B, T) at ``positions`` (T,)."""
        batch, count = tokens.shape
        x = self.token_embedding[tokens] + self.position_embedding[positions]
        for index, block in enumerate(self.blocks):
            qkv = block.attention(self._layer_norm(x, block.ln1).view(-1, self.width))
            q, k, v = qkv.view(batch, count, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            attended = attend(index, q, k, v).transpose(1, 2).reshape(-1, self.width)
            x = x + block.attention_out(attended).view_as(x)
            h = self.activation(block.mlp_in(self._layer_norm(x, block.ln2).view(-1, self.width)))
            x = x + block.mlp_out(h).view_as(x)
        return self._layer_norm(x, self.final_norm)

    def prime(self, ids: Sequence[int]) -> Context:
        ids = check_context(ids, self.max_positions)
        keep = self._cached_prefix(ids)
        if keep is None and self._last is not None:
            return self._last
        keep = keep or 0
        past_keys, past_values = self._last.state if keep and self._last is not None else ([], [])
        past_keys = [k[:, :, :keep] for k in past_keys]
        past_values = [v[:, :, :keep] for v in past_values]
        keys: list[Tensor] = []
        values: list[Tensor] = []

        def attend(index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            if keep:
                k = torch.cat([past_keys[index], k], dim=2)
                v = torch.cat([past_values[index], v], dim=2)
            keys.append(k)
            values.append(v)
            count, total = q.shape[2], k.shape[2]
            causal = None
            if count > 1:  # new tokens see the cached ones and those before them
                causal = torch.ones(count, total, dtype=torch.bool).tril(total - count)
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=causal, scale=self.blocks[index].scale
            )

        positions = torch.arange(keep, len(ids))
        hidden = self._forward(torch.tensor([ids[keep:]]), positions, attend)[0, -1]
        # New tensors, never written in place: an earlier Context keeps its own keys and values.
        logprobs = torch.log_softmax(self.output(hidden.unsqueeze(0))[0], dim=-1)
        self._last = Context(tuple(ids), logprobs, (keys, values))
        return self._last

    def fork(self, context: Context, rows: int, capacity: int) -> Rows:
        length = len(context.ids)
        if length + capacity > self.max_positions:
            capacity = self.max_positions - length
        keys, values = [], []
        past_keys, past_values = context.state
        for k, v in zip(past_keys, past_values, strict=True):
            shape = (rows, self.heads, length + capacity, self.head_dim)
            key_buffer, value_buffer = k.new_empty(shape), v.new_empty(shape)
            key_buffer[:, :, :length] = k
            value_buffer[:, :, :length] = v
            keys.append(key_buffer)
            values.append(value_buffer)
        return _BufferRows(keys, values, length)

    def step(self, rows: Rows, tokens: Tensor) -> Tensor:
        assert isinstance(rows, _BufferRows)
        position = rows.length
        if position >= rows.keys[0].shape[2]:
            raise RuntimeError("decoding ran past the room reserved for it in fork()")

        def attend(index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            rows.keys[index][:, :, position : position + 1] = k
            rows.values[index][:, :, position : position + 1] = v
            return F.scaled_dot_product_attention(
                q,
                rows.keys[index][:, :, : position + 1],
                rows.values[index][:, :, : position + 1],
                scale=self.blocks[index].scale,
            )

        hidden = self._forward(tokens.view(-1, 1), torch.tensor([position]), attend)[:, -1]
        rows.length += 1
        return self.output(hidden)

    def logits_tree(
        self, context: Context, tokens: Sequence[int], parents: Sequence[int]
    ) -> Tensor:
        """One forward pass over all nodes, each attending to the context and its ancestors."""
        count, length = len(tokens), len(context.ids)
        past_keys, past_values = context.state
        if count == 0:
            return torch.empty(0, self.vocab_size)
        depths: list[int] = []
        visible = torch.zeros(count, length + count, dtype=torch.bool)
        visible[:, :length] = True
        for node, parent in enumerate(parents):
            if parent >= 0:
                visible[node] = visible[parent]
            visible[node, length + node] = True
            depths.append(depths[parent] + 1 if parent >= 0 else 0)
        positions = torch.tensor(depths) + length
        if int(positions.max()) >= self.max_positions:
            raise RuntimeError("the token tree runs past the model's positions")

        def attend(index: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            k = torch.cat([past_keys[index], k], dim=2)
            v = torch.cat([past_values[index], v], dim=2)
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=visible, scale=self.blocks[index].scale
            )

        hidden = self._forward(torch.tensor([list(tokens)]), positions, attend)
        return self.output(hidden.view(count, self.width))

    def select(self, rows: Rows, indices: Tensor) -> None:
        assert isinstance(rows, _BufferRows)
        rows.keys = [k.index_select(0, indices) for k in rows.keys]
        rows.values = [v.index_select(0, indices) for v in rows.values]
