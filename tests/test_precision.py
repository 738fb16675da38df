"""`rnnjax.mixed_precision`: low-precision params and inputs, the recurrent state in float32.

Checked against the plain cell: with float32 params it computes the same function (every
registered cell); with bfloat16 params its state is float32 and its outputs bfloat16; and over a
long sequence its state stays closer to the float32 run than the all-bfloat16 cell's does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

T, B, I = 6, 2, 3


def _bf16(tree):
    low = lambda a: a.astype(jnp.bfloat16) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    return jax.tree_util.tree_map(low, tree)


@pytest.mark.parametrize("name", rnnjax.cells.names())
def test_same_function_in_float32_and_float32_state_under_bfloat16(name):
    spec = rnnjax.cells.spec(name)
    cell = rnnjax.cells.get(name, **spec.example)
    mixed = rnnjax.mixed_precision(cell)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    lengths = jnp.array([T, 3])

    def run(c, p, x):
        return jax.jit(lambda p, x: rnnjax.unroll(c, p, x, lengths=lengths, method=rnnjax.Scan(kernel=False)))(p, x)

    expected, got = run(cell, params, xs), run(mixed, params, xs)
    for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(got), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    carry, ys = run(mixed, _bf16(params), xs.astype(jnp.bfloat16))
    assert ys.dtype == jnp.bfloat16
    for leaf in jax.tree_util.tree_leaves(carry):  # complex states (LRU, S5) keep their own dtype
        assert leaf.dtype in (jnp.float32, jnp.complex64), (name, leaf.dtype)
    if cell.linear is not None or cell.matrix is not None:  # the parallel and chunkwise forms agree with the scan
        method = rnnjax.Chunkwise("sequence") if cell.matrix is not None else rnnjax.LinearScan()
        fast = jax.jit(lambda p, x: rnnjax.unroll(mixed, p, x, lengths=lengths, method=method))(
            _bf16(params), xs.astype(jnp.bfloat16)
        )
        for a, b in zip(jax.tree_util.tree_leaves(fast[0]), jax.tree_util.tree_leaves(carry), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_float32_state_keeps_a_long_memory_that_bfloat16_loses():
    """An LSTM that remembers (forget gate sigmoid(8) = 0.9997) sums its inputs into `c` over 2,048
    steps. In bfloat16 each addition to a cell state of ~100 rounds to steps of 0.5, and `c` drifts
    (measured: error 322 on values up to 405); in float32 the state keeps what bfloat16 inputs and
    params allow (measured: 1.4). In a cell that forgets fast both errors are alike: the state
    forgets its rounding as it forgets its inputs."""
    cell = rnnjax.cells.lstm(16, forget_bias=8.0)
    params = cell.init(jax.random.key(0), 8)
    xs = jax.random.normal(jax.random.key(1), (2048, 4, 8))
    exact, _ = rnnjax.unroll(cell, params, xs, method=rnnjax.Scan(kernel=False))
    p16, x16 = _bf16(params), xs.astype(jnp.bfloat16)
    low, _ = rnnjax.unroll(cell, p16, x16)
    mixed, _ = rnnjax.unroll(rnnjax.mixed_precision(cell), p16, x16)
    scale = float(jnp.max(jnp.abs(exact.c)))
    low_err = float(jnp.max(jnp.abs(low.c.astype(jnp.float32) - exact.c))) / scale
    mixed_err = float(jnp.max(jnp.abs(mixed.c - exact.c))) / scale
    assert mixed.c.dtype == jnp.float32 and scale > 100
    assert low_err > 0.3 and mixed_err < 0.01, (low_err, mixed_err)


def test_state_dtype_must_be_real_floating():
    with pytest.raises(TypeError, match="`state_dtype` must be a real floating dtype, got int32"):
        rnnjax.mixed_precision(rnnjax.cells.lstm(4), jnp.int32)
