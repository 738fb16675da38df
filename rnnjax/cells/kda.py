"""KDA, Kimi Delta Attention (Kimi Team 2025, "Kimi Linear: An Expressive, Efficient Attention
Architecture"): the gated delta rule with a decay for every key dimension.

Gated DeltaNet forgets with one scalar per head; KDA with one per key
dimension (GLA's fine-grained gate), decaying first and then applying the
delta rule to the decayed state:

    q_t = l2norm(x_t W_q),   k_t = l2norm(x_t W_k),   v_t = x_t W_v              per head: [d], [d], [d]
    g_t = -exp(A_log) * softplus(x_t W_f1 W_f2 + dt_bias)                         [d] per head, log alpha_t
    beta_t = sigmoid(x_t w_beta + b_beta)          (2 sigmoid with negative eigenvalues)
    S_t = (I - beta_t k_t k_t^T) Diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T        [d, d] (key-major)
    o_t = S_t^T q_t,    y_t = concat_heads(o_t)

In the general matrix form (`rnnjax.cells.MatrixRecurrence`) this is
`(Diag(alpha) + a b^T) S + beta k v^T` with `a = -beta k` and `b = alpha * k`,
a decay per key with a low-rank term: the chunkwise form runs the general
algorithm (rnnjax/_chunkwise.py, `general`), the UT transform's pseudo-values
with a `[C, C, d]` tensor of decays.

The gate's low-rank projection (rank `gate_rank`, default the head size, as
flash-linear-attention's layer), `A_log = log(U[1, 16])` per head and
`dt_bias = 0` per key dimension are the reference implementation's
(flash-linear-attention's `KimiDeltaAttention`); projections LeCun normal,
`b_beta = 0`. With `num_value_heads` (grouped value heads) each query/key head
serves a group of value heads, each with its own state, decay and `beta`.
Conventions as this package's Gated DeltaNet: queries unscaled unit vectors
(flash-linear-attention scales them by `d^-0.5`; pass `scale=1.0` to compare),
and the layer's short convolutions (with their SiLU) and its gated output norm
belong to the backbone.

Params: `w_q, w_k [I, Hk*d]`, `w_v [I, D]`, `w_f1 [I, r]`, `w_f2 [r, D]`, `dt_bias [D]`,
`a_log [Hv]`, `w_beta [I, Hv]`, `b_beta [Hv]`. Carry: `MatrixState(S [*batch, Hv, d, d])`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.deltanet import check_value_heads, l2norm, write_strength
from rnnjax.cells.registry import register


@register("kda", example={"hidden_size": 8, "num_heads": 2, "gate_rank": 3}, reference=reference.kda)
def kda(
    hidden_size: int,
    *,
    num_heads: int = 4,
    num_value_heads: int | None = None,
    gate_rank: int | None = None,
    negative_eigenvalues: bool = False,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """KDA cell (equations in the module docstring), a token mixer of width `hidden_size`.

    Args:
      hidden_size: D, the width of the value projection and the output.
      num_heads: Hk, the query/key heads (and value heads unless `num_value_heads`).
      num_value_heads: Hv, a multiple of `num_heads` that divides D (grouped value heads); None: `num_heads`.
      gate_rank: r, the rank of the decay's projection; None: the head size d.
      negative_eigenvalues: `beta` in [0, 2] instead of [0, 1].
      dtype: parameter dtype (the state is at least float32).
    """
    D = base.check_hidden_size("kda", hidden_size)
    base.check_heads("kda", D, num_heads)
    Hk = int(num_heads)
    Hv = check_value_heads("kda", D, Hk, num_value_heads)
    d, group = D // Hv, Hv // Hk
    r = d if gate_rank is None else base.check_positive_int("kda", "gate_rank", gate_rank)
    dtype = base.check_dtype("kda", dtype)
    if not isinstance(negative_eigenvalues, bool):
        raise TypeError(f"rnnjax.cells.kda: `negative_eigenvalues` must be a bool, got {negative_eigenvalues!r}")

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 7)
        return {
            "w_q": base.input_kernel(ks[0], I, Hk * d, dtype),
            "w_k": base.input_kernel(ks[1], I, Hk * d, dtype),
            "w_v": base.input_kernel(ks[2], I, D, dtype),
            "w_f1": base.input_kernel(ks[3], I, r, dtype),
            "w_f2": base.input_kernel(ks[4], r, D, dtype),
            "dt_bias": jnp.zeros(D, dtype),
            "a_log": jnp.log(jax.random.uniform(ks[5], (Hv,), minval=1.0, maxval=16.0)).astype(dtype),
            "w_beta": base.input_kernel(ks[6], I, Hv, dtype),
            "b_beta": jnp.zeros(Hv, dtype),
        }

    def heads(a, n):
        """`[..., n * d]` -> `[..., Hv, d]`, each of `n` heads repeated for its group of value heads."""
        a = a.reshape(*a.shape[:-1], n, d)
        return a if n == Hv else jnp.repeat(a, group, axis=-2)

    def inputs(params, x):
        f = heads(x @ params["w_f1"] @ params["w_f2"] + params["dt_bias"], Hv)
        log_alpha = -jnp.exp(params["a_log"])[:, None] * jax.nn.softplus(f)  # [..., Hv, d]
        return base.MatrixInputs(
            q=l2norm(heads(x @ params["w_q"], Hk)),
            k=l2norm(heads(x @ params["w_k"], Hk)),
            v=heads(x @ params["w_v"], Hv),
            log_decay=log_alpha,
            beta=write_strength(x @ params["w_beta"] + params["b_beta"], negative_eigenvalues),
        )

    def readout(params, o, m, x):
        return o.reshape(*o.shape[:-2], D).astype(x.dtype)

    # chunks of 16: the decays per key dimension make the intra-chunk products contractions over a
    # [C, C, d] tensor, as GLA's, whose measured best chunk is 16
    matrix = base.MatrixRecurrence(inputs, readout, num_heads=Hv, key_size=d, value_size=d, chunk_size=16)
    config = {
        "num_heads": Hk,
        "num_value_heads": num_value_heads,
        "gate_rank": r,
        "negative_eigenvalues": negative_eigenvalues,
        "dtype": dtype,
    }
    return base.matrix_cell("kda", D, init=init, matrix=matrix, config=config)
