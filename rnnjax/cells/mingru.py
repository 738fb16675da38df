"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?").

A GRU whose gates see only the input, so the recurrence is linear in h:

    z_t = sigmoid(x_t W_z + b_z)           update gate
    h~_t = x_t W_h + b_h                    candidate
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t  =  a_t * h_{t-1} + b_t,   y_t = h_t

with a_t = 1 - z_t and b_t = z_t * h~_t, so the whole sequence can be computed
with a parallel (associative) scan: `rnnjax.unroll(..., method=rnnjax.LinearScan())`.

Params: `w_x [I, 2H]` (z then h~), `b [2H]`.  Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("mingru", reference=reference.mingru)
def mingru(hidden_size: int, *, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """minGRU cell (equations in the module docstring); has a `LinearRecurrence` form."""
    H = base.check_hidden_size("mingru", hidden_size)
    dtype = base.check_dtype("mingru", dtype)

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        return {"w_x": base.input_kernel(key, input_size, 2 * H, dtype), "b": jnp.zeros(2 * H, dtype)}

    def coefficients(params, x):
        a_z, h_tilde = jnp.split(x @ params["w_x"] + params["b"], 2, axis=-1)
        z = jax.nn.sigmoid(a_z)
        return 1.0 - z, z * h_tilde

    linear = base.LinearRecurrence(coefficients=coefficients, readout=lambda params, hs, xs: hs)
    return base.vector_cell("mingru", H, init=init, linear=linear, config={"dtype": dtype})
