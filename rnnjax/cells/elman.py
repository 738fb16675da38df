"""The Elman RNN (Elman 1990), the textbook recurrent network.

    h_t = f(x_t W_x + h_{t-1} W_h + b),    y_t = h_t

with `f` = tanh (the usual choice), sigmoid (the classic textbook RNN whose
gradients vanish fastest: sigmoid' <= 1/4) or relu. With `activation="relu"`
and `recurrent_init="identity"` it is the IRNN of Le, Jaitly & Hinton (2015),
"A Simple Way to Initialize Recurrent Networks of Rectified Linear Units".

Params: `w_x [I, H]`, `w_h [H, H]`, `b [H]`.  Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register

ACTIVATIONS = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}
RECURRENT_INITS = ("orthogonal", "identity")


@register("irnn", defaults={"activation": "relu", "recurrent_init": "identity"}, reference=reference.elman)
@register("elman_sigmoid", defaults={"activation": "sigmoid"}, reference=reference.elman)
@register("elman", reference=reference.elman)
def elman(
    hidden_size: int,
    *,
    activation: str = "tanh",
    recurrent_init: str = "orthogonal",
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """Elman RNN cell: `h_t = f(x_t W_x + h_{t-1} W_h + b)`, output `h_t`.

    Args:
      hidden_size: H, the size of the state and the output.
      activation: "tanh", "sigmoid" or "relu".
      recurrent_init: "orthogonal" (default) or "identity" (the IRNN init, with
        `activation="relu"`; registered as `"irnn"`).
      dtype: parameter and state dtype (float32, float64 with x64 on, bfloat16).

    Registered as "elman" (tanh), "elman_sigmoid" and "irnn".
    """
    H = base.check_hidden_size("elman", hidden_size)
    dtype = base.check_dtype("elman", dtype)
    if activation not in ACTIVATIONS:
        raise ValueError(f"rnnjax.cells.elman: `activation` must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if recurrent_init not in RECURRENT_INITS:
        raise ValueError(
            f"rnnjax.cells.elman: `recurrent_init` must be one of {list(RECURRENT_INITS)}, got {recurrent_init!r}"
        )
    f = ACTIVATIONS[activation]

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        k_x, k_h = jax.random.split(key)
        w_h = jnp.eye(H, dtype=dtype) if recurrent_init == "identity" else base.recurrent_kernel(k_h, H, 1, dtype)
        return {"w_x": base.input_kernel(k_x, input_size, H, dtype), "w_h": w_h, "b": jnp.zeros(H, dtype)}

    def step(params, h, x):
        h = f(x @ params["w_x"] + h @ params["w_h"] + params["b"])
        return h, h

    config = {"activation": activation, "recurrent_init": recurrent_init, "dtype": dtype}
    return base.vector_cell("elman", H, init=init, step=step, config=config)
