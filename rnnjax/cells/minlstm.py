"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?").

An LSTM whose gates see only the input, with the forget and input gates
normalised to sum to one (the paper's time-independent form):

    f_t = sigmoid(x_t W_f + b_f),   i_t = sigmoid(x_t W_i + b_i)
    f'_t = f_t / (f_t + i_t),       i'_t = i_t / (f_t + i_t)
    h~_t = x_t W_h + b_h
    h_t = f'_t * h_{t-1} + i'_t * h~_t  =  a_t * h_{t-1} + b_t,   y_t = h_t

The forget bias starts at 1.0, as in the LSTM, so the cell leans towards
remembering at initialisation. The normalised gates are computed in log
space, as the paper's log-space form does: with
`d = log i_t - log f_t = softplus(-a_f) - softplus(-a_i)` (a the
pre-activations), `f'_t = sigmoid(-d)` and `i'_t = sigmoid(d)`, the same
numbers as the quotients but finite when both gates underflow to 0 (the
quotient is then 0 / 0; here the limit 1/2).

Params: `w_x [I, 3H]` (f, i, h~), `b [3H]`.  Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("minlstm", reference=reference.minlstm)
def minlstm(hidden_size: int, *, forget_bias: float = 1.0, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """minLSTM cell (equations in the module docstring); has a `LinearRecurrence` form."""
    H = base.check_hidden_size("minlstm", hidden_size)
    dtype = base.check_dtype("minlstm", dtype)

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        b = jnp.zeros(3 * H, dtype).at[:H].set(forget_bias)
        return {"w_x": base.input_kernel(key, input_size, 3 * H, dtype), "b": b}

    def coefficients(params, x):
        a_f, a_i, h_tilde = jnp.split(x @ params["w_x"] + params["b"], 3, axis=-1)
        d = jax.nn.softplus(-a_f) - jax.nn.softplus(-a_i)  # log i_t - log f_t
        return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * h_tilde

    linear = base.LinearRecurrence(coefficients=coefficients, readout=lambda params, hs, xs: hs)
    return base.vector_cell("minlstm", H, init=init, linear=linear, config={"forget_bias": forget_bias, "dtype": dtype})
