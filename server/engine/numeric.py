"""The few array operations decoding needs that numpy does not name: softmax, top-k.

The serving path runs on numpy alone (``runner.py`` says why); these are its equivalents of
``torch.log_softmax``, ``torch.logsumexp`` and ``torch.topk``, float32 in, float32 out.
"""

from __future__ import annotations

import numpy as np

NEG_INF = float("-inf")


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log-softmax over the last axis."""
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - np.where(np.isfinite(top), top, 0)
    with np.errstate(divide="ignore"):  # a row of -inf is -inf, as torch gives it
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def logsumexp(values: np.ndarray) -> np.ndarray:
    """log(sum(exp(values))) over the last axis."""
    top = values.max(axis=-1, keepdims=True)
    finite = np.where(np.isfinite(top), top, 0)
    with np.errstate(divide="ignore"):
        total = np.log(np.exp(values - finite).sum(axis=-1, keepdims=True)) + finite
    return total[..., 0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """softmax over the last axis."""
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest values over the last axis and their indices, largest first.

    Ties keep the lower index first, so results do not depend on the partition's order.
    """
    k = min(k, scores.shape[-1])
    if k < scores.shape[-1]:
        part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[-1]), scores.shape).copy()
    values = np.take_along_axis(scores, part, axis=-1)
    order = np.lexsort((part, -values), axis=-1)
    indices = np.take_along_axis(part, order, axis=-1)
    return np.take_along_axis(scores, indices, axis=-1), indices
