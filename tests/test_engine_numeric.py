"""The serving path's array operations against torch's, which they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from server.engine.numeric import log_softmax, logsumexp, softmax, top_k


@pytest.fixture
def scores() -> np.ndarray:
    values = np.random.default_rng(3).normal(size=(4, 50)).astype(np.float32)
    values[1, :45] = -np.inf  # a row where few tokens are allowed
    return values


def test_softmax_family_matches_torch(scores: np.ndarray) -> None:
    expected = torch.from_numpy(scores)
    np.testing.assert_allclose(log_softmax(scores), torch.log_softmax(expected, -1), atol=1e-6)
    np.testing.assert_allclose(logsumexp(scores), torch.logsumexp(expected, -1), atol=1e-6)
    np.testing.assert_allclose(softmax(scores), torch.softmax(expected, -1), atol=1e-6)


def test_the_mass_of_a_row_with_nothing_allowed_is_minus_infinity() -> None:
    nothing = np.full((1, 5), -np.inf, dtype=np.float32)
    assert np.isneginf(logsumexp(nothing)).all()


def test_top_k_is_sorted_and_agrees_with_torch(scores: np.ndarray) -> None:
    values, indices = top_k(scores, 7)
    expected = torch.topk(torch.from_numpy(scores), 7)
    np.testing.assert_array_equal(values, expected.values.numpy())
    np.testing.assert_array_equal(np.take_along_axis(scores, indices, -1), values)
    assert top_k(scores, 100)[0].shape == (4, 50)  # k larger than the row: all of it


def test_top_k_breaks_ties_by_the_lower_index() -> None:
    values, indices = top_k(np.array([1.0, 3.0, 3.0, 2.0, 3.0], dtype=np.float32), 2)
    assert values.tolist() == [3.0, 3.0] and indices.tolist() == [1, 2]
