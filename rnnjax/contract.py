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

from rnnjax._unrolling import unroll
from rnnjax.cells.registry import CellSpec
from rnnjax.gradcheck import random_problem, reference_agreement
from rnnjax.layers import learnable_initial_carry
from rnnjax.methods import Chunkwise, LinearScan, Method, Scan
from rnnjax.precision import mixed_precision

INPUT_SIZE = 3

# The tolerances the contract and rnnjax's tests hold one computation to another with, in one table.
# A test with other needs (a float32 peer, bfloat16, a trained run) says its own and why, beside it.
TOLERANCES = {
    # float64, the same arithmetic reordered: a sequence kernel, a wrapper, a layout, another batch shape
    "float64": {"rtol": 1e-12, "atol": 1e-12},
    # float64, another algorithm against the sequential scan (the parallel, chunkwise, quadratic and
    # sharded forms): its values, and its gradients (one more reduction in another order)
    "float64 algorithm": {"rtol": 1e-10, "atol": 1e-12},
    "float64 algorithm, gradients": {"rtol": 1e-9, "atol": 1e-11},
    # float32, the same function computed two ways
    "float32": {"rtol": 1e-5, "atol": 1e-6},
}


class NotApplicable(Exception):
    """Raised by a check that does not apply to a cell (it lacks the form the check is about).

    Not an `AssertionError`: a check that does not apply neither passes nor
    fails. `run` reports it as skipped; the test suite parametrises such
    cases as skips with this reason, so its count of passes is the count of
    checks that ran.
    """


FORM_DESCRIPTIONS = {
    "linear": "LinearRecurrence form (LinearScan)",
    "matrix": "MatrixRecurrence form (Chunkwise)",
    "sequence": "sequence kernel (Scan(kernel=True))",
}


def requires(form: str):
    """Mark a check as about the `Cell` field `form`; on a cell without it the check raises `NotApplicable`."""
    if form not in FORM_DESCRIPTIONS:
        raise ValueError(f"requires: `form` must be one of {sorted(FORM_DESCRIPTIONS)}, got {form!r}")

    def decorator(check):
        def guarded(spec: CellSpec) -> None:
            reason = not_applicable(guarded, spec)
            if reason:
                raise NotApplicable(reason)
            check(spec)

        guarded.__name__, guarded.__qualname__, guarded.__doc__ = check.__name__, check.__qualname__, check.__doc__
        guarded.requires = form
        return guarded

    return decorator


def not_applicable(check, spec: CellSpec) -> str | None:
    """Why `check` does not apply to the cell of `spec`, or None when it does."""
    form = getattr(check, "requires", None)
    if form is None or getattr(spec.example_cell(), form) is not None:
        return None
    return f"{spec.name} has no {FORM_DESCRIPTIONS[form]}"


def run(spec: CellSpec, checks=None) -> dict[str, str]:
    """Run every check (default `CHECKS`) on `spec`; returns `{check name: "passed" or "skipped: <reason>"}`.

    An `AssertionError` of a failing check propagates, naming the cell.
    """
    results = {}
    for check in CHECKS if checks is None else checks:
        name = check.__name__.removeprefix("check_")
        reason = not_applicable(check, spec)
        if reason:
            results[name] = f"skipped: {reason}"
            continue
        check(spec)
        results[name] = "passed"
    return results


def forms_of(cell) -> dict[str, Method]:
    """`{form: method}` for every way `unroll` can run `cell`.

    The sequential scan of `cell.step` (the truth every other form is held
    to), the cell's sequence kernel, the associative scan of a
    `LinearRecurrence`, and for a `MatrixRecurrence` the quadratic form (one
    chunk) and the chunkwise form (chunks of 2 steps, so that a short test
    crosses chunks).
    The Pallas and time-sharded methods read the same `linear` and `matrix`
    forms and are held to the scan in tests/test_pallas_*.py and
    tests/test_sequence_parallel.py.
    """
    out: dict[str, Method] = {"sequential": Scan(kernel=False)}
    if cell.sequence is not None:
        out["kernel"] = Scan(kernel=True)
    if cell.linear is not None:
        out["parallel"] = LinearScan()
    if cell.matrix is not None:
        out["quadratic"] = Chunkwise(chunk_size="sequence")
        out["chunkwise"] = Chunkwise(chunk_size=2)
    return out


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
        methods = {"sequential": Scan()}
        if cell.linear is not None:
            methods["parallel"] = LinearScan()
        outs = {}
        for name, method in methods.items():
            final, ys = unroll(cell, params, xs, method=method)
            assert ys.dtype == jnp.float64, f"{spec.name}: float64 params gave {ys.dtype} outputs ({name})"
            for leaf in jax.tree_util.tree_leaves(final):
                assert leaf.dtype in (jnp.float64, jnp.complex128), (
                    f"{spec.name}: float64 params gave a {leaf.dtype} carry ({name})"
                )
            outs[name] = (final, ys)
        if len(outs) == 2:
            chex.assert_trees_all_close(outs["parallel"], outs["sequential"], **TOLERANCES["float64"])


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
            got = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method=Scan(unroll=factor))
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
        for method, mode in ((Scan(), "rev"), (Scan(kernel=False), "fwd")):

            @jax.jit  # one compilation per derivative instead of eager dispatch of every op
            def loss(params, xs, carry0, method=method):
                carry, ys = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method=method)
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


@requires("linear")
def check_parallel_scan_equals_sequential(spec: CellSpec) -> None:
    """Linear cells only: outputs, carry and gradients to 1e-12 (float64); float32 to rounding."""
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

            chex.assert_trees_all_close(run(LinearScan()), run(Scan()), **TOLERANCES["float64"])
    cell, params, xs, carry0, lens = _problem(spec, T=200, batch_shape=(4,), lengths=True)
    run = jax.jit(lambda method: unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method=method),
                  static_argnums=0)  # fmt: skip
    par, seq = run(LinearScan()), run(Scan())
    chex.assert_trees_all_close(par, seq, rtol=1e-5, atol=1e-5)


@requires("matrix")
def check_chunkwise_equals_sequential(spec: CellSpec) -> None:
    """Matrix-memory cells only: chunkwise (C = 4) and the quadratic form = the sequential scan.

    float64, with lengths, resets, a random initial carry, and reversed (C = 4):
    outputs and carry to 1e-10, gradients (params, inputs, initial carry) to 1e-9.
    The full grid of T and C is in tests/test_chunkwise.py.
    """
    with jax.enable_x64(True):
        cell, params, xs, carry0, lens = _problem(spec, T=23, batch_shape=(3,), dtype=jnp.float64, lengths=True)
        resets = jnp.asarray(np.random.default_rng(3).random((23, 3)) < 0.15)
        forms = {False: [Chunkwise(chunk_size="sequence"), Chunkwise(4)], True: [Chunkwise(4)]}
        for reverse in (False, True):

            def run(method, reverse=reverse):
                def loss(params, xs, carry0):
                    kw = dict(lengths=lens, resets=resets, reverse=reverse, method=method)
                    carry, ys = unroll(cell, params, xs, initial_carry=carry0, **kw)
                    return jnp.sum(jnp.sin(ys)) + _sq_norm(carry), (carry, ys)

                return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, carry0)

            grads, out = run(Scan())
            for method in forms[reverse]:
                g, o = run(method)
                chex.assert_trees_all_close(o, out, **TOLERANCES["float64 algorithm"])
                chex.assert_trees_all_close(g, grads, **TOLERANCES["float64 algorithm, gradients"])


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


# --- wrappers and saturated gates ---------------------------------------------------------


def _broadcast_carry(carry, batch_shape):
    return jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (*batch_shape, *c.shape)), carry)


# every wrapper in the package, as `(cell, params, carry0) -> (wrapped cell, wrapped params, initial_carry)`
# where `carry0` is one carry without batch axes, the initial carry of every sequence
WRAPPERS = {
    "learnable_initial_carry": lambda cell, params, carry0: (
        learnable_initial_carry(cell),
        {"cell": params, "carry": carry0},
        None,
    ),
    # float64 params and state: the same function, through the wrapper's casts
    "mixed_precision": lambda cell, params, carry0: (mixed_precision(cell, jnp.float64), params, carry0),
}


def check_wrappers_keep_every_form(spec: CellSpec) -> None:
    """Every wrapper in `WRAPPERS`, run on every form the cell has (`forms_of`), equals the cell.

    float64, with lengths: outputs, final carry and the gradients of params,
    inputs and initial carry, against the unwrapped cell's sequential scan.
    The wrapped cell must also have every form the cell has (a wrapper
    that dropped the matrix form once ran the cell's `inputs` on its own
    params on the default path).
    """
    with jax.enable_x64(True):
        cell, params, xs, carry0, _ = _problem(spec, T=5, batch_shape=(2,), dtype=jnp.float64)
        lens = jnp.array([5, 3])
        one_carry = jax.tree_util.tree_map(lambda c: c[0], carry0)
        tol = _tols(spec, jnp.float64)

        def objective(carry, ys):
            return jnp.sum(jnp.sin(ys)) + _sq_norm(carry)

        @jax.jit
        def truth(params, one_carry, xs):
            def loss(params, one_carry, xs):
                c0 = _broadcast_carry(one_carry, (2,))
                carry, ys = unroll(cell, params, xs, initial_carry=c0, lengths=lens, method=Scan(kernel=False))
                return objective(carry, ys), (carry, ys)

            return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, one_carry, xs)

        (g_params, g_carry, g_xs), out = truth(params, one_carry, xs)
        for wrapper_name, make in WRAPPERS.items():
            wrapped, w_params, _ = make(cell, params, one_carry)
            learned = wrapper_name == "learnable_initial_carry"
            # a wrapper that changes the state's dtype drops the sequence kernel (written for one dtype)
            kept = ("linear", "matrix") if wrapper_name == "mixed_precision" else ("linear", "matrix", "sequence")
            missing = [f for f in kept if getattr(cell, f) is not None and getattr(wrapped, f) is None]
            assert not missing, f"{spec.name}: {wrapper_name} dropped the form(s) {missing}"
            for form, method in forms_of(wrapped).items():

                @jax.jit
                def run(w_params, one_carry, xs, wrapped=wrapped, learned=learned, method=method):
                    def loss(w_params, one_carry, xs):
                        if learned:
                            w_params, c0 = {**w_params, "carry": one_carry}, None
                        else:
                            c0 = _broadcast_carry(one_carry, (2,))
                        carry, ys = unroll(wrapped, w_params, xs, initial_carry=c0, lengths=lens, method=method)
                        return objective(carry, ys), (carry, ys)

                    return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(w_params, one_carry, xs)

                (gw_params, gw_carry, gw_xs), got = run(w_params, one_carry, xs)
                pairs = {
                    "outputs and carry": (got, out),
                    "params' gradient": (gw_params["cell"] if learned else gw_params, g_params),
                    "inputs' gradient": (gw_xs, g_xs),
                    "initial carry's gradient": (gw_carry, g_carry),
                }
                for label, (a, b) in pairs.items():
                    try:
                        chex.assert_trees_all_close(a, b, **tol)
                    except AssertionError as err:
                        raise AssertionError(
                            f"{spec.name}: {wrapper_name}, {form} form: {label} differ from the unwrapped cell's: {err}"
                        ) from None


# gate pre-activations at +-200 put sigmoid, exp and softplus at their limits in float32 (exactly 0 or 1
# after rounding); log-parameterised decays at +-30 put a decay exp(-exp(+-30)) at 0 or 1 - 1e-13
SATURATED_GATE = 200.0
SATURATED_DECAY = 30.0


def _leaf_name(path) -> str:
    return str(getattr(path[-1], "key", getattr(path[-1], "name", path[-1])))


def _is_gate_bias(name: str, leaf) -> bool:
    """A bias of a gate or of a step size: `b`, `b_*` (vectors), RG-LRU's `lam`, Mamba's `dt_bias`."""
    return jnp.ndim(leaf) == 1 and (name == "b" or name.startswith("b_") or name in ("lam", "dt_bias"))


def _is_log_decay(name: str, leaf) -> bool:
    """A log-parameterised decay or step: `a_log`, `nu_log`, `log_step`, `log_neg_re`, ..."""
    return name.endswith("_log") or name.startswith("log_")


def saturated_params(params) -> dict[str, object]:
    """The params with their gates driven to saturation: `{variant: params}`.

    "gates +200" / "gates -200": every gate bias (see `_is_gate_bias`) at
    +-`SATURATED_GATE`; "decays +30" / "decays -30": every log-parameterised
    decay at +-`SATURATED_DECAY`. A variant that would change nothing is left out.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    variants = {}
    for label, select, value in (
        ("gates +200", _is_gate_bias, SATURATED_GATE),
        ("gates -200", _is_gate_bias, -SATURATED_GATE),
        ("decays +30", _is_log_decay, SATURATED_DECAY),
        ("decays -30", _is_log_decay, -SATURATED_DECAY),
    ):
        hit = [select(_leaf_name(path), leaf) for path, leaf in flat]
        if any(hit):
            leaves = [jnp.full_like(leaf, value) if h else leaf for h, (_, leaf) in zip(hit, flat, strict=True)]
            variants[label] = jax.tree_util.tree_unflatten(treedef, leaves)
    return variants


def check_saturated_gates_stay_finite(spec: CellSpec) -> None:
    """Gates at saturation give finite outputs, carries and gradients, on every form, in float32 and float64.

    A saturated gate is where a trained model goes: a gradient of `0 * inf`
    there (RG-LRU's `sqrt(1 - a^2)` at `a = 1`) turns a training run to NaN.
    Gradients of params, inputs and the initial carry, with lengths.
    """
    for dtype in (jnp.float32, jnp.float64):
        with jax.enable_x64(dtype == jnp.float64):
            cell, params, xs, carry0, _ = _problem(spec, T=5, batch_shape=(2,), dtype=dtype)
            variants = saturated_params(params)
            assert variants, f"{spec.name}: no gate bias or log decay to saturate (see rnnjax.contract._is_gate_bias)"
            stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *variants.values())
            lens = jnp.array([5, 3])
            for form, method in forms_of(cell).items():

                def loss(params, xs, carry0, cell=cell, lens=lens, method=method):
                    carry, ys = unroll(cell, params, xs, initial_carry=carry0, lengths=lens, method=method)
                    total = jnp.sum(ys) + sum(jnp.sum(jnp.real(c)) for c in jax.tree_util.tree_leaves(carry))
                    return total, (carry, ys)

                grad = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2), has_aux=True), in_axes=(0, None, None)))
                grads, out = grad(stacked, xs, carry0)
                for k, variant in enumerate(variants):
                    for label, tree in (("outputs and carry", out), ("gradients", grads)):
                        leaves = [np.asarray(leaf[k]) for leaf in jax.tree_util.tree_leaves(tree)]
                        bad = [i for i, leaf in enumerate(leaves) if not np.all(np.isfinite(leaf))]
                        assert not bad, (
                            f"{spec.name}: {label} not finite with {variant} ({jnp.dtype(dtype).name}, {form} form)"
                        )


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
    check_wrappers_keep_every_form,
    check_saturated_gates_stay_finite,
    check_manual_bptt_equals_autodiff,
)
