"""Running the language model step by step, with a KV cache that outlives a request.

The hot path of every keystroke is a handful of one-token forward passes on a 5M-parameter
model, where Python overhead, not arithmetic, dominates. ``GPT2Runner`` therefore runs GPT-2
checkpoints with its own short forward pass in numpy (preallocated KV buffers, no masks for
single-token steps), read straight from the checkpoint's safetensors. The server never
imports torch for it: torch's runtime alone held 180 MB of resident memory and took 0.8-2 s
to import. The price is about 2 ms a keystroke: fbgemm's prepacked fp16 kernels computed the
vocabulary projection 2-3 times faster than OpenBLAS's fp32 product. Any other causal LM
runs through torch and transformers (``hf_runner.HFRunner``), which is also the reference the
fast path is tested against.

Both keep the last context (token ids plus KV states) so the next request for the same prompt
only feeds the tokens that changed: the user typing one more word costs one or two tokens.
``prime`` returns that context as a handle (``Context``) and decoding forks copies of the
handle it is given into a batch, so the stored context is never modified by candidates and
priming another context in between (the blend scores the line before the typed word) cannot
change what a later ``fork`` continues.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from server.engine.numeric import log_softmax, softmax

Array = np.ndarray


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
    logprobs: Array  # of the next token, shape (V,)
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
    def step(self, rows: Rows, tokens: Array) -> Array:
        """Feed one token per row; return the next-token logits, shape (rows, V)."""

    @abstractmethod
    def select(self, rows: Rows, indices: Array) -> None:
        """Keep (and reorder or repeat) the rows at ``indices``."""

    def logits_tree(self, context: Context, tokens: Sequence[int], parents: Sequence[int]) -> Array:
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
            return np.empty((0, self.vocab_size), dtype=np.float32)
        depth = max(len(path) for path in paths)
        padded = np.array([path + [path[-1]] * (depth - len(path)) for path in paths])
        rows = self.fork(context, len(paths), depth)
        logits = [self.step(rows, padded[:, index]) for index in range(depth)]
        last = np.array([len(path) - 1 for path in paths])
        return np.stack(logits, axis=1)[np.arange(len(paths)), last]


@dataclass
class _Linear:
    """``x @ weight + bias``; the weight in (in, out) layout, as GPT-2's Conv1D stores it."""

    weight: Array
    bias: Array

    def __call__(self, x: Array) -> Array:
        product = x @ self.weight
        product += self.bias
        return product


@dataclass
class _Block:
    ln1: tuple[Array, Array]
    attention: _Linear
    attention_out: _Linear
    ln2: tuple[Array, Array]
    mlp_in: _Linear
    mlp_out: _Linear
    scale: float


@dataclass
class _BufferRows(Rows):
    keys: list[Array]  # per layer (rows, heads, capacity, head_dim)
    values: list[Array]
    length: int


def _gelu_tanh(x: Array) -> Array:
    """GPT-2's gelu, in place on a new array: ``x**3`` alone took 40 times as long."""
    y = x * x
    y *= x
    y *= 0.044715
    y += x
    y *= math.sqrt(2.0 / math.pi)
    np.tanh(y, out=y)
    y += 1.0
    y *= x
    y *= 0.5
    return y


# GPT-2's activation names -> the function; other activations go through transformers.
_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": lambda x: np.maximum(x, 0),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
}


def _attention(q: Array, k: Array, v: Array, scale: float, visible: Array | None = None) -> Array:
    """Scaled dot-product attention of ``q`` (B, H, T, D) over ``k``, ``v`` (B, H, S, D);
    ``visible`` (T, S): which keys each query may see (all when None)."""
    scores = np.matmul(q, k.swapaxes(-1, -2)) * np.float32(scale)
    if visible is not None:
        scores = np.where(visible, scores, np.float32(-np.inf))
    return np.matmul(softmax(scores), v)


class GPT2Runner(Runner):
    """GPT-2 with a hand-written numpy forward pass that matches transformers' to float
    precision."""

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
    def serves(cls, path: Path) -> bool:
        """True when the checkpoint directory holds a plain GPT-2 (this runner's, not torch's)."""
        return cls.supports(json.loads((path / "config.json").read_text(encoding="utf-8")))

    @classmethod
    def from_directory(cls, path: Path) -> GPT2Runner:
        """Read ``config.json`` and ``model.safetensors`` of a GPT-2 checkpoint directory."""
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        if not cls.supports(config):
            raise ValueError(f"{path}: not a plain GPT-2 language model")
        return cls(config, load_file(path / "model.safetensors"))

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, Array]) -> None:
        """``config``: GPT-2's config.json; ``weights``: GPT2LMHeadModel's state dict as
        arrays (the output layer may be missing, as tied checkpoints store it once)."""

        def weight(name: str) -> Array:
            if name not in weights:
                raise ValueError(f"the checkpoint has no weight {name!r}")
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        def linear(name: str) -> _Linear:
            return _Linear(weight(f"{name}.weight"), weight(f"{name}.bias"))

        def norm(name: str) -> tuple[Array, Array]:
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
        # (V, width), as stored: a tied model keeps one copy.
        self._output_weight = (
            self.token_embedding if head == "transformer.wte.weight" else weight(head)
        )
        self.vocab_size = int(self.token_embedding.shape[0])

    def output(self, hidden: Array) -> Array:
        """Logits (rows, V) for final hidden states (rows, width).

        Computed as (V, width) x (width, rows): with the vocabulary as the rows, OpenBLAS
        does not repack the 8 MB weight on every call, which made a 4-row step 1.8x slower.
        """
        return np.ascontiguousarray((self._output_weight @ hidden.T).T)

    def _layer_norm(self, x: Array, weight_bias: tuple[Array, Array]) -> Array:
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        variance = np.square(centred).mean(axis=-1, keepdims=True)
        return centred / np.sqrt(variance + np.float32(self.eps)) * weight_bias[0] + weight_bias[1]

    def _forward(
        self,
        tokens: Array,
        positions: Array,
        attend: Callable[[int, Array, Array, Array], Array],
    ) -> Array:
        """Hidden states after the final norm for ``tokens`` (B, T) at ``positions`` (T,)."""
        batch, count = tokens.shape
        x = self.token_embedding[tokens] + self.position_embedding[positions]
        for index, block in enumerate(self.blocks):
            qkv = block.attention(self._layer_norm(x, block.ln1).reshape(-1, self.width))
            qkv = qkv.reshape(batch, count, 3, self.heads, self.head_dim).transpose(2, 0, 3, 1, 4)
            attended = attend(index, qkv[0], qkv[1], qkv[2])
            attended = attended.transpose(0, 2, 1, 3).reshape(-1, self.width)
            x = x + block.attention_out(attended).reshape(x.shape)
            h = block.mlp_in(self._layer_norm(x, block.ln2).reshape(-1, self.width))
            x = x + block.mlp_out(self.activation(h)).reshape(x.shape)
        return self._layer_norm(x, self.final_norm)

    def prime(self, ids: Sequence[int]) -> Context:
        ids = check_context(ids, self.max_positions)
        keep = self._cached_prefix(ids)
        if keep is None and self._last is not None:
            return self._last
        keep = keep or 0
        past_keys, past_values = self._last.state if keep and self._last is not None else ([], [])
        keys: list[Array] = []
        values: list[Array] = []

        def attend(index: int, q: Array, k: Array, v: Array) -> Array:
            if keep:
                k = np.concatenate([past_keys[index][:, :, :keep], k], axis=2)
                v = np.concatenate([past_values[index][:, :, :keep], v], axis=2)
            keys.append(np.ascontiguousarray(k))
            values.append(np.ascontiguousarray(v))
            count, total = q.shape[2], k.shape[2]
            visible = None
            if count > 1:  # new tokens see the cached ones and those before them
                visible = np.tri(count, total, total - count, dtype=bool)
            return _attention(q, k, v, self.blocks[index].scale, visible)

        positions = np.arange(keep, len(ids))
        hidden = self._forward(np.array([ids[keep:]]), positions, attend)[0, -1]
        # New arrays, never written in place: an earlier Context keeps its own keys and values.
        logprobs = log_softmax(self.output(hidden[None])[0])
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
            key_buffer = np.empty(shape, dtype=np.float32)
            value_buffer = np.empty(shape, dtype=np.float32)
            key_buffer[:, :, :length] = k
            value_buffer[:, :, :length] = v
            keys.append(key_buffer)
            values.append(value_buffer)
        return _BufferRows(keys, values, length)

    def step(self, rows: Rows, tokens: Array) -> Array:
        assert isinstance(rows, _BufferRows)
        position = rows.length
        if position >= rows.keys[0].shape[2]:
            raise RuntimeError("decoding ran past the room reserved for it in fork()")

        def attend(index: int, q: Array, k: Array, v: Array) -> Array:
            rows.keys[index][:, :, position : position + 1] = k
            rows.values[index][:, :, position : position + 1] = v
            return _attention(
                q,
                rows.keys[index][:, :, : position + 1],
                rows.values[index][:, :, : position + 1],
                self.blocks[index].scale,
            )

        tokens = np.asarray(tokens).reshape(-1, 1)
        hidden = self._forward(tokens, np.array([position]), attend)[:, -1]
        rows.length += 1
        return self.output(hidden)

    def logits_tree(self, context: Context, tokens: Sequence[int], parents: Sequence[int]) -> Array:
        """One forward pass over all nodes, each attending to the context and its ancestors."""
        count, length = len(tokens), len(context.ids)
        past_keys, past_values = context.state
        if count == 0:
            return np.empty((0, self.vocab_size), dtype=np.float32)
        depths: list[int] = []
        visible = np.zeros((count, length + count), dtype=bool)
        visible[:, :length] = True
        for node, parent in enumerate(parents):
            if parent >= 0:
                visible[node] = visible[parent]
            visible[node, length + node] = True
            depths.append(depths[parent] + 1 if parent >= 0 else 0)
        positions = np.array(depths) + length
        if int(positions.max()) >= self.max_positions:
            raise RuntimeError("the token tree runs past the model's positions")

        def attend(index: int, q: Array, k: Array, v: Array) -> Array:
            k = np.concatenate([past_keys[index], k], axis=2)
            v = np.concatenate([past_values[index], v], axis=2)
            return _attention(q, k, v, self.blocks[index].scale, visible)

        hidden = self._forward(np.array([list(tokens)]), positions, attend)
        return self.output(hidden.reshape(count, self.width))

    def select(self, rows: Rows, indices: Array) -> None:
        assert isinstance(rows, _BufferRows)
        indices = np.asarray(indices)
        rows.keys = [k[indices] for k in rows.keys]
        rows.values = [v[indices] for v in rows.values]
