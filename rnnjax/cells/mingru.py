"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?").

A GRU whose gates see only the input, so the recurrence is linear in h:

    z_t = sigmoid(x_t W_z + b_z)           update gate
    h~_t = x_t W_h + b_h                    candidate
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t  =  a_t * h_{t-1} + b_t,   y_t = h_t

with a_t = 1 - z_t and b_t = z_t * h~_t, so the whole sequence can be computed
with a parallel (associative) scan: `rnnjax.unroll(..., method="parallel")`.

Params: `w_x [I, 2H]` (z then h~), `b [2H]`.  Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax import reference
from rnnjax.cells.cell import (
    Cell,
    LinearRecurrence,
    check_dtype,
    check_hidden_size,
    check_input_size,
    input_kernel,
    linear_step,
    spec_from_weight,
    zeros_carry,
)
from rnnjax.cells.registry import register


@register("mingru", reference=reference.mingru)
def mingru(hidden_size: int, *, dtype=jnp.float32) -> Cell:
    """minGRU cell (equations in the module docstring); has a `LinearRecurrence` form."""
    H = check_hidden_size("mingru", hidden_size)
    dtype = check_dtype("mingru", dtype)

    def init(key, input_size):
        input_size = check_input_size(input_size)
        return {"w_x": input_kernel(key, input_size, 2 * H, dtype), "b": jnp.zeros(2 * H, dtype)}

    def coefficients(params, x):
        a_z, h_tilde = jnp.split(x @ params["w_x"] + params["b"], 2, axis=-1)
        z = jax.nn.sigmoid(a_z)
        return 1.0 - z, z * h_tilde

    linear = LinearRecurrence(coefficients=coefficients, readout=lambda params, hs, xs: hs)
    return Cell(
        init=init,
        initial_carry=lambda params, batch_shape=(): zeros_carry(params["w_x"].dtype, batch_shape, H),
        step=linear_step(linear),
        input_spec=spec_from_weight("w_x"),
        name="mingru",
        hidden_size=H,
        output_size=H,
        config={"hidden_size": H, "dtype": dtype},
        linear=linear,
    )
