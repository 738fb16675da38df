"""The contract every registered cell must meet, as plain check functions.

Each check takes a `CellSpec` (from `rnnjax.cells.spec(name)`) and raises
`AssertionError` when the cell breaks the contract. rnnjax's own test suite
runs every check over every registered cell (tests/test_cell_contract.py);
a cell defined in your own code runs through the same checks with::

    import rnnjax
    from rnnjax import contract

    @rnnjax.cells.register("mycell", example={"hidden_size": 5})
    def mycell(hidden_size, *, dtype=jnp.float32): ...

    for check in contract.CHECKS:
        check(rnnjax.cells.spec("mycell"))

What is checked, for each cell: shapes and dtypes (float32, bfloat16,
float64); a cell follows its params' dtype, not the one it was built with;
`lax.scan` = a Python loop over `cell.step`; scan unroll factors
change nothing; jit = eager; a padded batch with `lengths` = each sequence run
alone (outputs, final carry, gradients); NaN padding cannot leak; finite
differences (`jax.test_util.check_grads`, float64, forward and reverse, order
2); finite gradients over T = 1000; a jitted train step does not retrace;
parallel scan = sequential scan for cells with a linear form; chunkwise and
quadratic forms = sequential scan for matrix-memory cells; and every cell has
a manual BPTT reference that equals `jax.vjp`. float64 checks switch x64 on only
inside themselves.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from rnnjax.cells.registry import CellSpec
from rnnjax.gradcheck import random_problem, reference_agreement
from rnnjax.unrolling import unroll

INPUT_SIZE = 3


def _problem(spec: CellSpec, T=6, batch_shape=(2,), dtype=jnp.float32, lengths=False, seed=0):
    cell = spec.example_cell(dtype=dtype)
    params, xs, carry0, _, _, lens = random_problem(
        cell, T=T, batch_shape=batch_shape, input_size=INPUT_SIZE, seed=seed, lengths=lengths
    )
    return cell, params, xs, carry0, lens


def _tols(spec: CellSpec, dtype) -> dict[str, float]:
    tol = spec.float64 if dtype == jnp.float64 else spec.float32
    return {"rtol": tol.rtol, "atol": tol.atol}


def _sq_norm(tree) -> jax.Array:
    """Sum of |leaf|^2 over a pytree (complex leaves included)."""
    return sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree_util.tree_leaves(tree))


def python_loop(cell, params, xs, carry):
    """The unroll written as the textbook loop over `cell.step`."""
    ys = []
    for t in range(xs.shape[0]):
        carry, y = cell.step(params, carry, xs[t])
        ys.append(y)
    return carry, jnp.stack(ys)


def check_shapes_and_dtypes(spec: CellSpec) -> None:
    for dtype in (jnp.float32, jnp.bfloat16):
        cell = spec.example_cell(dtype=dtype)
        params = cell.init(jax.random.key(0), INPUT_SIZE)
        for leaf in jax.tree_util.tree_leaves(params):
            assert leaf.dtype == dtype, f"{spec.name}: param dtype {leaf.dtype}, asked for {dtype}"
        run = jax.jit(lambda params, xs, cell=cell: unroll(cell, params, xs))  # compiled: eager dispatch is slow
        for batch_shape in [(), (2,), (2, 3)]:
            carry = cell.initial_carry(params, batch_shape)
            final, ys = run(params, jnp.ones((5, *batch_shape, INPUT_SIZE), dtype))
            chex.assert_shape(ys, (5, *batch_shape, cell.output_size))
            assert ys.dtype == dtype, f"{spec.name}: output dtype {ys.dtype}, params {dtype}"
            chex.assert_trees_all_equal_shapes_and_dtypes(final, carry)
            assert bool(jnp.all(jnp.isfinite(ys.astype(jnp.float32))))


def check_float64(spec: CellSpec) -> None:
    with jax.enable_x64(True):
        cell = spec.example_cell(dtype=jnp.float64)
        params = cell.init(jax.random.key(0), INPUT_SIZE)
        final, ys = jax.jit(lambda p, x: unroll(cell, p, x))(params, jnp.ones((4, 2, INPUT_SIZE), jnp.float64))
        assert ys.dtype == jnp.float64
        for leaf in jax.tree_util.tree_leaves(final):
            assert leaf.dtype in (jnp.float64, jnp.complex128), f"{spec.name}: carry dtype {leaf.dtype}"


def check_follows_params_dtype(spec: CellSpec) -> None:
    """A cell built for float32 but given float64 params and inputs computes in float64.

    The params, not the factory's `dtype`, decide: a checkpoint loaded in
    another precision must not be silently rounded (an LRU once returned
    float32 here, and its parallel and sequential forms then differed by 4e-7).
    """
    with jax.enable_x64(True):
        cell = spec.example_cell()  # built with the default dtype, float32
        params32 = cell.init(jax.random.key(0), INPUT_SIZE)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params32)
        xs = jax.random.normal(jax.random.key(1), (5, 2, INPUT_SIZE), jnp.float64)
        methods = ("sequential", "parallel") if cell.linear is not None else ("sequential",)
        outs = {}
        for method in methods:
            final, ys = unroll(cell, params, xs, method=method)
            assert ys.dtype == jnp.float64, f"{spec.name}: float64 params gave {ys.dtype} outputs ({method})"
            for leaf in jax.tree_util.tree_leaves(final):
                assert leaf.dtype in (jnp.float64, jnp.complex128), (
                    f"{spec.name}: float64 params gave a {leaf.dtype} carry ({method})"
                )
            outs[method] = (final, ys)
        if len(outs) == 2:
            chex.assert_trees_all_close(outs["parallel"], outs["sequential"], rtol=1e-12, atol=1e-12)


def check_scan_equals_python_loop(spec: CellSpec) -> None:
    with jax.enable_x64(True):
        cell, params, xs, carry0, _ = _problem(spec, dtype=jnp.float64)
        want = python_loop(cell, params, xs, carry0)
        got = unroll(cell, params, xs, initial_carry=carry0)
        chex.assert_trees_all_close(got, want, **_tols(spec, jnp.float64))


def check_unroll_factor_changes_nothing(spec: CellSpec) -> None:
    with jax.enable_x64(True):
        cell, params, xs, carry0, lens = _problem(spec, T=7, dtype=jnp.float64, lengths=True)
        want = unroll(cell, params, xs, initial_carry=carry0, lengths=lens)
        for factor in (2, 5, True):
            got = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, unroll=factor)
            chex.assert_trees_all_close(got, want, **_tols(spec, jnp.float64))


def check_jit_equals_eager(spec: CellSpec) -> None:
    cell, params, xs, carry0, lens = _problem(spec, lengths=True)

    def run(params, xs, carry0, lens):
        return unroll(cell, params, xs, initial_carry=carry0, lengths=lens)

    chex.assert_trees_all_close(
        jax.jit(run)(params, xs, carry0, lens), run(params, xs, carry0, lens), **_tols(spec, jnp.float32)
    )
    chex.assert_trees_all_close(
        jax.jit(cell.step)(params, carry0, xs[0]), cell.step(params, carry0, xs[0]), **_tols(spec, jnp.float32)
    )


def check_padded_batch_equals_each_sequence_alone(spec: CellSpec) -> None:
    """Outputs, final carry and gradients of a padded batch = each sequence run at its own length."""
    with jax.enable_x64(True):
        cell, params, xs, carry0, _ = _problem(spec, T=7, batch_shape=(4,), dtype=jnp.float64)
        lengths = jnp.array([7, 3, 0, 5])
        tol = _tols(spec, jnp.float64)

        def loss(params, xs, carry0, lengths=None):
            carry, ys = unroll(cell, params, xs, initial_carry=carry0, lengths=lengths)
            return jnp.sum(ys**2) + _sq_norm(carry)

        run = jax.jit(
            lambda params, xs, carry0, lengths=None: unroll(cell, params, xs, initial_carry=carry0, lengths=lengths)
        )
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        carry_b, ys_b = run(params, xs, carry0, lengths)
        g_params_b, g_xs_b = grad(params, xs, carry0, lengths)
        g_params_sum = jax.tree_util.tree_map(jnp.zeros_like, params)
        for k, L in enumerate(lengths.tolist()):
            c0 = jax.tree_util.tree_map(lambda c, k=k: c[k], carry0)
            carry_k, ys_k = run(params, xs[:L, k], c0)
            chex.assert_trees_all_close(ys_b[:L, k], ys_k, **tol)
            assert not np.any(np.asarray(ys_b[L:, k])), "outputs at padded steps must be exactly zero"
            chex.assert_trees_all_close(jax.tree_util.tree_map(lambda c, k=k: c[k], carry_b), carry_k, **tol)
            g_p, g_x = grad(params, xs[:L, k], c0)
            chex.assert_trees_all_close(g_xs_b[:L, k], g_x, **tol)
            assert not np.any(np.asarray(g_xs_b[L:, k])), "padded steps must get exactly zero gradient"
            g_params_sum = jax.tree_util.tree_map(jnp.add, g_params_sum, g_p)
        chex.assert_trees_all_close(g_params_b, g_params_sum, **tol)


def check_nan_padding_cannot_leak(spec: CellSpec) -> None:
    cell, params, xs, carry0, _ = _problem(spec, T=6, batch_shape=(3,))
    lengths = jnp.array([6, 2, 4])
    valid = (jnp.arange(6)[:, None] < lengths)[..., None]
    clean, dirty = jnp.where(valid, xs, 0.0), jnp.where(valid, xs, jnp.nan)

    def loss(params, xs):
        return jnp.sum(unroll(cell, params, xs, initial_carry=carry0, lengths=lengths)[1] ** 2)

    for reverse in (False, True):
        run = jax.jit(lambda xs, reverse=reverse: unroll(cell, params, xs, initial_carry=carry0, lengths=lengths,
                                                         reverse=reverse))  # fmt: skip
        chex.assert_trees_all_equal(run(dirty), run(clean))
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    g_dirty = grad(params, dirty)
    chex.assert_tree_all_finite(g_dirty)
    chex.assert_trees_all_equal(g_dirty, grad(params, clean))


def check_finite_difference_gradients(spec: CellSpec) -> None:
    """`jax.test_util.check_grads` in float64, to second order.

    Reverse mode on the default path, forward mode on the plain scan.
    """
    with jax.enable_x64(True):
        cell, params, xs, carry0, lens = _problem(spec, T=4, batch_shape=(2,), dtype=jnp.float64, lengths=True)

        # reverse mode on the default path (a cell's sequence kernel, whose VJP is hand-written, where
        # it has one); forward mode on the plain scan, since custom VJPs have no forward mode
        for kernel, mode in ((None, "rev"), (False, "fwd")):

            @jax.jit  # one compilation per derivative instead of eager dispatch of every op
            def loss(params, xs, carry0, kernel=kernel):
                carry, ys = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, kernel=kernel)
                return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.real(c)) for c in jax.tree_util.tree_leaves(carry))

            check_grads(loss, (params, xs, carry0), order=2, modes=(mode,), eps=1e-5, atol=1e-6, rtol=1e-6)


def check_gradients_finite_over_1000_steps(spec: CellSpec) -> None:
    cell = spec.example_cell()
    params = cell.init(jax.random.key(0), INPUT_SIZE)
    xs = jax.random.normal(jax.random.key(1), (1000, 2, INPUT_SIZE))
    grads = jax.jit(jax.grad(lambda p: jnp.mean(unroll(cell, p, xs)[1][-1] ** 2)))(params)
    chex.assert_tree_all_finite(grads)


def check_jitted_step_does_not_retrace(spec: CellSpec) -> None:
    cell, params, xs, carry0, lens = _problem(spec, lengths=True)
    traces = 0

    @jax.jit
    def train_step(params, xs, lens):
        nonlocal traces
        traces += 1
        grads = jax.grad(lambda p: jnp.mean(unroll(cell, p, xs, initial_carry=carry0, lengths=lens)[1] ** 2))(params)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)

    params = train_step(params, xs, lens)
    train_step(params, xs + 1.0, lens)
    assert traces == 1, f"{spec.name}: the jitted step traced {traces} times"


def check_parallel_scan_equals_sequential(spec: CellSpec) -> None:
    """Linear cells only: outputs, carry and gradients to 1e-12 (float64); float32 to rounding."""
    if not spec.has_linear_form:
        return
    with jax.enable_x64(True):
        cell, params, xs, carry0, lens = _problem(spec, T=33, batch_shape=(3,), dtype=jnp.float64, lengths=True)
        for reverse in (False, True):

            def run(method, reverse=reverse):
                def loss(params, xs, carry0):
                    carry, ys = unroll(
                        cell, params, xs, initial_carry=carry0, lengths=lens, reverse=reverse, method=method
                    )
                    return jnp.sum(jnp.sin(ys)) + _sq_norm(carry), (carry, ys)

                return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)

            chex.assert_trees_all_close(run("parallel"), run("sequential"), rtol=1e-12, atol=1e-12)
    cell, params, xs, carry0, lens = _problem(spec, T=200, batch_shape=(4,), lengths=True)
    par = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method="parallel")
    seq = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method="sequential")
    chex.assert_trees_all_close(par, seq, rtol=1e-5, atol=1e-5)


def check_chunkwise_equals_sequential(spec: CellSpec) -> None:
    """Matrix-memory cells only: chunkwise (C = 4) and the quadratic form = the sequential scan.

    float64, with lengths, resets, a random initial carry, and reversed (C = 4):
    outputs and carry to 1e-10, gradients (params, inputs, initial carry) to 1e-9.
    The full grid of T and C is in tests/test_chunkwise.py.
    """
    if not spec.has_matrix_form:
        return
    with jax.enable_x64(True):
        cell, params, xs, carry0, lens = _problem(spec, T=23, batch_shape=(3,), dtype=jnp.float64, lengths=True)
        resets = jnp.asarray(np.random.default_rng(3).random((23, 3)) < 0.15)
        forms = {False: [("parallel", None), ("chunkwise", 4)], True: [("chunkwise", 4)]}
        for reverse in (False, True):

            def run(method, chunk_size=None, reverse=reverse):
                def loss(params, xs, carry0):
                    kw = dict(lengths=lens, resets=resets, reverse=reverse, method=method, chunk_size=chunk_size)
                    carry, ys = unroll(cell, params, xs, initial_carry=carry0, **kw)
                    return jnp.sum(jnp.sin(ys)) + _sq_norm(carry), (carry, ys)

                return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry0)

            grads, out = run("sequential")
            for method, chunk_size in forms[reverse]:
                g, o = run(method, chunk_size)
                chex.assert_trees_all_close(o, out, rtol=1e-10, atol=1e-12)
                chex.assert_trees_all_close(g, grads, rtol=1e-9, atol=1e-11)


def check_manual_bptt_equals_autodiff(spec: CellSpec) -> None:
    """Every cell has a NumPy manual-BPTT reference that agrees with `jax.vjp` (a few float64 cases;
    the full grid is in tests/test_reference.py). A cell registered without `reference=` fails here."""
    assert spec.reference is not None, (
        f"{spec.name}: no manual-BPTT reference; write one in NumPy float64 (see rnnjax/reference/) "
        "and register it with `reference=`"
    )
    with jax.enable_x64(True):
        for case in (dict(T=1, batch_shape=()), dict(T=9, batch_shape=(3,), lengths=True, reverse=True)):
            errors = reference_agreement(spec.name, hidden_size=spec.example["hidden_size"], **case)
            assert max(errors.values()) <= spec.float64.rtol, errors


CHECKS = (
    check_shapes_and_dtypes,
    check_float64,
    check_follows_params_dtype,
    check_scan_equals_python_loop,
    check_unroll_factor_changes_nothing,
    check_jit_equals_eager,
    check_padded_batch_equals_each_sequence_alone,
    check_nan_padding_cannot_leak,
    check_finite_difference_gradients,
    check_gradients_finite_over_1000_steps,
    check_jitted_step_does_not_retrace,
    check_parallel_scan_equals_sequential,
    check_chunkwise_equals_sequential,
    check_manual_bptt_equals_autodiff,
)
