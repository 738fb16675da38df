"""The reproductions of three defects, kept as regression tests: a wrapper that dropped the
matrix form, NaN gradients at a saturated RG-LRU gate, NaN outputs of a saturated minLSTM and
non-finite mLSTM gradients. The grids over every cell are contract checks
(`rnnjax.contract.check_wrappers_keep_every_form`, `check_saturated_gates_stay_finite`)."""

from __future__ import annotations

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import contract
from rnnjax.cells import Cell, registry
from rnnjax.cells import cell as cell_lib
from rnnjax.contract import TOLERANCES

MATRIX_CELLS = [s.name for s in registry.specs() if s.has_matrix_form]


@pytest.mark.parametrize("name", MATRIX_CELLS)
def test_learnable_initial_carry_runs_a_matrix_cell_on_the_default_path(name):
    """Once a KeyError ('w_a1' for GLA): the chunkwise form read the wrapper's params as the cell's."""
    cell = registry.spec(name).example_cell()
    wrapped = rnnjax.layers.learnable_initial_carry(cell)
    params = wrapped.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (5, 2, 4))
    got = rnnjax.unroll(wrapped, params, xs)
    want = rnnjax.unroll(cell, params["cell"], xs)  # the learned carry starts at the cell's zeros
    chex.assert_trees_all_close(got, want, **TOLERANCES["float32"])


def test_every_field_of_cell_is_wrapped_or_describes_the_cell():
    """A form added to `Cell` later needs a handler in FORM_WRAPPERS (test and `wrap` both fail without one)."""
    assert set(Cell._fields) == set(cell_lib.WRAPPED_FIELDS)


def test_wrap_refuses_a_form_it_does_not_know(monkeypatch):
    cell = rnnjax.cells.gla(8, num_heads=2)
    monkeypatch.delitem(cell_lib.FORM_WRAPPERS, "matrix")
    monkeypatch.setattr(cell_lib, "WRAPPED_FIELDS", tuple(f for f in cell_lib.WRAPPED_FIELDS if f != "matrix"))
    with pytest.raises(NotImplementedError, match=r"cell 'gla' has the field\(s\) \['matrix'\]"):
        rnnjax.layers.learnable_initial_carry(cell)


def test_wrap_needs_init_with_remapped_params():
    with pytest.raises(ValueError, match="re-maps `params` must give its own `init`"):
        rnnjax.cells.wrap(rnnjax.cells.gru(4), name="x", config={}, params=lambda p: p["cell"])


def test_rglru_saturated_gate_has_finite_gradients():
    """The issue's reproduction: b_a = -120 puts a_t at exactly 1 in float32; sqrt'(0) was infinite."""
    cell = rnnjax.cells.get("rglru", hidden_size=2)
    p = cell.init(jax.random.key(0), 2)
    p["b_a"] = p["b_a"].at[0].set(-120.0)
    xs = jax.random.normal(jax.random.key(1), (4, 1, 2))
    for method in (rnnjax.Scan(), rnnjax.LinearScan()):
        g = jax.jit(jax.grad(lambda p, method=method: jnp.sum(rnnjax.unroll(cell, p, xs, method=method)[1])))(p)
        chex.assert_tree_all_finite(g)
        assert np.all(np.asarray(g["w_a"])[:, 0] == 0.0), "a saturated unit's gate gets a zero gradient"


def test_rglru_bounded_derivative_equals_the_exact_one_away_from_saturation(x64):
    from rnnjax.cells.rglru import MAX_SQRT_GRADIENT, sqrt_bounded_derivative

    y = jnp.array([1e-3, 0.25, 0.9])
    chex.assert_trees_all_close(jax.vmap(jax.grad(sqrt_bounded_derivative))(y), 0.5 / jnp.sqrt(y), rtol=1e-15)
    assert jax.grad(sqrt_bounded_derivative)(0.0) == MAX_SQRT_GRADIENT


def test_minlstm_outputs_stay_finite_when_both_gates_underflow():
    """f / (f + i) was 0 / 0 with every bias at -200; the log-space form gives the limit 1/2."""
    cell = rnnjax.cells.minlstm(3)
    p = cell.init(jax.random.key(0), 2)
    p["b"] = jnp.full_like(p["b"], -200.0).at[6:].set(0.0)  # the gates underflow, the candidate does not
    xs = jnp.zeros((3, 1, 2))
    a, _ = cell.linear.coefficients(p, xs)
    np.testing.assert_array_equal(np.asarray(a), 0.5)
    chex.assert_tree_all_finite(jax.jit(jax.grad(lambda p: jnp.sum(rnnjax.unroll(cell, p, xs)[1])))(p))


def test_mlstm_gradients_finite_with_gates_at_200_and_padding():
    """Every bias at +-200 with a padded step (zero input: zero query) once gave non-finite gradients."""
    cell = rnnjax.cells.mlstm(8, num_heads=2)
    p = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
    for bias in (200.0, -200.0):
        q = {k: jnp.full_like(v, bias) if k.startswith("b_") else v for k, v in p.items()}
        for method in (rnnjax.Scan(), rnnjax.Chunkwise()):

            def loss(q, method=method):
                return jnp.sum(rnnjax.unroll(cell, q, xs, lengths=jnp.array([5, 3]), method=method)[1])

            chex.assert_tree_all_finite(jax.jit(jax.grad(loss))(q))


def test_saturation_variants_touch_every_cell():
    """Non-vacuity: every registered cell has a gate bias or log decay that the saturation check moves."""
    for spec in registry.specs():
        params = spec.example_cell().init(jax.random.key(0), 3)
        assert contract.saturated_params(params), spec.name


def test_the_saturation_check_catches_an_unbounded_sqrt(monkeypatch):
    """The check fails on the RG-LRU as it was (plain sqrt): it can fail."""
    rglru_module = importlib.import_module("rnnjax.cells.rglru")  # the module, not the factory it exports
    monkeypatch.setattr(rglru_module, "sqrt_bounded_derivative", jnp.sqrt)
    with pytest.raises(AssertionError, match="rglru: gradients not finite with gates"):
        contract.check_saturated_gates_stay_finite(registry.spec("rglru"))
