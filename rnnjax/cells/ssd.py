"""SSD, the state-space dual layer of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs:
Generalized Models and Efficient Algorithms Through Structured State Space Duality").

A selective state space with a scalar decay per head, `H_t [P, N]` per head:

    x~_t = x_t W_x                                                  [H, P], P = D / H channels per head
    Delta_t = softplus(x_t W_dt + dt_bias)                          [H]
    a_t = exp(Delta_t A),   A = -exp(A_log)                         [H], A < 0
    B_t = x_t W_B,   C_t = x_t W_C                                  [N], shared by the heads (one group)
    H_t = a_t H_{t-1} + Delta_t x~_t B_t^T                          [P, N]
    y_t = H_t C_t + D * x~_t                                        [H, P] -> [D]

In rnnjax's key-major layout `S = H^T [N, P]`, `k = B`, `v = Delta x~`,
`q = C` and `log_decay = Delta A <= 0` (kept in log space; the chunkwise
form exponentiates only differences of its cumulative sums, the "segsum").

Initialisation (the paper's code): `A_log = log(U[1, 16])`; `dt_bias` so
that `softplus(dt_bias)` is log-uniform in [0.001, 0.1]; `D = 1`; the
projections LeCun normal. The block around it (the short convolution, the
gate z and the norm) belongs to the backbone of the recall study.

Params: `w_x [I, D]`, `w_b, w_c [I, N]`, `w_dt [I, H]`, `dt_bias [H]`, `a_log [H]`, `d [H]`.
Carry: `MatrixState(S [*batch, H, N, P])`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("ssd", example={"hidden_size": 8, "num_heads": 2, "state_size": 3}, reference=reference.ssd)
def ssd(
    hidden_size: int,
    *,
    num_heads: int = 4,
    state_size: int = 16,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """Mamba-2 SSD cell (equations in the module docstring), a token mixer of width `hidden_size`.

    Args:
      hidden_size: D = H * P.
      num_heads: H; D must be divisible by it.
      state_size: N, the size of B_t and C_t (Mamba-2's d_state).
      dt_min: smallest initial step size.
      dt_max: largest initial step size.
      dtype: parameter dtype (the state is at least float32).
    """
    D = base.check_hidden_size("ssd", hidden_size)
    P = base.check_heads("ssd", D, num_heads)
    N = base.check_hidden_size("ssd", state_size)
    dtype = base.check_dtype("ssd", dtype)
    H = num_heads

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 6)
        return {
            "w_x": base.input_kernel(ks[0], I, D, dtype),
            "w_b": base.input_kernel(ks[1], I, N, dtype),
            "w_c": base.input_kernel(ks[2], I, N, dtype),
            "w_dt": base.input_kernel(ks[3], I, H, dtype),
            "dt_bias": base.step_size_bias(ks[4], H, dt_min, dt_max, dtype),
            "a_log": jnp.log(jax.random.uniform(ks[5], (H,), minval=1.0, maxval=16.0)).astype(dtype),
            "d": jnp.ones(H, dtype),
        }

    def inputs(params, x):
        delta = jax.nn.softplus(x @ params["w_dt"] + params["dt_bias"])  # [..., H]
        x_h = (x @ params["w_x"]).reshape(*x.shape[:-1], H, P)
        b = jnp.broadcast_to((x @ params["w_b"])[..., None, :], (*x.shape[:-1], H, N))
        c = jnp.broadcast_to((x @ params["w_c"])[..., None, :], (*x.shape[:-1], H, N))
        return base.MatrixInputs(
            q=c, k=b, v=delta[..., None] * x_h, log_decay=(-jnp.exp(params["a_log"]) * delta)[..., None]
        )

    def readout(params, o, m, x):
        x_h = (x @ params["w_x"]).reshape(*x.shape[:-1], H, P)
        y = o.astype(x.dtype) + params["d"][:, None] * x_h
        return y.reshape(*y.shape[:-2], D)

    matrix = base.MatrixRecurrence(inputs, readout, num_heads=H, key_size=N, value_size=P)
    config = {"num_heads": H, "state_size": N, "dt_min": dt_min, "dt_max": dt_max, "dtype": dtype}
    return base.matrix_cell("ssd", D, init=init, matrix=matrix, config=config, input_weight="w_x")
