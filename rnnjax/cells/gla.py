"""GLA, gated linear attention (Yang, Wang, Shen, Panda & Kim 2024, "Gated Linear Attention
Transformers with Hardware-Efficient Training").

A matrix memory per head with a data-dependent decay for every key dimension:

    q_t = x_t W_q / sqrt(dk),   k_t = x_t W_k,   v_t = x_t W_v             per head: [dk], [dk], [dv]
    alpha_t = sigmoid(x_t W_a1 W_a2 + b_a) ^ (1 / tau)                      [dk], tau = gate_normalizer = 16
    S_t = Diag(alpha_t) S_{t-1} + k_t v_t^T                                 [dk, dv]
    o_t = S_t^T q_t,    y_t = concat_heads(o_t) * swish(x_t W_g)

The decay's low-rank projection (rank 16) and its temperature tau = 16,
which keeps alpha close to 1 at initialisation, are the paper's. The output
gate is the paper's too; its per-head normalisation belongs to the layer
(the recall study's backbone normalises), not to the recurrence. `log alpha`
is computed as `log_sigmoid(.) / tau`, in log space, and the chunkwise form
only ever exponentiates differences of its cumulative sums.

Params: `w_q, w_k [I, H*dk]`, `w_v, w_g [I, D]`, `w_a1 [I, r]`, `w_a2 [r, H*dk]`,
`b_a [H*dk]`, with D = `hidden_size`, dk = dv = D / H. Carry: `MatrixState(S [*batch, H, dk, dv])`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@register("gla", example={"hidden_size": 8, "num_heads": 2, "gate_rank": 3}, reference=reference.gla)
def gla(
    hidden_size: int,
    *,
    num_heads: int = 4,
    gate_rank: int = 16,
    gate_normalizer: float = 16.0,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """GLA cell (equations in the module docstring), a token mixer of width `hidden_size`.

    Args:
      hidden_size: D, the width of the input projections and the output.
      num_heads: H; D must be divisible by it.
      gate_rank: r, the rank of the decay's projection.
      gate_normalizer: tau, the decay's temperature.
      dtype: parameter dtype (the state is at least float32).
    """
    D = base.check_hidden_size("gla", hidden_size)
    dh = base.check_heads("gla", D, num_heads)
    r = base.check_positive_int("gla", "gate_rank", gate_rank)
    dtype = base.check_dtype("gla", dtype)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 6)
        return {
            "w_q": base.input_kernel(ks[0], I, D, dtype),
            "w_k": base.input_kernel(ks[1], I, D, dtype),
            "w_v": base.input_kernel(ks[2], I, D, dtype),
            "w_g": base.input_kernel(ks[3], I, D, dtype),
            "w_a1": base.input_kernel(ks[4], I, r, dtype),
            "w_a2": base.input_kernel(ks[5], r, D, dtype),
            "b_a": jnp.zeros(D, dtype),
        }

    def heads(a):
        return a.reshape(*a.shape[:-1], num_heads, dh)

    def inputs(params, x):
        log_alpha = jax.nn.log_sigmoid(x @ params["w_a1"] @ params["w_a2"] + params["b_a"]) / gate_normalizer
        return base.MatrixInputs(
            q=heads(x @ params["w_q"]) * dh**-0.5,
            k=heads(x @ params["w_k"]),
            v=heads(x @ params["w_v"]),
            log_decay=heads(log_alpha),
        )

    def readout(params, o, m, x):
        o = o.reshape(*o.shape[:-2], D).astype(x.dtype)
        return o * jax.nn.silu(x @ params["w_g"])

    # chunks of 16: the per-key-dimension decays make the intra-chunk scores a [C, C, dk] tensor, and
    # C = 64 trained 2.5-3x slower than C = 16 (benchmarks/results/cpu-matrix-2026-11-27.md)
    matrix = base.MatrixRecurrence(inputs, readout, num_heads=num_heads, key_size=dh, value_size=dh, chunk_size=16)
    config = {"num_heads": num_heads, "gate_rank": r, "gate_normalizer": gate_normalizer, "dtype": dtype}
    return base.matrix_cell("gla", D, init=init, matrix=matrix, config=config)
