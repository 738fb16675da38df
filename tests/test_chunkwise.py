"""The chunkwise-parallel unroll of the matrix-memory cells, held to the sequential scan.

The sequential `lax.scan` of `cell.step` is the truth (itself held to the NumPy
BPTT references in tests/test_reference.py); every faster form is held to it,
in float64: outputs and final carry within 1e-10 relative, gradients with
respect to the params, the inputs and the initial carry within 1e-9, over
C in (1, 4, 16) below T and C = 64 (one chunk past T) x T in (1, 7, 37; 300 under
`-m slow`), with lengths, resets inside
chunks and a random initial carry. (The quadratic form and the reverse
direction are in the contract, `rnnjax.contract.check_chunkwise_equals_sequential`,
which runs for every registered cell.) Then streaming after a chunkwise
prompt, the float32 and bfloat16 numerics, T = 16,384, and the pinned error messages.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.cells import registry
from rnnjax.gradcheck import random_problem

MATRIX = [s.name for s in registry.specs() if s.has_matrix_form]


def _rel(got, want) -> float:
    """Largest leaf-wise max|got - want| / max|want| over two pytrees."""
    pairs = zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True)
    return max(float(jnp.max(jnp.abs(a - b)) / max(float(jnp.max(jnp.abs(b))), 1e-300)) for a, b in pairs)


def _problem(name, T, B=3, seed=0, dtype=jnp.float64):
    cell = registry.spec(name).example_cell(dtype=dtype)
    params, xs, carry0, _, _, _ = random_problem(cell, T=T, batch_shape=(B,), input_size=3, seed=seed, lengths=False)
    rng = np.random.default_rng(seed)
    lengths = jnp.asarray(rng.integers(0, T + 1, size=B))
    resets = jnp.asarray(rng.random((T, B)) < 0.1)
    return cell, params, xs, carry0, lengths, resets


def _grads(cell, params, xs, carry0, **kw):
    def loss(params, xs, carry0):
        carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, **kw)
        sq = sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(carry))
        return jnp.sum(jnp.sin(ys)) + sq, (carry, ys)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry0)


@pytest.mark.parametrize("T", [1, 7, 37, pytest.param(300, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", MATRIX)
def test_chunkwise_equals_sequential_over_the_grid(x64, name, T):
    cell, params, xs, carry0, lengths, resets = _problem(name, T)
    kw = dict(lengths=lengths, resets=resets)
    grads, out = _grads(cell, params, xs, carry0, method=rnnjax.Scan(), **kw)
    # chunk sizes up to T, and one chunk longer than T (padded with identity steps): larger ones run the same path
    for C in [C for C in (1, 4, 16) if C < T] + [64]:
        g, o = _grads(cell, params, xs, carry0, method=rnnjax.Chunkwise(C), **kw)
        assert _rel(o, out) <= 1e-10, (C, _rel(o, out))
        assert _rel(g, grads) <= 1e-9, (C, _rel(g, grads))


@pytest.mark.parametrize("name", MATRIX)
def test_streaming_step_continues_a_chunkwise_prefix(x64, name):
    """Generation: the chunkwise unroll of a prompt, then cell.step one token at a time = one unroll of all."""
    cell, params, xs, carry0, _, _ = _problem(name, 40, seed=2)
    _, want = rnnjax.unroll(cell, params, xs, initial_carry=carry0, method=rnnjax.Scan())
    carry, ys = rnnjax.unroll(cell, params, xs[:33], initial_carry=carry0, method=rnnjax.Chunkwise(16))
    step = jax.jit(cell.step)
    rest = []
    for t in range(33, 40):
        carry, y = step(params, carry, xs[t])
        rest.append(y)
    got = jnp.concatenate([ys, jnp.stack(rest)])
    assert _rel(got, want) <= 1e-10


@pytest.mark.parametrize("name", MATRIX)
def test_16384_steps_finite_in_float32_at_default_init(name):
    """Forward and backward over T = 16,384 at the default initialisation, on the default (chunkwise) path."""
    cell = rnnjax.cells.get(name, hidden_size=16, num_heads=2)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (16_384, 2, 4))

    @jax.jit
    def loss_and_grad(params):
        return jax.value_and_grad(lambda p: jnp.mean(rnnjax.unroll(cell, p, xs)[1] ** 2))(params)

    loss, grads = loss_and_grad(params)
    assert bool(jnp.isfinite(loss))
    chex.assert_tree_all_finite(grads)


@pytest.mark.parametrize("name", MATRIX)
def test_bfloat16_agrees_with_float32(name):
    """bfloat16 params and inputs (float32 state): the form's outputs `o = S_t^T q_t` within 5e-2 of float32
    relative to their scale. Before each cell's readout, which may normalise: RWKV-7's per-head GroupNorm
    divides head outputs by their spread and so magnifies this rounding (its outputs are 8-22% off float32 at
    initialisation, docs/modern.md), a property of that readout, not of the recurrence held here."""

    def form_output(cell):
        return cell._replace(matrix=cell.matrix._replace(readout=lambda p, o, m, x: o.reshape(*o.shape[:-2], -1)))

    cell32 = form_output(rnnjax.cells.get(name, hidden_size=16, num_heads=2))
    cell16 = form_output(rnnjax.cells.get(name, hidden_size=16, num_heads=2, dtype=jnp.bfloat16))
    params = cell32.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (256, 2, 4))
    p16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    # the same values in both precisions, so only the arithmetic differs
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), p16)
    _, o32 = rnnjax.unroll(cell32, params, xs.astype(jnp.bfloat16).astype(jnp.float32), method=rnnjax.Chunkwise())
    carry16, o16 = rnnjax.unroll(cell16, p16, xs.astype(jnp.bfloat16), method=rnnjax.Chunkwise())
    assert carry16.S.dtype == jnp.float32
    err = float(jnp.max(jnp.abs(o16.astype(jnp.float32) - o32)) / jnp.max(jnp.abs(o32)))
    assert err <= 5e-2, err


def test_errors_name_the_argument():
    cell = rnnjax.cells.gla(8, num_heads=2)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((5, 2, 3))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"`chunk_size` must be a positive int, None or 'sequence', got {bad!r}"):
            rnnjax.Chunkwise(chunk_size=bad)
    with pytest.raises(TypeError, match=r"`chunk_size=` is now spelled method=rnnjax.Chunkwise\(chunk_size=...\)"):
        rnnjax.unroll(cell, params, xs, chunk_size=4)
    gru = rnnjax.cells.gru(4)
    with pytest.raises(ValueError, match=r"method=Chunkwise\(\) needs a cell with a matrix memory "
                       r"\(MatrixRecurrence\), and cell 'gru' has none; methods for it: Scan\(\)"):  # fmt: skip
        rnnjax.unroll(gru, gru.init(jax.random.key(0), 3), xs, method=rnnjax.Chunkwise())
    with pytest.raises(TypeError, match=r"`remat=` is now spelled method=rnnjax.Scan\(remat=...\)"):
        rnnjax.unroll(cell, params, xs, method=rnnjax.Chunkwise(), remat=True)
    for factory in (rnnjax.cells.gla, rnnjax.cells.mlstm, rnnjax.cells.ssd, rnnjax.cells.deltanet):
        name = factory.__name__
        want = rf"rnnjax.cells.{name}: `hidden_size` must be divisible by `num_heads`, got hidden_size=10 and "
        with pytest.raises(ValueError, match=want + "num_heads=4"):
            factory(10, num_heads=4)
    with pytest.raises(ValueError, match=r"`num_heads` must be a positive int, got 0"):
        rnnjax.cells.mlstm(8, num_heads=0)
