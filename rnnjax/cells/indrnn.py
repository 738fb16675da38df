"""IndRNN, the independently recurrent neural network (Li, Li, Cook, Zhu & Gao 2018).

Each unit sees only its own past, through a per-unit recurrent weight:

    h_t = f(x_t W_x + u * h_{t-1} + b),    y_t = h_t

with `*` elementwise and f = relu by default. The gradient through T steps of
unit j is a product of u_j and f' terms, so |u_j| <= 1 keeps it bounded;
u starts uniform in [0, 1) as in the paper's relu setting.

Params: `w_x [I, H]`, `u [H]`, `b [H]`.  Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


@register("indrnn", reference=reference.indrnn)
def indrnn(hidden_size: int, *, activation: str = "relu", dtype: DTypeLike = jnp.float32) -> base.Cell:
    """IndRNN cell (equations in the module docstring)."""
    H = base.check_hidden_size("indrnn", hidden_size)
    dtype = base.check_dtype("indrnn", dtype)
    if activation not in ACTIVATIONS:
        raise ValueError(f"rnnjax.cells.indrnn: `activation` must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    f = ACTIVATIONS[activation]

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        k_x, k_u = jax.random.split(key)
        return {
            "w_x": base.input_kernel(k_x, input_size, H, dtype),
            "u": jax.random.uniform(k_u, (H,)).astype(dtype),
            "b": jnp.zeros(H, dtype),
        }

    def step(params, h, x):
        h = f(x @ params["w_x"] + params["u"] * h + params["b"])
        return h, h

    return base.vector_cell("indrnn", H, init=init, step=step, config={"activation": activation, "dtype": dtype})
