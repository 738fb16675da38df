"""DeltaNet (Schlag, Irie & Schmidhuber 2021, "Linear Transformers Are Secretly Fast Weight
Programmers"; parallel training: Yang, Wang, Zhang, Shen & Kim 2024, "Parallelizing Linear
Transformers with the Delta Rule over Sequence Length") and Gated DeltaNet (Yang, Kautz &
Hatamizadeh 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule").

The delta rule writes the value the memory should return for a key, replacing
what it returned before, instead of adding to it:

    q_t = l2norm(x_t W_q),   k_t = l2norm(x_t W_k),   v_t = x_t W_v          per head: [dk], [dk], [dv]
    beta_t = sigmoid(x_t w_beta + b_beta)                                     [H], the writing strength
    S_t = (I - beta_t k_t k_t^T) alpha_t S_{t-1} + beta_t k_t v_t^T           [dk, dv] (key-major)
    o_t = S_t^T q_t,    y_t = concat_heads(o_t)

with `alpha_t = 1` for DeltaNet and, for Gated DeltaNet, Mamba-2's decay
`alpha_t = exp(-exp(A_log) * softplus(x_t w_a + dt_bias))`, kept in log space.
Unit-norm keys keep `I - beta k k^T` a contraction (its eigenvalues are 1 and
1 - beta in [0, 1]), so the state cannot blow up however long the sequence.

Two options of the 2025 cells:

- `negative_eigenvalues=True` (Grazzi, Siems, Zela, Franke, Hutter & Pontil,
  ICLR 2025, "Unlocking State-Tracking in Linear RNNs Through Negative
  Eigenvalues"): `beta_t = 2 sigmoid(.)` in [0, 2], so the transition's
  eigenvalue `1 - beta` lies in [-1, 1]: a reflection, which parity and
  permutation tracking need. Still a contraction.
- `num_value_heads` (grouped value heads, Qwen3-Next's Gated DeltaNet): more
  value heads than query/key heads; each query/key head serves
  `num_value_heads / num_heads` consecutive value heads, each with its own
  state, `beta` and decay. Head size `hidden_size / num_value_heads` for keys
  and values alike, so the query/key projections are `num_heads /
  num_value_heads` as wide.

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

Params: `w_q, w_k [I, Hk*d]`, `w_v [I, D]`, `w_beta [I, Hv]`, `b_beta [Hv]`; gated also
`w_a [I, Hv]`, `dt_bias [Hv]`, `a_log [Hv]` (Hk = `num_heads`, Hv = `num_value_heads`,
d = D / Hv). Carry: `MatrixState(S [*batch, Hv, d, d])`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register

L2_EPS = 1e-6  # inside the square root of l2norm: a zero key stays zero instead of dividing by 0


def l2norm(a: jax.Array) -> jax.Array:
    return a * jax.lax.rsqrt(jnp.sum(a * a, axis=-1, keepdims=True) + L2_EPS)


def check_value_heads(factory: str, hidden_size: int, num_heads: int, num_value_heads: Any) -> int:
    """`num_value_heads` as an int (None: `num_heads`), or raise naming the factory and the values."""
    if num_value_heads is None:
        return num_heads
    if isinstance(num_value_heads, bool) or not isinstance(num_value_heads, (int, np.integer)) or num_value_heads < 1:
        raise ValueError(f"rnnjax.cells.{factory}: `num_value_heads` must be a positive int, got {num_value_heads!r}")
    if num_value_heads % num_heads:
        raise ValueError(
            f"rnnjax.cells.{factory}: `num_value_heads` must be a multiple of `num_heads` (each query/key head "
            f"serves a group of value heads), got num_value_heads={num_value_heads} and num_heads={num_heads}"
        )
    base.check_heads(factory, hidden_size, num_value_heads)
    return int(num_value_heads)


def write_strength(z: jax.Array, negative_eigenvalues: bool) -> jax.Array:
    """`beta` from its pre-activation: in [0, 1], or [0, 2] with negative eigenvalues."""
    return 2.0 * jax.nn.sigmoid(z) if negative_eigenvalues else jax.nn.sigmoid(z)


def delta_rule_cell(
    name: str,
    hidden_size: int,
    *,
    num_heads: int,
    gated: bool,
    negative_eigenvalues: bool,
    num_value_heads: int | None,
    substeps: int,
    dtype: DTypeLike,
    config: dict[str, Any],
) -> base.Cell:
    """The delta rule with a scalar decay per head, `substeps` delta steps per token: DeltaNet, Gated
    DeltaNet and (rnnjax/cells/gated_deltaproduct.py) Gated DeltaProduct."""
    D = base.check_hidden_size(name, hidden_size)
    base.check_heads(name, D, num_heads)
    Hk = int(num_heads)
    Hv = check_value_heads(name, D, Hk, num_value_heads)
    d = D // Hv
    group = Hv // Hk
    n = substeps
    dtype = base.check_dtype(name, dtype)
    if not isinstance(negative_eigenvalues, bool):
        raise TypeError(f"rnnjax.cells.{name}: `negative_eigenvalues` must be a bool, got {negative_eigenvalues!r}")

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 7)
        params = {
            "w_q": base.input_kernel(ks[0], I, Hk * d, dtype),
            "w_k": base.input_kernel(ks[1], I, n * Hk * d, dtype),
            "w_v": base.input_kernel(ks[2], I, n * D, dtype),
            "w_beta": base.input_kernel(ks[3], I, n * Hv, dtype),
            "b_beta": jnp.zeros(n * Hv, dtype),
        }
        if gated:
            params |= {
                "w_a": base.input_kernel(ks[4], I, Hv, dtype),
                "dt_bias": base.step_size_bias(ks[5], Hv, 0.001, 0.1, dtype),
                "a_log": jnp.log(jax.random.uniform(ks[6], (Hv,), minval=1.0, maxval=16.0)).astype(dtype),
            }
        return params

    def value_heads(a, heads):
        """`[..., heads * d]` -> `[..., Hv, d]`, each of the `heads` heads repeated for its group."""
        a = a.reshape(*a.shape[:-1], heads, d)
        return a if heads == Hv else jnp.repeat(a, group, axis=-2)

    def per_substep(a, width):
        """`[..., n * width]` -> `[..., n, width]`."""
        return a.reshape(*a.shape[:-1], n, width)

    def inputs(params, x):
        if gated:
            log_alpha = -jnp.exp(params["a_log"]) * jax.nn.softplus(x @ params["w_a"] + params["dt_bias"])
        else:
            log_alpha = jnp.zeros((*x.shape[:-1], Hv), x.dtype)
        k = value_heads(per_substep(x @ params["w_k"], Hk * d), Hk)  # [..., n, Hv, d]
        v = per_substep(x @ params["w_v"], D).reshape(*x.shape[:-1], n, Hv, d)
        beta = write_strength(per_substep(x @ params["w_beta"] + params["b_beta"], Hv), negative_eigenvalues)
        k, v, beta = jnp.moveaxis(l2norm(k), -3, -2), jnp.moveaxis(v, -3, -2), jnp.moveaxis(beta, -2, -1)
        if n == 1:  # no substep axis
            k, v, beta = k[..., 0, :], v[..., 0, :], beta[..., 0]
        return base.MatrixInputs(
            q=l2norm(value_heads(x @ params["w_q"], Hk)), k=k, v=v, log_decay=log_alpha[..., None], beta=beta
        )

    def readout(params, o, m, x):
        return o.reshape(*o.shape[:-2], D).astype(x.dtype)

    matrix = base.MatrixRecurrence(inputs, readout, num_heads=Hv, key_size=d, value_size=d, substeps=n)
    return base.matrix_cell(name, D, init=init, matrix=matrix, config={**config, "dtype": dtype})


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
    negative_eigenvalues: bool = False,
    num_value_heads: int | None = None,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """DeltaNet cell, or Gated DeltaNet with `gated=True` (equations in the module docstring).

    Args:
      hidden_size: D, the width of the value projection and the output.
      num_heads: Hk, the query/key heads (and value heads unless `num_value_heads`).
      gated: add Gated DeltaNet's decay alpha_t.
      negative_eigenvalues: `beta` in [0, 2] instead of [0, 1].
      num_value_heads: Hv, a multiple of `num_heads` that divides D (grouped value heads); None: `num_heads`.
      dtype: parameter dtype (the state is at least float32).

    Registered as "deltanet" and "gated_deltanet".
    """
    name = "gated_deltanet" if gated else "deltanet"
    config = {
        "num_heads": num_heads,
        "gated": gated,
        "negative_eigenvalues": negative_eigenvalues,
        "num_value_heads": num_value_heads,
    }
    return delta_rule_cell(
        name,
        hidden_size,
        num_heads=num_heads,
        gated=gated,
        negative_eigenvalues=negative_eigenvalues,
        num_value_heads=num_value_heads,
        substeps=1,
        dtype=dtype,
        config=config,
    )
