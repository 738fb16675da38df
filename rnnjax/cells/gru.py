"""Gated recurrent unit (Cho et al. 2014), in the form flax, PyTorch and cuDNN use.

Gates in the order r, z, n:

    [u_r, u_z, u_n] = x_t W_x + b             [v_r, v_z, v_n] = h_{t-1} W_h
    r_t = sigmoid(u_r + v_r)                  reset gate
    z_t = sigmoid(u_z + v_z)                  update gate
    n_t = tanh(u_n + r_t * (v_n + b_hn))      candidate (reset applied after the matmul)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1},    y_t = h_t

The reset gate multiplies `h_{t-1} W_hn + b_hn` after the matmul (cuDNN's
form), which keeps the recurrent matmul one `[H, 3H]` product per step.

Params: `w_x [I, 3H]`, `w_h [H, 3H]`, `b [3H]`, `b_hn [H]`.  Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax._kernels import gru as gru_kernel
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("gru", reference=reference.gru)
def gru(hidden_size: int, *, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """GRU cell (see the module docstring for the equations).

    Args:
      hidden_size: H, the size of the state and the output.
      dtype: parameter and state dtype.
    """
    H = base.check_hidden_size("gru", hidden_size)
    dtype = base.check_dtype("gru", dtype)

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        k_x, k_h = jax.random.split(key)
        return {
            "w_x": base.input_kernel(k_x, input_size, 3 * H, dtype),
            "w_h": base.recurrent_kernel(k_h, H, 3, dtype),
            "b": jnp.zeros(3 * H, dtype),
            "b_hn": jnp.zeros(H, dtype),
        }

    def step(params, h, x):
        u_r, u_z, u_n = jnp.split(x @ params["w_x"] + params["b"], 3, axis=-1)
        v_r, v_z, v_n = jnp.split(h @ params["w_h"], 3, axis=-1)
        r = jax.nn.sigmoid(u_r + v_r)
        z = jax.nn.sigmoid(u_z + v_z)
        n = jnp.tanh(u_n + r * (v_n + params["b_hn"]))
        h = (1.0 - z) * n + z * h
        return h, h

    def sequence(params, xs, h, mask, reverse):
        hs, h = gru_kernel.gru_sequence(params, xs, h, mask, reverse)
        return h, hs

    # sequence: the CPU kernel in rnnjax/_kernels/gru.py
    return base.vector_cell("gru", H, init=init, step=step, config={"dtype": dtype}, sequence=sequence)
