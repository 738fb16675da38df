"""DeltaNet (Schlag, Irie & Schmidhuber 2021, "Linear Transformers Are Secretly Fast Weight
Programmers"; parallel training: Yang, Wang, Zhang, Shen & Kim 2024, "Parallelizing Linear
Transformers with the Delta Rule over Sequence Length") and Gated DeltaNet (Yang, Kautz &
Hatamizadeh 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule").

The delta rule writes the value the memory should return for a key, replacing
what it returned before, instead of adding to it:

    q_t = l2norm(x_t W_q),   k_t = l2norm(x_t W_k),   v_t = x_t W_v          per head: [dk], [dk], [dv]
    beta_t = sigmoid(x_t w_beta + b_beta)                                     [H], the writing strength
    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T           [dk, dv] (key-major)
    o_t = S_t^T q_t,    y_t = concat_heads(o_t)

with `alpha_t = 1` for DeltaNet and, for Gated DeltaNet, Mamba-2's decay
`alpha_t = exp(-exp(A_log) * softplus(x_t w_a + dt_bias))`, kept in log space.
Unit-norm keys keep `I - beta k k^T` a contraction (its eigenvalues are 1 and
1 - beta in [0, 1]), so the state cannot blow up however long the sequence.

The chunkwise form (rnnjax/_chunkwise.py) uses the UT transform: one unit
lower-triangular solve per chunk turns the chunk's writes into matrix products.

Initialisation: projections LeCun normal, `b_beta = 0`; Gated DeltaNet's
`A_log = log(U[1, 16])` and `dt_bias` with `softplus(dt_bias)` log-uniform in
[0.001, 0.1] (as Mamba-2). The layer's short convolutions and output
norm/gate belong to the backbone.

Differs from flash-linear-attention's ops by a convention: the queries are
not scaled by `dk^-0.5` (its `chunk_delta_rule` and `chunk_gated_delta_rule`
scale them by default, `scale=None`); they are unit vectors, as the papers
write them. To compare with those ops, pass `scale=1.0` there.

Params: `w_q, w_k, w_v [I, D]`, `w_beta [I, H]`, `b_beta [H]`; gated also
`w_a [I, H]`, `dt_bias [H]`, `a_log [H]`. Carry: `MatrixState(S [*batch, H, dk, dv])`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register

L2_EPS = 1e-6  # inside the square root of l2norm: a zero key stays zero instead of dividing by 0


def l2norm(a: jax.Array) -> jax.Array:
    return a * jax.lax.rsqrt(jnp.sum(a * a, axis=-1, keepdims=True) + L2_EPS)


@register(
    "gated_deltanet",
    defaults={"gated": True},
    example={"hidden_size": 8, "num_heads": 2},
    reference=reference.deltanet,
)
@register("deltanet", example={"hidden_size": 8, "num_heads": 2}, reference=reference.deltanet)
def deltanet(
    hidden_size: int,
    *,
    num_heads: int = 4,
    gated: bool = False,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """DeltaNet cell, or Gated DeltaNet with `gated=True` (equations in the module docstring).

    Args:
      hidden_size: D, the width of the projections and the output.
      num_heads: H; D must be divisible by it.
      gated: add Gated DeltaNet's decay alpha_t.
      dtype: parameter dtype (the state is at least float32).

    Registered as "deltanet" and "gated_deltanet".
    """
    name = "gated_deltanet" if gated else "deltanet"
    D = base.check_hidden_size(name, hidden_size)
    dh = base.check_heads(name, D, num_heads)
    dtype = base.check_dtype(name, dtype)
    H = num_heads

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 7)
        params = {
            "w_q": base.input_kernel(ks[0], I, D, dtype),
            "w_k": base.input_kernel(ks[1], I, D, dtype),
            "w_v": base.input_kernel(ks[2], I, D, dtype),
            "w_beta": base.input_kernel(ks[3], I, H, dtype),
            "b_beta": jnp.zeros(H, dtype),
        }
        if gated:
            params |= {
                "w_a": base.input_kernel(ks[4], I, H, dtype),
                "dt_bias": base.step_size_bias(ks[5], H, 0.001, 0.1, dtype),
                "a_log": jnp.log(jax.random.uniform(ks[6], (H,), minval=1.0, maxval=16.0)).astype(dtype),
            }
        return params

    def heads(a):
        return a.reshape(*a.shape[:-1], H, dh)

    def inputs(params, x):
        if gated:
            log_alpha = -jnp.exp(params["a_log"]) * jax.nn.softplus(x @ params["w_a"] + params["dt_bias"])
        else:
            log_alpha = jnp.zeros((*x.shape[:-1], H), x.dtype)
        return base.MatrixInputs(
            q=l2norm(heads(x @ params["w_q"])),
            k=l2norm(heads(x @ params["w_k"])),
            v=heads(x @ params["w_v"]),
            log_decay=log_alpha[..., None],
            beta=jax.nn.sigmoid(x @ params["w_beta"] + params["b_beta"]),
        )

    def readout(params, o, m, x):
        return o.reshape(*o.shape[:-2], D).astype(x.dtype)

    matrix = base.MatrixRecurrence(inputs, readout, num_heads=H, key_size=dh, value_size=dh)
    return base.matrix_cell(name, D, init=init, matrix=matrix, config={"num_heads": H, "gated": gated, "dtype": dtype})
