"""What a cell file builds a `Cell` with: its step from a form, wrappers, checks and initialisers.

The `Cell` type and the form types live in `rnnjax._forms` (re-exported here).

A cell is what `jax.lax.scan` wants for its body, plus the two functions that
make its parameters and its starting state::

    params = cell.init(key, input_size)                 # a pytree of arrays
    carry = cell.initial_carry(params, batch_shape)     # zeros, [*batch, ...]
    carry, y = cell.step(params, carry, x_t)            # x_t: [*batch, input_size]

Nothing is hidden: params and carries are plain pytrees (dicts, arrays and
NamedTuples), so they go through `jax.jit`, `jax.grad`, `jax.vmap`, optax and
orbax unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._forms import (  # noqa: F401  (the form types, re-exported where the cells have always found them)
    Array,
    Carry,
    Cell,
    LinearRecurrence,
    MatrixInputs,
    MatrixRecurrence,
    MatrixState,
    Params,
    PRNGKey,
)


def linear_step(linear: LinearRecurrence) -> Callable[[Params, Array, Array], tuple[Array, Array]]:
    """The one-step form of a linear recurrence, so each cell writes its equations once.

    `coefficients` and `readout` work on any leading axes, so applied to one
    step `x_t: [*batch, I]` they give that step's `a_t, b_t` and `y_t`.
    """

    def step(params: Params, h: Array, x: Array) -> tuple[Array, Array]:
        a, b = linear.coefficients(params, x)
        h = a * h + b
        return h, linear.readout(params, h, x)

    return step


def matrix_step(matrix: MatrixRecurrence) -> Callable[[Params, MatrixState, Array], tuple[MatrixState, Array]]:
    """The one-step form of a matrix recurrence: its equations (`MatrixRecurrence`) applied to one
    input `x_t [*batch, I]`. This is the truth the chunkwise form is held to."""

    def outer(k, v):
        return k[..., :, None] * v[..., None, :]

    def read(k, S):
        return jnp.einsum("...k,...kv->...v", k, S)  # k^T S

    def step(params: Params, carry: MatrixState, x: Array) -> tuple[MatrixState, Array]:
        inp = matrix.inputs(params, x)
        S = carry.S
        dt = S.dtype
        cast = lambda a: None if a is None else a.astype(dt)  # noqa: E731
        q, k, v, log_decay, beta, a, b = map(cast, (inp.q, inp.k, inp.v, inp.log_decay, inp.beta, inp.a, inp.b))
        m = None
        if matrix.stabilised:
            log_w = inp.log_write.astype(dt)
            m = jnp.maximum(log_decay[..., 0] + carry.m, log_w)  # the largest log-weight in the state
            decay = jnp.exp(log_decay[..., 0] + carry.m - m)[..., None, None]
            S = decay * S + jnp.exp(log_w - m)[..., None, None] * outer(k, v)
        elif a is not None:  # a low-rank term: both parts of the transition act on S_{t-1}
            S = jnp.exp(log_decay)[..., None] * S + outer(a, read(b, S)) + outer(k, v)
        elif beta is not None:  # the delta rule: decay, then erase what k points at and write, per substep
            S = jnp.exp(log_decay)[..., None] * S
            if matrix.substeps == 1:
                k, v, beta = k[..., None, :], v[..., None, :], beta[..., None]
            for j in range(matrix.substeps):
                kj, bj = k[..., j, :], beta[..., j, None, None]
                S = S + bj * outer(kj, v[..., j, :] - read(kj, S))
        else:
            S = jnp.exp(log_decay)[..., None] * S + outer(k, v)  # [..., H, dk or 1, 1] decay
        o = jnp.einsum("...kv,...k->...v", S, q)
        return MatrixState(S, m), matrix.readout(params, o, m, x)

    return step


# --- helpers shared by the cell files ------------------------------------------------


def check_positive_int(factory: str, name: str, value: Any) -> int:
    """Return `value` as an int, or raise naming the factory, the argument and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"rnnjax.cells.{factory}: `{name}` must be a positive int, got {value!r}")
    return int(value)


def check_hidden_size(factory: str, hidden_size: Any) -> int:
    """Return `hidden_size` as an int, or raise naming the factory and the value."""
    return check_positive_int(factory, "hidden_size", hidden_size)


def check_dtype(factory: str, dtype: Any) -> np.dtype:
    """Return `dtype` as a floating numpy dtype, refusing float64 when x64 is off.

    Without the check JAX would silently hand back float32 arrays for a float64
    request, and the user would believe they had double precision.
    """
    try:
        dt = jnp.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"rnnjax.cells.{factory}: `dtype` must be a floating dtype, got {dtype!r}") from err
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"rnnjax.cells.{factory}: `dtype` must be a floating dtype, got {dt}")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"rnnjax.cells.{factory}: `dtype` float64 needs 64-bit mode; enable it with "
            "`jax.config.update('jax_enable_x64', True)` or `with jax.enable_x64(True):`"
        )
    return dt


def check_input_size(input_size: Any) -> int:
    """Return `input_size` as an int, or raise naming `Cell.init` and the value."""
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
        raise ValueError(f"Cell.init: `input_size` must be a positive int, got {input_size!r}")
    return int(input_size)


def zeros_carry(params_dtype: np.dtype, batch_shape: tuple[int, ...], size: int) -> Array:
    """A zero state of shape `[*batch_shape, size]`."""
    return jnp.zeros((*tuple(batch_shape), size), params_dtype)


def vector_cell(
    name: str,
    hidden_size: int,
    *,
    init: Callable[[PRNGKey, int], Params],
    config: Mapping[str, Any],
    step: Callable[[Params, Array, Array], tuple[Array, Array]] | None = None,
    linear: LinearRecurrence | None = None,
    input_weight: str = "w_x",
    output_size: int | None = None,
    sequence: Callable[..., tuple[Carry, Array]] | None = None,
) -> Cell:
    """The `Cell` of a cell whose carry is one real vector `h [*batch, hidden_size]`.

    What every such cell file would otherwise write out again: the zero carry
    in the dtype of `params[input_weight]` (so a cell follows its params'
    dtype, whatever it was built with), `input_spec` read off that `[I, ...]`
    weight, `hidden_size` in the config, and, for a cell given as a
    `LinearRecurrence`, the step derived from it (`linear_step`).

    Args:
      name: the registry name of the cell family.
      hidden_size: H.
      init: `(key, input_size) -> params`.
      config: the factory's other keyword arguments (`hidden_size` is added).
      step: `(params, h, x_t) -> (h, y_t)`; omit it when `linear` is given.
      linear: the cell's `LinearRecurrence` form, if its update is linear in h.
      input_weight: the params key of the `[I, ...]` input weight.
      output_size: size of `y_t` (default H).
      sequence: an optional sequence kernel (see `Cell.sequence`).
    """
    if (step is None) == (linear is None):
        raise ValueError(f"vector_cell({name!r}): give exactly one of `step` and `linear`")

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Array:
        return zeros_carry(params[input_weight].dtype, batch_shape, hidden_size)

    return Cell(
        init=init,
        initial_carry=initial_carry,
        step=linear_step(linear) if step is None else step,
        input_spec=spec_from_weight(input_weight),
        name=name,
        hidden_size=hidden_size,
        output_size=hidden_size if output_size is None else output_size,
        config={"hidden_size": hidden_size, **config},
        linear=linear,
        sequence=sequence,
    )


def check_heads(factory: str, hidden_size: int, num_heads: Any) -> int:
    """The head size `hidden_size // num_heads`, or raise naming the factory and both values."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
        raise ValueError(f"rnnjax.cells.{factory}: `num_heads` must be a positive int, got {num_heads!r}")
    if hidden_size % num_heads:
        raise ValueError(
            f"rnnjax.cells.{factory}: `hidden_size` must be divisible by `num_heads`, "
            f"got hidden_size={hidden_size} and num_heads={num_heads}"
        )
    return hidden_size // int(num_heads)


def state_dtype(params_dtype: Any) -> np.dtype:
    """The dtype a matrix memory is kept in: the params' dtype, and at least float32.

    A sum over thousands of outer products loses its small terms in bfloat16
    (8 bits of mantissa), so bfloat16 params keep a float32 state.
    """
    return jnp.promote_types(params_dtype, jnp.float32)


def matrix_cell(
    name: str,
    hidden_size: int,
    *,
    init: Callable[[PRNGKey, int], Params],
    matrix: MatrixRecurrence,
    config: Mapping[str, Any],
    input_weight: str = "w_q",
    output_size: int | None = None,
) -> Cell:
    """The `Cell` of a matrix-memory cell: a zero `MatrixState` in `state_dtype` of the params,
    `input_spec` read off `params[input_weight]`, the step from `matrix_step`."""

    def initial_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> MatrixState:
        dt = state_dtype(params[input_weight].dtype)
        lead = (*tuple(batch_shape), matrix.num_heads)
        S = jnp.zeros((*lead, matrix.key_size, matrix.value_size), dt)
        return MatrixState(S, jnp.zeros(lead, dt) if matrix.stabilised else None)

    return Cell(
        init=init,
        initial_carry=initial_carry,
        step=matrix_step(matrix),
        input_spec=spec_from_weight(input_weight),
        name=name,
        hidden_size=hidden_size,
        output_size=hidden_size if output_size is None else output_size,
        config={"hidden_size": hidden_size, **config},
        matrix=matrix,
    )


def spec_from_weight(name: str) -> Callable[[Params], tuple[int, np.dtype]]:
    """`input_spec` for cells whose input weight `params[name]` is `[I, ...]`."""

    def input_spec(params: Params) -> tuple[int, np.dtype]:
        w = params[name]
        return int(w.shape[0]), w.dtype

    return input_spec


def step_size_bias(key: PRNGKey, n: int, dt_min: float, dt_max: float, dtype: np.dtype) -> Array:
    """`[n]` biases whose softplus (the initial step sizes) is log-uniform in [dt_min, dt_max].

    Mamba's initialisation of `Delta = softplus(x W + dt_bias)`, used by S6,
    Mamba-2's SSD and Gated DeltaNet.
    """
    log_min, log_max = np.log(dt_min), np.log(dt_max)
    dt = jnp.exp(jax.random.uniform(key, (n,)) * (log_max - log_min) + log_min)
    return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)  # softplus^-1(dt)


def complex_dtypes(params_dtype: Any) -> tuple[np.dtype, np.dtype]:
    """`(real, complex)` compute dtypes for complex-state cells: the params' precision, at least float32."""
    real = jnp.promote_types(params_dtype, jnp.float32)
    return real, jnp.dtype(jnp.complex128 if real == jnp.float64 else jnp.complex64)


def input_kernel(key: PRNGKey, input_size: int, out: int, dtype: np.dtype) -> Array:
    """Input weights `[I, out]` with variance 1/I (LeCun normal), the flax default."""
    return jax.nn.initializers.lecun_normal()(key, (input_size, out), jnp.float32).astype(dtype)


def recurrent_kernel(key: PRNGKey, hidden_size: int, blocks: int, dtype: np.dtype) -> Array:
    """Recurrent weights `[H, blocks * H]`, each `[H, H]` block orthogonal.

    Orthogonal blocks (Saxe et al. 2014) keep the recurrent Jacobian's singular
    values at 1 at initialisation, one gate at a time. Drawn in float32 because
    the QR decomposition does not support bfloat16, then cast.
    """
    keys = jax.random.split(key, blocks)
    ortho = jax.nn.initializers.orthogonal()
    return jnp.concatenate([ortho(k, (hidden_size, hidden_size), jnp.float32) for k in keys], axis=1).astype(dtype)


# --- wrapping a cell: every form carried over ------------------------------------------

# the fields of `Cell` that describe it rather than compute it
DESCRIPTION_FIELDS = ("name", "hidden_size", "output_size", "config")


def _identity(tree: Any) -> Any:
    return tree


def wrap(
    cell: Cell,
    *,
    name: str,
    config: Mapping[str, Any],
    params: Callable[[Params], Params] | None = None,
    state: Callable[[Any], Any] | None = None,
    output: Callable[[Array, Array], Array] | None = None,
    init: Callable[[PRNGKey, int], Params] | None = None,
    initial_carry: Callable[[Params, tuple[int, ...]], Carry] | None = None,
) -> Cell:
    """`cell` seen through new params, a new state dtype or new outputs, in **every** form it has.

    The one way rnnjax's wrappers (`rnnjax.layers.learnable_initial_carry`,
    `rnnjax.mixed_precision`) build their cell, so none of them can drop a
    form: `step`, the `linear` and `matrix` forms and the `sequence` kernel
    are each rewritten by a handler in `FORM_WRAPPERS`. A field of `Cell`
    that no handler knows (a form added later) makes `wrap` raise rather than
    keep the unwrapped function, which would read the wrapper's params as the
    cell's.

    Args:
      cell: the cell to wrap.
      name: the wrapped cell's name, e.g. `"lstm+learned_carry"`.
      config: the wrapped cell's config.
      params: `outer_params -> cell_params`, where the wrapper's params keep
        the cell's (default: the same params).
      state: applied to everything the recurrent state is made of: each new
        carry of `step`, the initial carry, and a linear form's coefficients
        `(a, b)` (which have the carry's shape and dtype); e.g. a cast.
      output: `(y, x) -> y`, applied to the outputs of every form (`x` is the
        step's or the sequence's inputs).
      init: the wrapper's `(key, input_size) -> params` (default `cell.init`,
        so only with `params` left out).
      initial_carry: the wrapper's `(params, batch_shape) -> carry` (default
        `state(cell.initial_carry(params(p), batch_shape))`).

    A sequence kernel computes one fixed function in one dtype, so a wrapper
    that changes the state or the outputs drops it (`unroll` then scans the
    wrapped `step`); one that only re-maps params keeps it.
    """
    unknown = [f for f in cell._fields if f not in WRAPPED_FIELDS and getattr(cell, f) is not None]
    if unknown:
        raise NotImplementedError(
            f"rnnjax.cells.wrap({name!r}): cell {cell.name!r} has the field(s) {unknown}, which no handler in "
            f"rnnjax.cells.cell.FORM_WRAPPERS rewrites; add one rather than keep the unwrapped form"
        )
    if params is not None and init is None:
        raise ValueError(f"rnnjax.cells.wrap({name!r}): a wrapper that re-maps `params` must give its own `init`")
    inner = params or _identity
    to_state = state or _identity
    out = output or (lambda y, x: y)

    def step(p: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        new, y = cell.step(inner(p), carry, x)
        return to_state(new), out(y, x)

    def default_initial_carry(p: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        return to_state(cell.initial_carry(inner(p), batch_shape))

    maps = _Maps(params=inner, state=to_state, output=out, changes_function=state is not None or output is not None)
    forms = {f: FORM_WRAPPERS[f](getattr(cell, f), maps) for f in FORM_WRAPPERS if getattr(cell, f) is not None}
    return cell._replace(
        init=init or cell.init,
        initial_carry=initial_carry or default_initial_carry,
        step=step,
        input_spec=lambda p: cell.input_spec(inner(p)),
        name=name,
        config=config,
        **forms,
    )


class _Maps(NamedTuple):
    """What a wrapper changes, as `wrap` hands it to each form's handler."""

    params: Callable[[Params], Params]
    state: Callable[[Any], Any]
    output: Callable[[Array, Array], Array]
    changes_function: bool  # whether `state` or `output` is more than the identity


def _wrap_linear(linear: LinearRecurrence, maps: _Maps) -> LinearRecurrence:
    def coefficients(p, xs):
        return maps.state(linear.coefficients(maps.params(p), xs))

    def readout(p, hs, xs):
        return maps.output(linear.readout(maps.params(p), hs, xs), xs)

    return LinearRecurrence(coefficients, readout)


def _wrap_matrix(matrix: MatrixRecurrence, maps: _Maps) -> MatrixRecurrence:
    # the matrix state's dtype follows the carry it is given (`matrix_step`, the chunkwise form),
    # so `state` reaches it through `initial_carry`
    def inputs(p, xs):
        return matrix.inputs(maps.params(p), xs)

    def readout(p, o, m, xs):
        return maps.output(matrix.readout(maps.params(p), o, m, xs), xs)

    return matrix._replace(inputs=inputs, readout=readout)


def _wrap_sequence(sequence: Callable[..., tuple[Carry, Array]], maps: _Maps):
    if maps.changes_function:
        return None  # written for one dtype and one output: the wrapped step's scan computes the new function

    def wrapped(p, xs, carry, mask, reverse):
        return sequence(maps.params(p), xs, carry, mask, reverse)

    return wrapped


# one handler per form: a new form field of `Cell` needs one here, or `wrap` refuses cells that have it
FORM_WRAPPERS: dict[str, Callable[[Any, _Maps], Any]] = {
    "linear": _wrap_linear,
    "matrix": _wrap_matrix,
    "sequence": _wrap_sequence,
}
WRAPPED_FIELDS = ("init", "initial_carry", "step", "input_spec", *DESCRIPTION_FIELDS, *FORM_WRAPPERS)
