"""LRU, the linear recurrent unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023,
"Resurrecting Recurrent Neural Networks for Long Sequences").

A complex diagonal linear recurrence with a stable exponential parametrisation:

    lambda = exp(-exp(nu_log) + i * exp(theta_log))        |lambda| < 1 for every real nu_log
    gamma = exp(gamma_log),  gamma_log initialised to log(sqrt(1 - |lambda|^2))   (normalisation)
    h_t = lambda * h_{t-1} + gamma * (x_t B)                complex, [*batch, N]
    y_t = Re(h_t C) + x_t D

so `a_t = lambda` and `b_t = gamma * (x_t B)`: the sequence can be unrolled
with a parallel scan (`rnnjax.unroll(..., method=rnnjax.LinearScan())`).

Initialisation (the paper's): |lambda| uniform on the ring [r_min, r_max],
phase uniform in [0, max_phase]; B ~ CN(0, 1/I), C ~ CN(0, 1/N). D is a
dense `[I, O]` skip connection (the paper's is diagonal, which needs O = I).

Params (all real, in `dtype`): `nu_log [N]`, `theta_log [N]`, `gamma_log [N]`,
`b_re, b_im [I, N]`, `c_re, c_im [N, O]`, `d [I, O]`.
Carry: complex `h [*batch, N]` (complex64, or complex128 for float64 params;
bfloat16 params compute in complex64). Like every cell, it follows the dtype
of the params it is given, not the `dtype` it was built with: the complex
arithmetic runs in the params' precision (at least float32) and the outputs
come back in the params' dtype.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("lru", reference=reference.lru)
def lru(
    hidden_size: int,
    *,
    output_size: int | None = None,
    r_min: float = 0.4,
    r_max: float = 0.99,
    max_phase: float = 2 * math.pi,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """LRU cell with N = `hidden_size` complex states and `output_size` outputs (default N).

    Args:
      hidden_size: N, the number of complex state dimensions.
      output_size: O, the size of `y_t` (default N).
      r_min: inner radius of the ring that |lambda| is drawn from.
      r_max: outer radius of that ring; near 1 gives long memory.
      max_phase: phases are drawn from [0, max_phase].
      dtype: parameter dtype.
    """
    N = base.check_hidden_size("lru", hidden_size)
    O = N if output_size is None else base.check_hidden_size("lru", output_size)
    dtype = base.check_dtype("lru", dtype)
    if not 0.0 <= r_min < r_max <= 1.0:
        raise ValueError(f"rnnjax.cells.lru: need 0 <= r_min < r_max <= 1, got r_min={r_min}, r_max={r_max}")

    def compute_dtypes(params):
        return base.complex_dtypes(params["b_re"].dtype)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        k_r, k_p, k_b1, k_b2, k_c1, k_c2, k_d = jax.random.split(key, 7)
        u1 = jax.random.uniform(k_r, (N,))
        u2 = jax.random.uniform(k_p, (N,))
        # |lambda| uniform on the ring: |lambda|^2 uniform in [r_min^2, r_max^2]
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = jnp.log(max_phase * u2)
        gamma_log = 0.5 * jnp.log(1.0 - jnp.exp(-2.0 * jnp.exp(nu_log)))  # log sqrt(1 - |lambda|^2)
        normal = lambda k, shape, var: jax.random.normal(k, shape) * math.sqrt(var)  # noqa: E731
        params = {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "b_re": normal(k_b1, (I, N), 1.0 / (2 * I)),
            "b_im": normal(k_b2, (I, N), 1.0 / (2 * I)),
            "c_re": normal(k_c1, (N, O), 1.0 / N),
            "c_im": normal(k_c2, (N, O), 1.0 / N),
            "d": normal(k_d, (I, O), 1.0 / I),
        }
        return {k: v.astype(dtype) for k, v in params.items()}

    def coefficients(params, x):
        real, _ = compute_dtypes(params)
        p = {k: v.astype(real) for k, v in params.items()}
        x = x.astype(real)
        lam = jnp.exp(jax.lax.complex(-jnp.exp(p["nu_log"]), jnp.exp(p["theta_log"])))
        gamma = jnp.exp(p["gamma_log"])
        bx = jax.lax.complex(x @ p["b_re"], x @ p["b_im"]) * gamma
        return jnp.broadcast_to(lam, bx.shape), bx

    def readout(params, hs, xs):
        real, _ = compute_dtypes(params)
        p = {k: params[k].astype(real) for k in ("c_re", "c_im", "d")}
        y = jnp.real(hs) @ p["c_re"] - jnp.imag(hs) @ p["c_im"] + xs.astype(real) @ p["d"]
        return y.astype(params["d"].dtype)

    def initial_carry(params, batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), N), compute_dtypes(params)[1])

    linear = base.LinearRecurrence(coefficients=coefficients, readout=readout)
    return base.Cell(
        init=init,
        initial_carry=initial_carry,
        step=base.linear_step(linear),
        input_spec=base.spec_from_weight("b_re"),
        name="lru",
        hidden_size=N,
        output_size=O,
        config={
            "hidden_size": N,
            "output_size": O,
            "r_min": r_min,
            "r_max": r_max,
            "max_phase": max_phase,
            "dtype": dtype,
        },
        linear=linear,
    )
