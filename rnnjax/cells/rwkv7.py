"""RWKV-7 "Goose" time mixing (Peng, Zhang, Goldstein et al. 2025, "RWKV-7 "Goose" with Expressive
Dynamic State Evolution"): a diagonal-plus-low-rank transition, the generalized delta rule.

The paper writes the state value-major and multiplies it from the right,
`wkv_t = wkv_{t-1} (diag(w_t) - kappa_t^T (a_t * kappa_t)) + v_t^T k_t`: it
reads the state with the removal key `kappa` and erases along `a * kappa`.
Transposed to this package's key-major state `S = wkv^T` the same update reads

    r_t = x_t W_r,   k_t = x_t W_k,   v_t = x_t W_v                                  [D] each, heads of d
    log w_t = -exp(-1/2) sigmoid(tanh(x_t W_w1) W_w2 + b_w)                         a decay per key, in (e^-0.61, 1)
    a_t = sigmoid(x_t W_a1 W_a2 + b_a)                                              in-context learning rate
    kappa_t = l2norm(k_t * k_k)  (per head),   k~_t = k_t * (1 + (a_t - 1) * k_a)
    S_t = (Diag(w_t) - (a_t * kappa_t) kappa_t^T) S_{t-1} + k~_t v_t^T               [d, d] per head
    o_t = S_t^T r_t
    y_t = (GroupNorm_heads(o_t) + (sum(r_t * k~_t * r_k) per head) v_t) * g_t,   g_t = sigmoid(x_t W_g1) W_g2

so in the general matrix form (`rnnjax.cells.MatrixRecurrence`) the low-rank
term is `a b^T` with `a = -(a_t * kappa_t)` (the column it writes along) and
`b = kappa_t` (the row it reads with), as RWKV-7's reference code has it
(`state @ ab` with `ab = (-kk)^T (kk * a)` on the value-major state); both
parts of the transition act on `S_{t-1}`, and the chunkwise form runs the
general algorithm (rnnjax/_chunkwise.py, `general`). Unlike the delta rule the
erase and the write use different keys (`kappa` and `k~`), and with `a < 1`
the state is erased only in part.

What of the RWKV-7 block belongs to the layer, not the cell: the token shift
(each projection reads a learned mix of `x_t` and `x_{t-1}`: a causal
convolution of width 2, as the short convolutions of DeltaNet's and KDA's
layers, which this package leaves to the backbone), the value residual from
the first layer (`v` mixed with the first layer's `v`), the output projection
and the channel-mixing MLP. Here every projection reads `x_t`.

Initialisation as RWKV-7's first layer (the reference code's `ratio_0_to_1 = 0`):
`b_w = -6 + 6 n / (D - 1) + 0.5 + 2.5 z_n` (slow to fast decays across the
channels, `z` a zigzag within each head), `b_a = -0.19 + 0.3 z_n + 0.4 l_n`
(`l` linear in [-0.5, 0.5]), `k_k = 0.71 - 0.1 l_n`, `k_a = 1.02`,
`r_k = -0.04`, GroupNorm weight 1 and bias 0, the LoRAs' first factors zero
and second ones 0.1-scaled, `W_k` 0.1-scaled; `W_r, W_v` LeCun normal.
GroupNorm's epsilon is `d * 1e-5` (the reference code's `head_size * 1e-5`).
`kappa`'s l2norm has an epsilon inside the square root (1e-6), as this package's DeltaNet.

Params: `w_r, w_k, w_v [I, D]`, `w_w1 [I, rw]`, `w_w2 [rw, D]`, `b_w [D]`, `w_a1 [I, ra]`,
`w_a2 [ra, D]`, `b_a [D]`, `w_g1 [I, rg]`, `w_g2 [rg, D]`, `k_k, k_a, r_k, ln_w, ln_b [D]`.
Carry: `MatrixState(S [*batch, H, d, d])`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.deltanet import l2norm
from rnnjax.cells.registry import register

DECAY_SCALE = math.exp(-0.5)  # log w in (-e^-1/2, 0): a decay per step of at least e^-0.61
GROUP_NORM_EPS = 1e-5  # times the head size


def default_rank(hidden_size: int, head_size: int, scale: float) -> int:
    """The LoRA ranks of the reference code: `scale * sqrt(D) * (d / 64)` rounded to a multiple of 32, at least 32."""
    return max(32, round(scale * math.sqrt(hidden_size) * head_size / 64 / 32) * 32)


@register(
    "rwkv7",
    example={"hidden_size": 8, "num_heads": 2, "decay_rank": 3, "a_rank": 3, "gate_rank": 3},
    reference=reference.rwkv7,
)
def rwkv7(
    hidden_size: int,
    *,
    num_heads: int = 4,
    decay_rank: int | None = None,
    a_rank: int | None = None,
    gate_rank: int | None = None,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """RWKV-7 time-mixing cell (equations in the module docstring), a token mixer of width `hidden_size`.

    Args:
      hidden_size: D, the width of every projection and of the output.
      num_heads: H; D must be divisible by it.
      decay_rank: the rank of the decay's low-rank projection; None: the reference code's default
        (at least 32).
      a_rank: the rank of the in-context learning rate's low-rank projection; None: as `decay_rank`.
      gate_rank: the rank of the output gate's low-rank projection; None: the reference code's default.
      dtype: parameter dtype (the state is at least float32).
    """
    D = base.check_hidden_size("rwkv7", hidden_size)
    d = base.check_heads("rwkv7", D, num_heads)
    H = int(num_heads)
    ranks = {}
    for name, value, scale in (("decay_rank", decay_rank, 2.5), ("a_rank", a_rank, 2.5), ("gate_rank", gate_rank, 5.0)):
        if value is None:
            ranks[name] = default_rank(D, d if name != "gate_rank" else 64, scale)
        else:
            ranks[name] = base.check_positive_int("rwkv7", name, value)
    rw, ra, rg = ranks["decay_rank"], ranks["a_rank"], ranks["gate_rank"]
    dtype = base.check_dtype("rwkv7", dtype)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 6)
        n = np.arange(D)
        linear = n / max(D - 1, 1) - 0.5
        zigzag = ((n % d) - (d - 1) / 2) / max((d - 1) / 2, 1)
        zigzag = zigzag * np.abs(zigzag)
        vec = lambda a: jnp.asarray(a, jnp.float32).astype(dtype)  # noqa: E731
        return {
            "w_r": base.input_kernel(ks[0], I, D, dtype),
            "w_k": (0.1 * base.input_kernel(ks[1], I, D, jnp.float32)).astype(dtype),
            "w_v": base.input_kernel(ks[2], I, D, dtype),
            "w_w1": jnp.zeros((I, rw), dtype),
            "w_w2": (0.1 * base.input_kernel(ks[3], rw, D, jnp.float32)).astype(dtype),
            "b_w": vec(-6.0 + 6.0 * (n / max(D - 1, 1)) + 0.5 + 2.5 * zigzag),
            "w_a1": jnp.zeros((I, ra), dtype),
            "w_a2": (0.1 * base.input_kernel(ks[4], ra, D, jnp.float32)).astype(dtype),
            "b_a": vec(-0.19 + 0.3 * zigzag + 0.4 * linear),
            "w_g1": jnp.zeros((I, rg), dtype),
            "w_g2": (0.1 * base.input_kernel(ks[5], rg, D, jnp.float32)).astype(dtype),
            "k_k": vec(0.71 - 0.1 * linear),
            "k_a": jnp.full(D, 1.02, dtype),
            "r_k": jnp.full(D, -0.04, dtype),
            "ln_w": jnp.ones(D, dtype),
            "ln_b": jnp.zeros(D, dtype),
        }

    def heads(a):
        return a.reshape(*a.shape[:-1], H, d)

    def projections(params, x):
        """`r, k~, v` (heads), the learning rate `a` (heads) and the raw key: what the state and the bonus read."""
        r, k, v = x @ params["w_r"], x @ params["w_k"], x @ params["w_v"]
        a = jax.nn.sigmoid(x @ params["w_a1"] @ params["w_a2"] + params["b_a"])
        k_mod = k * (1.0 + (a - 1.0) * params["k_a"])
        return heads(r), heads(k_mod), heads(v), heads(a), k

    def inputs(params, x):
        r, k_mod, v, a, k = projections(params, x)
        lora = jnp.tanh(x @ params["w_w1"]) @ params["w_w2"] + params["b_w"]
        kappa = l2norm(heads(k * params["k_k"]))
        return base.MatrixInputs(
            q=r, k=k_mod, v=v, log_decay=heads(-DECAY_SCALE * jax.nn.sigmoid(lora)), a=-(a * kappa), b=kappa
        )

    def readout(params, o, m, x):
        mean = jnp.mean(o, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(o - mean), axis=-1, keepdims=True)
        normed = (o - mean) * jax.lax.rsqrt(var + d * GROUP_NORM_EPS) * heads(params["ln_w"]) + heads(params["ln_b"])
        r, k_mod, v, _, _ = projections(params, x)  # the same values the state saw (jit computes them once)
        bonus = jnp.sum(r * k_mod * heads(params["r_k"]), axis=-1, keepdims=True) * v
        gate = jax.nn.sigmoid(x @ params["w_g1"]) @ params["w_g2"]
        return ((normed + bonus.astype(o.dtype)).reshape(*o.shape[:-2], D) * gate).astype(x.dtype)

    # chunks of 16: a decay per key dimension, as GLA's and KDA's
    matrix = base.MatrixRecurrence(inputs, readout, num_heads=H, key_size=d, value_size=d, chunk_size=16)
    config = {"num_heads": H, "decay_rank": rw, "a_rank": ra, "gate_rank": rg, "dtype": dtype}
    return base.matrix_cell("rwkv7", D, init=init, matrix=matrix, config=config, input_weight="w_r")
