"""The Pallas kernels (interpret mode on the CPU) against the pure-JAX paths, in float64: the diagonal
linear scan (values and gradients, forward and reverse, with lengths and resets) and the chunkwise
form of the decay-and-write matrix cells (values, final state and every gradient, the initial
state's included, with lengths, reverse and a padded last chunk)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax._kernels.pallas_scan import linear_scan
from rnnjax.contract import TOLERANCES


def _loop(a, b, h0, reverse):
    def f(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(f, h0, (a, b), reverse=reverse)[1]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [(5,), (3, 7)])
def test_linear_scan_values_and_gradients_equal_a_scan(x64, reverse, shape):
    T = 9
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    a = jax.random.uniform(k1, (T, *shape), jnp.float64, 0.2, 1.1)
    b = jax.random.normal(k2, (T, *shape), jnp.float64)
    h0 = jax.random.normal(k3, shape, jnp.float64)
    w = jax.random.normal(k4, (T, *shape), jnp.float64)
    np.testing.assert_allclose(linear_scan(a, b, h0, reverse=reverse, block=4), _loop(a, b, h0, reverse), rtol=1e-13)
    g_kernel = jax.grad(lambda *x: jnp.sum(w * linear_scan(*x, reverse=reverse, block=4)), argnums=(0, 1, 2))(a, b, h0)
    g_loop = jax.grad(lambda *x: jnp.sum(w * _loop(*x, reverse)), argnums=(0, 1, 2))(a, b, h0)
    for got, want in zip(g_kernel, g_loop, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("size", [1, 12, 128, 300])
def test_linear_scan_lowers_for_a_gpu(lower_for_gpu, size):
    """Triton's blocks must have a power-of-two size: the H200 refused minGRU's and RG-LRU's states of 12
    elements (one block of 12) on 2026-12-04; any state size now lowers (padded to power-of-two blocks)."""
    a = jax.ShapeDtypeStruct((7, size), jnp.float32)
    h0 = jax.ShapeDtypeStruct((size,), jnp.float32)
    text = lower_for_gpu(lambda a, b, h0: linear_scan(a, b, h0, interpret=False), a, a, h0).as_text()
    assert "triton" in text
    with pytest.raises(ValueError, match="`block` must be a power of two, got 12"):
        linear_scan(jnp.ones((7, 12)), jnp.ones((7, 12)), jnp.ones(12), block=12)


@pytest.mark.parametrize("name", ["mingru", "s6", "rglru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_unroll_method_pallas_equals_sequential(x64, name, reverse):
    cell = rnnjax.cells.get(name, hidden_size=6)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), cell.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (7, 2, 3), jnp.float64)
    kw = dict(lengths=jnp.array([7, 4]), resets=jnp.zeros((7, 2), bool).at[3, 0].set(True), reverse=reverse)

    def loss(method):
        def f(p, x):
            carry, ys = rnnjax.unroll(cell, p, x, method=method, **kw)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(carry), (carry, ys)

        return jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, xs)

    (_, (c1, y1)), g1 = loss(rnnjax.Scan())
    (_, (c2, y2)), g2 = loss(rnnjax.LinearScan("pallas"))
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c2, c1, rtol=1e-12, atol=1e-13)
    for got, want in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(g1), strict=True):
        np.testing.assert_allclose(got, want, **TOLERANCES["float64 algorithm"])


def test_pallas_method_errors_name_the_reason():
    xs = jnp.zeros((4, 2, 3))
    lstm = rnnjax.cells.lstm(4)
    pallas = rnnjax.LinearScan("pallas")
    with pytest.raises(ValueError, match=r"needs a cell with a linear recurrence.*cell 'lstm' has none"):
        rnnjax.unroll(lstm, lstm.init(jax.random.key(0), 3), xs, method=pallas)
    lru = rnnjax.cells.lru(4)
    with pytest.raises(
        TypeError, match=r"LinearScan\(implementation='pallas'\) takes real floating states; cell 'lru'"
    ):
        rnnjax.unroll(lru, lru.init(jax.random.key(0), 3), xs, method=pallas)
    gla = rnnjax.cells.get("gla", **rnnjax.cells.spec("gla").example)
    with pytest.raises(ValueError, match=r"implementation='pallas'\) takes no `resets` \(use implementation='xla'\)"):
        rnnjax.unroll(gla, gla.init(jax.random.key(0), 3), xs, method=rnnjax.Chunkwise(implementation="pallas"),
                      resets=jnp.zeros((4, 2), bool))  # fmt: skip
    deltanet = rnnjax.cells.get("deltanet", **rnnjax.cells.spec("deltanet").example)
    with pytest.raises(ValueError, match="the delta rule's chunks are at most 64 steps.*got chunk_size=128"):
        rnnjax.unroll(deltanet, deltanet.init(jax.random.key(0), 3), xs, method=rnnjax.Chunkwise(128, "pallas"))


@pytest.mark.parametrize("name", ["gla", "ssd", "mlstm", "deltanet", "gated_deltanet"])
@pytest.mark.parametrize("reverse", [False, pytest.param(True, marks=pytest.mark.slow)])  # reversed before the kernel
def test_unroll_method_pallas_chunkwise_equals_sequential(x64, name, reverse):
    """Every matrix-memory cell through the chunkwise Pallas kernels (GLA: a decay per key; SSD: per
    head; the mLSTM's stabiliser; the delta rule): T = 11 in chunks of 4 (a padded last chunk),
    right-padded lengths, a non-zero initial state (and stabiliser)."""
    cell = rnnjax.cells.get(name, **rnnjax.cells.spec(name).example)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), cell.init(jax.random.key(0), 3))
    T = 11
    xs = jax.random.normal(jax.random.key(1), (T, 2, 3), jnp.float64)
    S0 = cell.initial_carry(params, (2,))
    S0 = S0._replace(S=0.3 * jax.random.normal(jax.random.key(2), S0.S.shape, jnp.float64))
    if S0.m is not None:
        S0 = S0._replace(m=jax.random.normal(jax.random.key(4), S0.m.shape, jnp.float64))
    w = jax.random.normal(jax.random.key(3), (T, 2, cell.output_size), jnp.float64)
    kw = dict(lengths=jnp.array([T, 6]), reverse=reverse, initial_carry=S0)

    def loss(method, **extra):
        def f(p, x, s):
            carry, ys = rnnjax.unroll(cell, p, x, method=method, **{**kw, "initial_carry": s}, **extra)
            total = jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree_util.tree_leaves(carry))
            return total, (carry, ys)

        return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(params, xs, S0)

    (_, (c1, y1)), g1 = loss(rnnjax.Scan())
    (_, (c2, y2)), g2 = loss(rnnjax.Chunkwise(4, "pallas"))
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-13)
    for got, want in zip(jax.tree_util.tree_leaves(c2), jax.tree_util.tree_leaves(c1), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    for got, want in zip(jax.tree_util.tree_leaves(g2), jax.tree_util.tree_leaves(g1), strict=True):
        np.testing.assert_allclose(got, want, **TOLERANCES["float64 algorithm"])
