"""The contract every registered cell must meet, driven by the registry.

A cell registered anywhere (in rnnjax.cells, or by a user as in
test_external_cell.py) runs through every test here with nothing else to edit,
in the manner of haiku's RNN core descriptors.
"""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax.cells import registry
from rnnjax.gradcheck import random_problem

NAMES = registry.names()
I = 3


def _problem(spec, T=6, batch_shape=(2,), dtype=jnp.float32, lengths=False, seed=0):
    cell = spec.example_cell(dtype=dtype)
    params, xs, carry0, dys, d_carry, lens = random_problem(
        cell, T=T, batch_shape=batch_shape, input_size=I, seed=seed, lengths=lengths
    )
    return cell, params, xs, carry0, lens


def _tols(spec, dtype):
    tol = spec.float64 if dtype == jnp.float64 else spec.float32
    return dict(rtol=tol.rtol, atol=tol.atol)


def python_loop(cell, params, xs, carry):
    """The unroll written as the textbook loop over cell.step."""
    ys = []
    for t in range(xs.shape[0]):
        carry, y = cell.step(params, carry, xs[t])
        ys.append(y)
    return carry, jnp.stack(ys)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_shapes_and_dtypes(name, dtype):
    spec = registry.spec(name)
    cell = spec.example_cell(dtype=dtype)
    params = cell.init(jax.random.key(0), I)
    for leaf in jax.tree_util.tree_leaves(params):
        assert leaf.dtype == dtype
    for batch_shape in [(), (2,), (2, 3)]:
        carry = cell.initial_carry(params, batch_shape)
        xs = jnp.ones((5, *batch_shape, I), dtype)
        final, ys = rnnjax.unroll(cell, params, xs)
        chex.assert_shape(ys, (5, *batch_shape, cell.output_size))
        assert ys.dtype == dtype
        chex.assert_trees_all_equal_shapes_and_dtypes(final, carry)
        assert bool(jnp.all(jnp.isfinite(ys.astype(jnp.float32))))


@pytest.mark.parametrize("name", NAMES)
def test_float64_params_and_state(x64, name):
    spec = registry.spec(name)
    cell = spec.example_cell(dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    final, ys = rnnjax.unroll(cell, params, jnp.ones((4, 2, I), jnp.float64))
    assert ys.dtype == jnp.float64
    assert all(leaf.dtype in (jnp.float64, jnp.complex128) for leaf in jax.tree_util.tree_leaves(final))


@pytest.mark.parametrize("name", NAMES)
def test_scan_equals_python_loop(x64, name):
    spec = registry.spec(name)
    cell, params, xs, carry0, _ = _problem(spec, dtype=jnp.float64)
    want = python_loop(cell, params, xs, carry0)
    got = rnnjax.unroll(cell, params, xs, initial_carry=carry0)
    chex.assert_trees_all_close(got, want, **_tols(spec, jnp.float64))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("unroll", [2, 5, True])
def test_scan_unroll_factor_changes_nothing(x64, name, unroll):
    spec = registry.spec(name)
    cell, params, xs, carry0, lens = _problem(spec, T=7, dtype=jnp.float64, lengths=True)
    want = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens)
    got = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens, unroll=unroll)
    chex.assert_trees_all_close(got, want, **_tols(spec, jnp.float64))


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    spec = registry.spec(name)
    cell, params, xs, carry0, lens = _problem(spec, lengths=True)

    def run(params, xs, carry0, lens):
        return rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens)

    eager = run(params, xs, carry0, lens)
    jitted = jax.jit(run)(params, xs, carry0, lens)
    chex.assert_trees_all_close(jitted, eager, **_tols(spec, jnp.float32))
    # the step alone, too
    step_eager = cell.step(params, carry0, xs[0])
    step_jit = jax.jit(cell.step)(params, carry0, xs[0])
    chex.assert_trees_all_close(step_jit, step_eager, **_tols(spec, jnp.float32))


@pytest.mark.parametrize("name", NAMES)
def test_padded_batch_equals_each_sequence_alone(x64, name):
    """Outputs, final carry and gradients of a padded batch = each sequence run at its own length."""
    spec = registry.spec(name)
    cell, params, xs, carry0, _ = _problem(spec, T=7, batch_shape=(4,), dtype=jnp.float64)
    lengths = jnp.array([7, 3, 0, 5])

    def batch_loss(params, xs):
        carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lengths)
        return jnp.sum(ys**2) + sum(jnp.sum(jnp.real(c * jnp.conj(c))) for c in jax.tree_util.tree_leaves(carry))

    def alone_loss(params, x, c0):
        carry, ys = rnnjax.unroll(cell, params, x, initial_carry=c0)
        return jnp.sum(ys**2) + sum(jnp.sum(jnp.real(c * jnp.conj(c))) for c in jax.tree_util.tree_leaves(carry))

    carry_b, ys_b = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lengths)
    g_params_b, g_xs_b = jax.grad(batch_loss, argnums=(0, 1))(params, xs)
    g_params_sum = jax.tree_util.tree_map(jnp.zeros_like, params)
    tol = _tols(spec, jnp.float64)
    for k, L in enumerate(lengths.tolist()):
        c0 = jax.tree_util.tree_map(lambda c: c[k], carry0)
        x = xs[:L, k]
        carry_k, ys_k = rnnjax.unroll(cell, params, x, initial_carry=c0)
        chex.assert_trees_all_close(ys_b[:L, k], ys_k, **tol)
        assert not np.any(np.asarray(ys_b[L:, k])), "outputs at padded steps must be exactly zero"
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda c: c[k], carry_b), carry_k, **tol)
        g_p, g_x = jax.grad(alone_loss, argnums=(0, 1))(params, x, c0)
        chex.assert_trees_all_close(g_xs_b[:L, k], g_x, **tol)
        assert not np.any(np.asarray(g_xs_b[L:, k])), "padded steps must get exactly zero gradient"
        g_params_sum = jax.tree_util.tree_map(jnp.add, g_params_sum, g_p)
    chex.assert_trees_all_close(g_params_b, g_params_sum, **tol)


@pytest.mark.parametrize("name", NAMES)
def test_nan_padding_cannot_leak(name):
    spec = registry.spec(name)
    cell, params, xs, carry0, _ = _problem(spec, T=6, batch_shape=(3,))
    lengths = jnp.array([6, 2, 4])
    clean = xs * (jnp.arange(6)[:, None] < lengths)[..., None]
    dirty = jnp.where((jnp.arange(6)[:, None] < lengths)[..., None], xs, jnp.nan)

    def loss(params, xs):
        carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lengths)
        return jnp.sum(ys**2)

    for reverse in (False, True):
        out_clean = rnnjax.unroll(cell, params, clean, initial_carry=carry0, lengths=lengths, reverse=reverse)
        out_dirty = rnnjax.unroll(cell, params, dirty, initial_carry=carry0, lengths=lengths, reverse=reverse)
        chex.assert_trees_all_equal(out_dirty, out_clean)
    g_clean = jax.grad(loss, argnums=(0, 1))(params, clean)
    g_dirty = jax.grad(loss, argnums=(0, 1))(params, dirty)
    chex.assert_tree_all_finite(g_dirty)
    chex.assert_trees_all_equal(g_dirty, g_clean)


@pytest.mark.parametrize("name", NAMES)
def test_finite_difference_gradients_float64(x64, name):
    """jax.test_util.check_grads: forward and reverse mode, to second order."""
    spec = registry.spec(name)
    cell, params, xs, carry0, lens = _problem(spec, T=4, batch_shape=(2,), dtype=jnp.float64, lengths=True)

    @jax.jit  # one compilation per derivative instead of eager dispatch of every op
    def loss(params, xs, carry0):
        carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.real(c)) for c in jax.tree_util.tree_leaves(carry))

    check_grads(loss, (params, xs, carry0), order=2, modes=("fwd", "rev"), eps=1e-5, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_finite_over_1000_steps(name):
    spec = registry.spec(name)
    cell = spec.example_cell()
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (1000, 2, I))

    def loss(params):
        return jnp.mean(rnnjax.unroll(cell, params, xs)[1][-1] ** 2)

    chex.assert_tree_all_finite(jax.grad(loss)(params))


@pytest.mark.parametrize("name", NAMES)
def test_jitted_step_does_not_retrace(name):
    spec = registry.spec(name)
    cell, params, xs, carry0, lens = _problem(spec, lengths=True)
    traces = 0

    @jax.jit
    def train_step(params, xs, lens):
        nonlocal traces
        traces += 1

        def loss(p):
            return jnp.mean(rnnjax.unroll(cell, p, xs, initial_carry=carry0, lengths=lens)[1] ** 2)

        grads = jax.grad(loss)(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)

    params = train_step(params, xs, lens)
    params = train_step(params, xs + 1.0, lens)
    assert traces == 1


def test_every_exported_factory_is_registered():
    """Coverage: a cell factory exported from rnnjax.cells must be in the registry."""
    api = {"get", "names", "register", "spec", "specs", "unregister"}
    registered = {spec.factory for spec in registry.specs()}
    for attr in rnnjax.cells.__all__:
        obj = getattr(rnnjax.cells, attr)
        if attr in api or not inspect.isfunction(obj):
            continue
        assert obj in registered, f"rnnjax.cells.{attr} is exported but not registered"


def test_every_cell_module_is_imported():
    """Coverage: each file in rnnjax/cells/ that defines a factory is imported by the package."""
    import pkgutil

    import rnnjax.cells as package

    modules = {m.name for m in pkgutil.iter_modules(package.__path__)} - {"cell", "registry"}
    registered_modules = {spec.factory.__module__.rsplit(".", 1)[-1] for spec in registry.specs()}
    assert modules <= registered_modules, f"cell files that register nothing: {modules - registered_modules}"


LINEAR = [s.name for s in registry.specs() if s.has_linear_form]


def test_the_linear_recurrence_cells_are_registered_as_such():
    assert {"mingru", "minlstm", "lru"} <= set(LINEAR)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", LINEAR)
def test_parallel_scan_equals_sequential_float64(x64, name, reverse):
    """Outputs, final carry and gradients, with lengths and an initial carry: to 1e-12."""
    spec = registry.spec(name)
    cell, params, xs, carry0, lens = _problem(spec, T=33, batch_shape=(3,), dtype=jnp.float64, lengths=True)

    def run(method):
        def loss(params, xs, carry0):
            carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens, reverse=reverse, method=method)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(carry) ** 2), (carry, ys)

        return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)

    chex.assert_trees_all_close(run("parallel"), run("sequential"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", LINEAR)
def test_parallel_scan_equals_sequential_float32(name):
    spec = registry.spec(name)
    cell, params, xs, carry0, lens = _problem(spec, T=200, batch_shape=(4,), lengths=True)
    par = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method="parallel")
    seq = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method="sequential")
    chex.assert_trees_all_close(par, seq, rtol=1e-5, atol=1e-5)


def test_auto_method_rule(monkeypatch):
    from rnnjax.unrolling import resolve_method

    linear, nonlinear = rnnjax.cells.mingru(4), rnnjax.cells.gru(4)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert resolve_method(linear, "auto") == "sequential"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert resolve_method(linear, "auto") == "parallel"
    assert resolve_method(nonlinear, "auto") == "sequential"
