"""The `Cell` type: a recurrent cell as a small bundle of pure functions.

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

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Carry = Any  # a pytree of arrays with leading batch dimensions


class LinearRecurrence(NamedTuple):
    """The form `h_t = a_t * h_{t-1} + b_t` of a cell whose carry update is linear in h.

    Cells that expose it can be unrolled with `jax.lax.associative_scan`
    (`rnnjax.unroll(..., method="parallel")`), in O(log T) depth.

    Attributes:
      coefficients: `(params, xs) -> (a, b)`, with `xs: [T, *batch, I]` and
        `a, b: [T, *batch, H]` (same shape and dtype as the carry, which is a
        single array). Computed for every step at once, outside any scan.
      readout: `(params, hs, xs) -> ys`, with `hs: [T, *batch, H]` the carries
        after each step; gives the outputs `ys: [T, *batch, O]`.
    """

    coefficients: Callable[[Params, Array], tuple[Array, Array]]
    readout: Callable[[Params, Array, Array], Array]


class Cell(NamedTuple):
    """A recurrent cell: pure functions and the facts the unroll needs.

    Attributes:
      init: `(key, input_size) -> params`.
      initial_carry: `(params, batch_shape) -> carry`; zeros in the cell's dtype.
      step: `(params, carry, x_t) -> (carry, y_t)`, with `x_t: [*batch, I]` and
        `y_t: [*batch, output_size]`. The signature of a `jax.lax.scan` body.
      input_spec: `params -> (input_size, dtype)`: what `x_t` must look like
        for these params (used to check inputs before tracing).
      name: the registry name of the cell family (e.g. `"lstm"`).
      hidden_size: size of the recurrent state.
      output_size: size of `y_t`.
      config: the hyperparameters the cell was built with (the factory's
        keyword arguments), e.g. `{"hidden_size": 64, "activation": "tanh"}`.
      linear: the cell's `LinearRecurrence` form, or None when its carry
        update is not linear in the carry.
      sequence: optional kernel for a whole sequence, `(params, xs [T, B, I],
        carry, mask [T, B] | None, reverse) -> (carry, ys)`, computing exactly
        what `lax.scan` of `step` computes (masked steps keep the carry and get
        zero gradient; their outputs may be anything, `unroll` zeroes them),
        laid out for speed; `rnnjax.unroll` uses it on CPU (see its `kernel` argument).
    """

    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    input_spec: Callable[[Params], tuple[int, np.dtype]]
    name: str
    hidden_size: int
    output_size: int
    config: Mapping[str, Any]
    linear: LinearRecurrence | None = None
    sequence: Callable[..., tuple[Carry, Array]] | None = None


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


# --- helpers shared by the cell files ------------------------------------------------


def check_hidden_size(factory: str, hidden_size: Any) -> int:
    """Return `hidden_size` as an int, or raise naming the factory and the value."""
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, (int, np.integer)) or hidden_size < 1:
        raise ValueError(
            f"rnnjax.cells.{factory}: `hidden_size` must be a positive int, got {hidden_size!r}"
        )
    return int(hidden_size)


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
    if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) or input_size < 1:
        raise ValueError(f"Cell.init: `input_size` must be a positive int, got {input_size!r}")
    return int(input_size)


def zeros_carry(params_dtype: np.dtype, batch_shape: tuple[int, ...], size: int) -> Array:
    """A zero state of shape `[*batch_shape, size]`."""
    return jnp.zeros((*tuple(batch_shape), size), params_dtype)


def spec_from_weight(name: str) -> Callable[[Params], tuple[int, np.dtype]]:
    """`input_spec` for cells whose input weight `params[name]` is `[I, ...]`."""

    def input_spec(params: Params) -> tuple[int, np.dtype]:
        w = params[name]
        return int(w.shape[0]), w.dtype

    return input_spec


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
    return jnp.concatenate(
        [ortho(k, (hidden_size, hidden_size), jnp.float32) for k in keys], axis=1
    ).astype(dtype)
