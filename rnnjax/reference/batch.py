"""Run a single-sequence reference over a batch, with lengths and reverse.

Deliberately the simplest possible treatment, so that it is an independent
check of `rnnjax.unroll`'s masking: every batch element is cut to its own
length, reversed by slicing when asked, and run alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnjax.reference.result import BPTTResult, f64


def _map(fn: Callable[..., np.ndarray], *carries: Any) -> Any:
    """Apply `fn` leaf-wise to carries that are arrays or tuples of arrays."""
    if isinstance(carries[0], tuple):  # None entries (e.g. an unstabilised matrix state's m) stay None
        return tuple(None if leaves[0] is None else fn(*leaves) for leaves in zip(*carries, strict=True))
    return fn(*carries)


def bptt(
    reference: Callable[..., BPTTResult],
    params: dict[str, Any],
    xs: Any,
    carry0: Any,
    dys: Any,
    d_carry: Any,
    *,
    lengths: Any = None,
    reverse: bool = False,
    **config: Any,
) -> BPTTResult:
    """Manual BPTT over `xs [T, *batch, I]` with `carry0` leaves `[*batch, ...]`.

    Args:
      reference: a single-sequence reference such as `rnnjax.reference.lstm`.
      params: the cell's params (any array type; converted to float64).
      xs: inputs `[T, *batch, I]`.
      carry0: initial carry, leaves `[*batch, ...]`.
      dys: dL/dys `[T, *batch, O]`; entries at padded steps are ignored.
      d_carry: dL/d(final carry), same layout as `carry0`.
      lengths: `[*batch]` ints in [0, T], or None for full length.
      reverse: process each sequence from its last valid step to its first.
      **config: the cell's hyperparameters, passed to `reference`.

    Returns:
      A `BPTTResult` with batched `ys`, `carry`, `d_carry`, `d_xs` and the
      parameter gradients summed over the batch.
    """
    xs, dys = f64(xs), f64(dys)
    T, batch_shape = xs.shape[0], xs.shape[1:-1]
    n = int(np.prod(batch_shape, dtype=int))
    # complex carries (LRU, S5) stay complex; everything else is float64
    wide = lambda a: np.asarray(a, np.result_type(np.asarray(a).dtype, np.float64))  # noqa: E731
    flat = lambda a: wide(a).reshape(n, *wide(a).shape[len(batch_shape) :])  # noqa: E731
    xs_b = xs.reshape(T, n, xs.shape[-1])
    dys_b = dys.reshape(T, n, dys.shape[-1])
    carry_b, d_carry_b = _map(flat, carry0), _map(flat, d_carry)
    lengths_b = np.full(n, T) if lengths is None else np.asarray(lengths).reshape(n)

    ys, d_xs = np.zeros(dys_b.shape), np.zeros(xs_b.shape)
    carries, d_carries, d_params = [], [], None
    for k in range(n):
        L = int(lengths_b[k])
        order = np.arange(L)[::-1] if reverse else np.arange(L)  # the steps, in processing order
        out = reference(
            params,
            xs_b[order, k],
            _map(lambda c, k=k: c[k], carry_b),
            dys_b[order, k],
            _map(lambda c, k=k: c[k], d_carry_b),
            **config,
        )
        ys[order, k] = out.ys
        d_xs[order, k] = out.d_xs
        carries.append(out.carry)
        d_carries.append(out.d_carry)
        d_params = out.d_params if d_params is None else {p: d_params[p] + g for p, g in out.d_params.items()}

    unflat = lambda *per_seq: np.stack(per_seq).reshape(*batch_shape, *per_seq[0].shape)  # noqa: E731
    return BPTTResult(
        ys=ys.reshape(dys.shape),
        carry=_map(unflat, *carries),
        d_params=d_params,
        d_carry=_map(unflat, *d_carries),
        d_xs=d_xs.reshape(xs.shape),
    )
