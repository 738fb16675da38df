"""Gated DeltaProduct (Siems, Carstensen, Zela, Hutter, Pontil & Grazzi 2025, "DeltaProduct:
Improving State-Tracking in Linear RNNs via Householder Products").

Gated DeltaNet takes one delta-rule step per token; DeltaProduct takes `n_h`,
each with its own key, value and strength, so a token's transition is a
product of `n_h` generalised Householder matrices instead of one:

    q_t = l2norm(x_t W_q),   k_tj = l2norm(x_t W_kj),   v_tj = x_t W_vj,   j = 1..n_h   per head
    beta_tj = sigmoid(x_t w_betaj + b_betaj)            (2 sigmoid with negative eigenvalues)
    alpha_t = exp(-exp(A_log) * softplus(x_t w_a + dt_bias))                           one decay per token
    S <- alpha_t S_{t-1};   for j = 1..n_h:   S <- (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T
    S_t = S,   o_t = S_t^T q_t,   y_t = concat_heads(o_t)

so `S_t = H_tn ... H_t1 alpha_t S_{t-1} + (the n_h writes)`, a transition of
rank up to `n_h` away from the identity; a product of n_h reflections (with
negative eigenvalues) can express permutations an identity-plus-rank-one
transition cannot, which is the paper's point: state tracking that grows with
`n_h`. `n_h = 1` is Gated DeltaNet, parameter for parameter (tested).

The chunkwise form runs a token's `n_h` steps as steps of their own (the
decay on the first, the query on the last; `MatrixRecurrence.substeps`)
through the delta rule's UT transform, as flash-linear-attention's
`chunk_gated_delta_product` does. Same conventions as Gated DeltaNet (queries
unscaled unit vectors; short convolutions and output gate in the backbone;
initialisation as there); `num_value_heads` groups value heads as there.

Params: as Gated DeltaNet's with `w_k [I, n_h*Hk*d]`, `w_v [I, n_h*D]`, `w_beta [I, n_h*Hv]`,
`b_beta [n_h*Hv]` (substep-major). Carry: `MatrixState(S [*batch, Hv, d, d])`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.deltanet import delta_rule_cell
from rnnjax.cells.registry import register


@register(
    "gated_deltaproduct",
    example={"hidden_size": 8, "num_heads": 2, "householder": 2},
    reference=reference.gated_deltaproduct,
)
def gated_deltaproduct(
    hidden_size: int,
    *,
    num_heads: int = 4,
    householder: int = 2,
    negative_eigenvalues: bool = False,
    num_value_heads: int | None = None,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """Gated DeltaProduct cell (equations in the module docstring).

    Args:
      hidden_size: D, the width of the value projections and the output.
      num_heads: Hk, the query/key heads (and value heads unless `num_value_heads`).
      householder: n_h >= 1, delta-rule steps (Householder factors) per token; 1 is Gated DeltaNet.
      negative_eigenvalues: `beta` in [0, 2] instead of [0, 1].
      num_value_heads: Hv, a multiple of `num_heads` that divides D; None: `num_heads`.
      dtype: parameter dtype (the state is at least float32).
    """
    if isinstance(householder, bool) or not isinstance(householder, (int, np.integer)) or householder < 1:
        raise ValueError(
            f"rnnjax.cells.gated_deltaproduct: `householder` (n_h) must be an int >= 1, got {householder!r}"
        )
    config = {
        "num_heads": num_heads,
        "householder": int(householder),
        "negative_eigenvalues": negative_eigenvalues,
        "num_value_heads": num_value_heads,
    }
    return delta_rule_cell(
        "gated_deltaproduct",
        hidden_size,
        num_heads=num_heads,
        gated=True,
        negative_eigenvalues=negative_eigenvalues,
        num_value_heads=num_value_heads,
        substeps=int(householder),
        dtype=dtype,
        config=config,
    )
