"""MGU, the minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): a GRU with one gate.

    f_t = sigmoid(x_t W_f + h_{t-1} U_f + b_f)                 forget gate
    h~_t = tanh(x_t W_h + (f_t * h_{t-1}) U_h + b_h)            candidate
    h_t = (1 - f_t) * h_{t-1} + f_t * h~_t,    y_t = h_t

Params: `w_x [I, 2H]` (W_f | W_h), `w_h [H, 2H]` (U_f | U_h), `b [2H]`.
Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("mgu", reference=reference.mgu)
def mgu(hidden_size: int, *, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """Minimal gated unit (equations in the module docstring)."""
    H = base.check_hidden_size("mgu", hidden_size)
    dtype = base.check_dtype("mgu", dtype)

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        k_x, k_h = jax.random.split(key)
        return {
            "w_x": base.input_kernel(k_x, input_size, 2 * H, dtype),
            "w_h": base.recurrent_kernel(k_h, H, 2, dtype),
            "b": jnp.zeros(2 * H, dtype),
        }

    def step(params, h, x):
        u_f, u_h = jnp.split(x @ params["w_x"] + params["b"], 2, axis=-1)
        w_hf, w_hh = params["w_h"][:, :H], params["w_h"][:, H:]
        f = jax.nn.sigmoid(u_f + h @ w_hf)
        h_tilde = jnp.tanh(u_h + (f * h) @ w_hh)
        h = (1.0 - f) * h + f * h_tilde
        return h, h

    return base.vector_cell("mgu", H, init=init, step=step, config={"dtype": dtype})
