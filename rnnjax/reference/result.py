"""What every manual-BPTT reference returns, and the small NumPy helpers they share."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class BPTTResult(NamedTuple):
    """Forward outputs and the gradients of a loss, from one reference run.

    Attributes:
      ys: outputs `[T, O]` (or `[T, *batch, O]` from `rnnjax.reference.bptt`).
      carry: the final carry, in the cell's carry layout (an array, or a
        tuple such as `(h, c)` for the LSTM).
      d_params: dL/dparams, a dict with the same keys as the params.
      d_carry: dL/d(initial carry), same layout as the carry.
      d_xs: dL/dxs, same shape as xs.
    """

    ys: np.ndarray
    carry: Any
    d_params: dict[str, np.ndarray]
    d_carry: Any
    d_xs: np.ndarray


def f64(a: Any) -> np.ndarray:
    """A float64 NumPy copy; the references never compute in lower precision."""
    return np.array(a, dtype=np.float64)


def sigmoid(a: np.ndarray) -> np.ndarray:
    # the tanh form never overflows, unlike 1 / (1 + exp(-a)) for large negative a
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def softplus(a: np.ndarray) -> np.ndarray:
    """log(1 + exp(a)), without overflow."""
    return np.logaddexp(0.0, a)


def log_sigmoid(a: np.ndarray) -> np.ndarray:
    """log(sigmoid(a)) = -softplus(-a), without overflow."""
    return -np.logaddexp(0.0, -a)
