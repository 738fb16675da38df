"""The generalized delta rule: its cells' options against independent constructions, the general
chunkwise algorithm against the UT transform on a cell both can run, and the pinned errors.

The contract (every check, every registered cell) and tests/test_chunkwise.py's grid run on KDA,
RWKV-7 and Gated DeltaProduct like on every matrix cell; this file checks what is particular to
the family, each against a second construction of the same function, in float64.
"""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.contract import TOLERANCES
from rnnjax.gradcheck import random_problem


def _problem(cell, T=11, B=3, seed=0):
    params, xs, carry0, _, _, _ = random_problem(cell, T=T, batch_shape=(B,), input_size=3, seed=seed, lengths=False)
    rng = np.random.default_rng(seed)
    kw = dict(lengths=jnp.asarray(rng.integers(0, T + 1, size=B)), resets=jnp.asarray(rng.random((T, B)) < 0.15))
    return params, xs, carry0, kw


def _value_and_grads(cell, params, xs, carry0, method, **kw):
    def loss(params, xs, carry0):
        carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, method=method, **kw)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.S**2), (carry, ys)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry0)


def test_one_householder_factor_is_gated_deltanet(x64):
    """`gated_deltaproduct(householder=1)` is Gated DeltaNet, parameter for parameter, on every form."""
    product = rnnjax.cells.get("gated_deltaproduct", hidden_size=8, num_heads=2, householder=1, dtype=jnp.float64)
    gdn = rnnjax.cells.get("gated_deltanet", hidden_size=8, num_heads=2, dtype=jnp.float64)
    params, xs, carry0, kw = _problem(gdn)
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(product.init(jax.random.key(0), 3))
    for method in (rnnjax.Scan(), rnnjax.Chunkwise(4)):
        got = _value_and_grads(product, params, xs, carry0, method, **kw)
        want = _value_and_grads(gdn, params, xs, carry0, method, **kw)
        chex.assert_trees_all_close(got, want, **TOLERANCES["float64"])


@pytest.mark.parametrize("name", ["gated_deltanet", "kda"])
def test_grouped_value_heads_equal_repeated_query_and_key_heads(x64, name):
    """`num_value_heads = 2 num_heads`: each query/key head serves two value heads. The same function as the
    cell with as many query/key heads as value heads whose query/key projections repeat each head's columns."""
    grouped = rnnjax.cells.get(name, hidden_size=8, num_heads=1, num_value_heads=2, dtype=jnp.float64)
    full = rnnjax.cells.get(name, hidden_size=8, num_heads=2, dtype=jnp.float64)
    params, xs, carry0, kw = _problem(grouped)
    assert params["w_q"].shape == (3, 4) and params["w_v"].shape == (3, 8)  # half as wide: one head of 4
    repeated = {**params, "w_q": jnp.tile(params["w_q"], 2), "w_k": jnp.tile(params["w_k"], 2)}
    for method in (rnnjax.Scan(), rnnjax.Chunkwise(4)):
        _, (carry, ys) = _value_and_grads(grouped, params, xs, carry0, method, **kw)
        _, (carry_f, ys_f) = _value_and_grads(full, repeated, xs, carry0, method, **kw)
        chex.assert_trees_all_close((carry, ys), (carry_f, ys_f), **TOLERANCES["float64"])


def test_negative_eigenvalues_reflect_the_state(x64):
    """With `beta` in [0, 2], a saturated write strength (beta = 2) and a zero value make the step
    `S -> (I - 2 k k^T) S`: the state's component along the unit key flips sign (eigenvalue -1)."""
    cell = rnnjax.cells.get("deltanet", hidden_size=4, num_heads=1, negative_eigenvalues=True, dtype=jnp.float64)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 3))
    params = {**params, "w_v": jnp.zeros_like(params["w_v"]), "b_beta": jnp.full_like(params["b_beta"], 200.0)}
    x = jnp.array([0.3, -1.2, 0.7])
    inp = cell.matrix.inputs(params, x)
    assert float(inp.beta[0]) == 2.0
    k = inp.k[0]
    u = jnp.array([1.0, -2.0, 0.5, 3.0])
    S0 = rnnjax.cells.MatrixState(jnp.outer(k, u)[None])  # a state along the key
    S1, _ = cell.step(params, S0, x)
    # the eigenvalue along k is 1 - 2 |k|^2: -1 up to l2norm's epsilon (|k|^2 = |z|^2 / (|z|^2 + 1e-6))
    assert abs(float(k @ k) - 1.0) < 1e-5
    chex.assert_trees_all_close(S1.S, (1.0 - 2.0 * (k @ k)) * S0.S, **TOLERANCES["float64"])
    plain = rnnjax.cells.get("deltanet", hidden_size=4, num_heads=1, dtype=jnp.float64)
    assert float(plain.matrix.inputs(params, x).beta[0]) == 1.0  # in [0, 1] without the option: erased, not flipped


def _per_key(cell):
    """The same cell with its scalar decay per head broadcast to one per key dimension: the same function,
    which the chunkwise form runs by the general algorithm instead of the UT transform."""

    def inputs(params, x):
        inp = cell.matrix.inputs(params, x)
        return inp._replace(log_decay=jnp.broadcast_to(inp.log_decay, inp.k.shape[:-1] + inp.k.shape[-1:]))

    return cell._replace(matrix=cell.matrix._replace(inputs=inputs))


@pytest.mark.parametrize("reverse", [False, True])
def test_general_algorithm_equals_the_ut_transform(x64, reverse):
    """Gated DeltaNet by the general algorithm (its decay broadcast per key) = by the UT transform, values
    and gradients, with lengths, resets and an initial carry, chunks of 4 and the quadratic form."""
    gdn = rnnjax.cells.get("gated_deltanet", hidden_size=8, num_heads=2, dtype=jnp.float64)
    params, xs, carry0, kw = _problem(gdn, T=13)
    for method in (rnnjax.Chunkwise(4), rnnjax.Chunkwise("sequence")):
        got = _value_and_grads(_per_key(gdn), params, xs, carry0, method, reverse=reverse, **kw)
        want = _value_and_grads(gdn, params, xs, carry0, method, reverse=reverse, **kw)
        chex.assert_trees_all_close(got, want, **TOLERANCES["float64 algorithm"])


def _raises(exc, message):
    return pytest.raises(exc, match=re.escape(message))


def test_bad_options_name_the_argument():
    with _raises(ValueError, "rnnjax.cells.gated_deltanet: `num_value_heads` must be a multiple of `num_heads`"):
        rnnjax.cells.get("gated_deltanet", hidden_size=12, num_heads=2, num_value_heads=3)
    with _raises(ValueError, "rnnjax.cells.kda: `num_value_heads` must be a positive int, got 0"):
        rnnjax.cells.kda(8, num_value_heads=0)
    with _raises(ValueError, "rnnjax.cells.kda: `hidden_size` must be divisible by `num_heads`, got hidden_size=8 and "
                 "num_heads=16"):  # fmt: skip
        rnnjax.cells.kda(8, num_heads=2, num_value_heads=16)
    for bad in (0, -1, True, 1.5):
        with _raises(
            ValueError, f"rnnjax.cells.gated_deltaproduct: `householder` (n_h) must be an int >= 1, got {bad!r}"
        ):
            rnnjax.cells.gated_deltaproduct(8, householder=bad)
    with _raises(TypeError, "rnnjax.cells.deltanet: `negative_eigenvalues` must be a bool, got 'yes'"):
        rnnjax.cells.deltanet(8, negative_eigenvalues="yes")
    with _raises(ValueError, "rnnjax.cells.rwkv7: `decay_rank` must be a positive int, got 0"):
        rnnjax.cells.rwkv7(8, decay_rank=0)
    with _raises(ValueError, "rnnjax.cells.kda: `gate_rank` must be a positive int, got -2"):
        rnnjax.cells.kda(8, gate_rank=-2)
    kda = rnnjax.cells.kda(8, num_heads=2)
    with _raises(ValueError, "Chunkwise(implementation='pallas') has no kernel for cell 'kda''s form"):
        rnnjax.unroll(kda, kda.init(jax.random.key(0), 3), jnp.ones((4, 2, 3)), method=rnnjax.Chunkwise(4, "pallas"))
