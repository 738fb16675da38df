"""The GRU sequence kernel (rnnjax/kernels/gru.py) against the plain scan of `gru.step`.

The kernel's VJP is written by hand, so every gradient here is compared with
`jax.grad` of the scan (`kernel=False`) in float64. The NumPy reference BPTT
(tests/test_reference.py) and the cell contract also run through the kernel,
because it is `unroll`'s default for the GRU on CPU.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

T, I = 7, 3


def _setup(H, batch_shape, dtype=jnp.float64, seed=0):
    cell = rnnjax.cells.gru(H, dtype=dtype)
    params = cell.init(jax.random.key(seed), I)
    params = jax.tree_util.tree_map(lambda a: a + 0.2 * jax.random.normal(jax.random.key(seed + 1), a.shape, a.dtype),
                                    params)  # non-zero biases, b_hn included
    xs = jax.random.normal(jax.random.key(seed + 2), (T, *batch_shape, I), dtype)
    h0 = cell.initial_carry(params, batch_shape) + 0.3
    return cell, params, xs, h0


def _loss(cell, lengths, reverse, kernel):
    def loss(params, xs, h0):
        h, ys = rnnjax.unroll(cell, params, xs, initial_carry=h0, lengths=lengths, reverse=reverse, kernel=kernel)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(ys * weights) + jnp.sum(jnp.sin(h))

    return loss


CASES = [(6, (4,), reverse, padded) for reverse in (False, True) for padded in (False, True)] + [
    (6, (), True, False),  # unbatched
    (6, (2, 3), True, True),  # two batch axes
    (5, (2, 3), False, True),  # H = 5 cannot be split in two blocks: one block
]


@pytest.mark.parametrize("H, batch_shape, reverse, padded", CASES)
def test_kernel_equals_scan_values_and_gradients(x64, small_blocks, H, batch_shape, reverse, padded):
    cell, params, xs, h0 = _setup(H, batch_shape)
    lengths = None
    if padded:
        lengths = jnp.asarray(np.random.default_rng(0).integers(0, T + 1, batch_shape))
        lengths = lengths.at[(0,) * len(batch_shape)].set(0) if batch_shape else lengths  # a length-0 sequence
    got = jax.value_and_grad(_loss(cell, lengths, reverse, True), argnums=(0, 1, 2))(params, xs, h0)
    want = jax.value_and_grad(_loss(cell, lengths, reverse, False), argnums=(0, 1, 2))(params, xs, h0)
    chex.assert_trees_all_close(got, want, rtol=1e-12, atol=1e-12)
    out_k = rnnjax.unroll(cell, params, xs, initial_carry=h0, lengths=lengths, reverse=reverse, kernel=True)
    out_s = rnnjax.unroll(cell, params, xs, initial_carry=h0, lengths=lengths, reverse=reverse, kernel=False)
    chex.assert_trees_all_close(out_k, out_s, rtol=1e-12, atol=1e-12)


def test_kernel_is_the_default_on_cpu():
    cell = rnnjax.cells.gru(4)
    params = cell.init(jax.random.key(0), 2)
    jaxpr = str(jax.make_jaxpr(lambda p, x: rnnjax.unroll(cell, p, x))(params, jnp.ones((3, 2, 2))))
    assert ("custom_vjp_call" in jaxpr) == (jax.default_backend() == "cpu")


def test_kernel_under_vmap_jit_and_second_order_gradients(x64, small_blocks):
    cell, params, xs, h0 = _setup(4, (3,))
    ensemble = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a]), params)

    def loss(p, kernel):
        return jnp.sum(rnnjax.unroll(cell, p, xs, initial_carry=h0, kernel=kernel)[1] ** 2)

    grads = {k: jax.jit(jax.vmap(jax.grad(lambda p: loss(p, k))))(ensemble) for k in (True, False)}
    chex.assert_trees_all_close(grads[True], grads[False], rtol=1e-12, atol=1e-12)

    def hvp(kernel):  # the hand-written backward pass is itself differentiable
        leaves = jax.tree_util.tree_leaves
        g_dot_v = lambda p: sum(jnp.vdot(g, v) for g, v in zip(leaves(jax.grad(  # noqa: E731
            lambda q: loss(q, kernel))(p)), leaves(params)))
        return jax.grad(g_dot_v)(params)

    chex.assert_trees_all_close(hvp(True), hvp(False), rtol=1e-10, atol=1e-10)


def test_empty_sequence_and_bfloat16():
    cell = rnnjax.cells.gru(4)
    params = cell.init(jax.random.key(0), 2)
    h, ys = rnnjax.unroll(cell, params, jnp.ones((0, 3, 2)))
    assert ys.shape == (0, 3, 4) and h.shape == (3, 4)
    cell16 = rnnjax.cells.gru(4, dtype=jnp.bfloat16)
    p16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    xs = jax.random.normal(jax.random.key(1), (5, 3, 2))
    ys16 = rnnjax.unroll(cell16, p16, xs.astype(jnp.bfloat16))[1]
    assert ys16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ys16, np.float32), rnnjax.unroll(cell, params, xs)[1], atol=3e-2)
