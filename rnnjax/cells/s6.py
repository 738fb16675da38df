"""S6, the selective state space of Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces").

A diagonal state space whose step size and input/output maps depend on the
input, with a state of N entries for each of the H channels:

    u_t = x_t W_u                                           [H], the channels the SSM runs over
    Delta_t = softplus(x_t W_dt1 W_dt2 + dt_bias)           [H], rank R = ceil(H / 16)
    B_t = x_t W_B,   C_t = x_t W_C                          [N]
    A = -exp(A_log)                                         [H, N], S4D-real: A[:, n] = -(n + 1)
    h_t = exp(Delta_t A) * h_{t-1} + (Delta_t B_t) u_t      [H, N], zero-order hold for A, Euler for B
    y_t = h_t C_t + D * u_t                                 [H]

Linear in the state, so `rnnjax.LinearScan()` applies (an associative scan
over `[T, *batch, H, N]`). `Delta A <= 0` is exponentiated directly (no
products of decays are formed). Initialisation (the paper's): S4D-real `A`,
`dt_bias` such that `softplus(dt_bias)` is log-uniform in [0.001, 0.1],
`D = 1`, projections LeCun normal. The Mamba block around it (the
convolution, the gate and the projections) belongs to the recall study's backbone.

Params: `w_u [I, H]`, `w_dt1 [I, R]`, `w_dt2 [R, H]`, `dt_bias [H]`, `w_b, w_c [I, N]`,
`a_log [H, N]`, `d [H]`. Carry: `h [*batch, H, N]`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("s6", example={"hidden_size": 4, "state_size": 3}, reference=reference.s6)
def s6(
    hidden_size: int,
    *,
    state_size: int = 16,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """S6 cell (equations in the module docstring); has a `LinearRecurrence` form.

    Args:
      hidden_size: H, the channels (Mamba's d_inner) and the output size.
      state_size: N, the state per channel (Mamba's d_state).
      dt_min: smallest initial step size.
      dt_max: largest initial step size.
      dtype: parameter and state dtype.
    """
    H = base.check_hidden_size("s6", hidden_size)
    N = base.check_hidden_size("s6", state_size)
    dtype = base.check_dtype("s6", dtype)
    R = math.ceil(H / 16)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 6)
        return {
            "w_u": base.input_kernel(ks[0], I, H, dtype),
            "w_dt1": base.input_kernel(ks[1], I, R, dtype),
            "w_dt2": base.input_kernel(ks[2], R, H, dtype),
            "dt_bias": base.step_size_bias(ks[5], H, dt_min, dt_max, dtype),
            "w_b": base.input_kernel(ks[3], I, N, dtype),
            "w_c": base.input_kernel(ks[4], I, N, dtype),
            "a_log": jnp.log(jnp.broadcast_to(jnp.arange(1, N + 1, dtype=jnp.float32), (H, N))).astype(dtype),
            "d": jnp.ones(H, dtype),
        }

    def coefficients(params, x):
        delta = jax.nn.softplus(x @ params["w_dt1"] @ params["w_dt2"] + params["dt_bias"])  # [..., H]
        a = jnp.exp(delta[..., None] * -jnp.exp(params["a_log"]))  # [..., H, N]
        b = (delta * (x @ params["w_u"]))[..., None] * (x @ params["w_b"])[..., None, :]
        return a, b

    def readout(params, hs, xs):
        return jnp.einsum("...hn,...n->...h", hs, xs @ params["w_c"]) + params["d"] * (xs @ params["w_u"])

    def initial_carry(params, batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), H, N), params["w_u"].dtype)

    linear = base.LinearRecurrence(coefficients=coefficients, readout=readout)
    return base.Cell(
        init=init,
        initial_carry=initial_carry,
        step=base.linear_step(linear),
        input_spec=base.spec_from_weight("w_u"),
        name="s6",
        hidden_size=H,
        output_size=H,
        config={"hidden_size": H, "state_size": N, "dt_min": dt_min, "dt_max": dt_max, "dtype": dtype},
        linear=linear,
    )
