"""RG-LRU, the real-gated linear recurrent unit of Griffin and Hawk (De, Smith, Fernando, Botev,
Cristian-Muraru, Gu, Haroun, Berrada, Chen, Srinivasan, Desjardins, Doucet, Budden, Teh, Pascanu,
De Freitas & Gulcehre 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention for
Efficient Language Models"), the recurrence of RecurrentGemma.

    u_t = x_t W_u                                   [H], the block's linear branch into the recurrence
    r_t = sigmoid(x_t W_a + b_a)                    recurrence gate
    i_t = sigmoid(x_t W_x + b_x)                    input gate
    log a_t = c r_t log sigmoid(Lambda),  c = 8     a_t = a^(c r_t), a = sigmoid(Lambda)
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t),    y_t = h_t

Linear in h, so `rnnjax.LinearScan()` applies. `log sigmoid(Lambda)` is
computed as `-softplus(-Lambda)` and `sqrt(1 - a_t^2)` as
`sqrt(-expm1(2 log a_t))`, both in log space, so a_t close to 1 (long
memory) loses no precision. The square root's derivative is bounded at
`MAX_SQRT_GRADIENT` (RecurrentGemma's 1000): where a gate saturates, `a_t`
rounds to 1 and the exact derivative of `sqrt` at 0 is infinite, which
times the gate's zero derivative would make every gradient NaN; bounded, a
saturated unit gets a zero gradient. Values are unchanged; gradients change
only where `1 - a_t^2 < 2.5e-7`. Initialisation (the paper's): `Lambda` such that
`a^c` is uniform in [0.9, 0.999]; gate biases 0; projections LeCun normal.
The paper computes the gates from the branch after its short convolution;
that convolution belongs to the backbone, so here they read x_t.

Differs from RecurrentGemma's code by a convention: at the first step of a
segment RecurrentGemma resets `h` and skips the `sqrt(1 - a_t^2)` factor
(`h_1 = i_1 * u_1`); here every step, the first included, applies the
paper's equation to the carry it is given (zeros by default).

Params: `w_u, w_a, w_x [I, H]`, `b_a, b_x [H]`, `lam [H]`. Carry: `h [*batch, H]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register

# the bound on d sqrt(y) / dy, RecurrentGemma's `_MAX_SQRT_GRADIENT`
MAX_SQRT_GRADIENT = 1000.0


@jax.custom_jvp
def sqrt_bounded_derivative(y: jax.Array) -> jax.Array:
    """`sqrt(y)` whose derivative `1 / (2 sqrt(y))` is capped at `MAX_SQRT_GRADIENT` (finite at y = 0)."""
    return jnp.sqrt(y)


@sqrt_bounded_derivative.defjvp
def _sqrt_jvp(primals, tangents):
    (y,), (dy,) = primals, tangents
    root = jnp.sqrt(y)
    return root, dy * jnp.minimum(0.5 / jnp.maximum(root, jnp.finfo(root.dtype).tiny), MAX_SQRT_GRADIENT)


@register("rglru", reference=reference.rglru)
def rglru(hidden_size: int, *, c: float = 8.0, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """RG-LRU cell (equations in the module docstring); has a `LinearRecurrence` form.

    Args:
      hidden_size: H, the size of the state and the output.
      c: the gate's sharpness constant (8 in the paper).
      dtype: parameter and state dtype.
    """
    H = base.check_hidden_size("rglru", hidden_size)
    dtype = base.check_dtype("rglru", dtype)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 4)
        a_c = jax.random.uniform(ks[3], (H,), minval=0.9, maxval=0.999)  # a^c, as in the paper
        log_a = jnp.log(a_c) / c
        lam = log_a - jnp.log(-jnp.expm1(log_a))  # logit(a)
        return {
            "w_u": base.input_kernel(ks[0], I, H, dtype),
            "w_a": base.input_kernel(ks[1], I, H, dtype),
            "w_x": base.input_kernel(ks[2], I, H, dtype),
            "b_a": jnp.zeros(H, dtype),
            "b_x": jnp.zeros(H, dtype),
            "lam": lam.astype(dtype),
        }

    def coefficients(params, x):
        r = jax.nn.sigmoid(x @ params["w_a"] + params["b_a"])
        i = jax.nn.sigmoid(x @ params["w_x"] + params["b_x"])
        log_a = -c * r * jax.nn.softplus(-params["lam"])
        a = jnp.exp(log_a)
        return a, sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a)) * (i * (x @ params["w_u"]))

    linear = base.LinearRecurrence(coefficients=coefficients, readout=lambda params, hs, xs: hs)
    return base.vector_cell("rglru", H, init=init, linear=linear, config={"c": c, "dtype": dtype}, input_weight="w_u")
