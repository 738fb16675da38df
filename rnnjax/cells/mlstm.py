"""mLSTM, the matrix-memory LSTM of xLSTM (Beck, Poppel, Spanring, Auer, Prudnikova, Kopp,
Klambauer, Brandstetter & Hochreiter 2024, "xLSTM: Extended Long Short-Term Memory").

Per head, with an exponential input gate and a sigmoid forget gate:

    q_t = x_t W_q,   k_t = x_t W_k / sqrt(dk),   v_t = x_t W_v                   per head: [dk], [dk], [dv]
    i~_t = x_t w_i + b_i,   f~_t = x_t w_f + b_f                                 scalars per head
    C_t = f_t C_{t-1} + i_t v_t k_t^T,   n_t = f_t n_{t-1} + i_t k_t              f_t = sigmoid(f~_t), i_t = exp(i~_t)
    h_t = o_t * (C_t q_t) / max(|n_t^T q_t|, 1),   o_t = sigmoid(x_t W_o + b_o)   [D]

Numerics, as in the paper: `exp(i~)` overflows float32 beyond 88, so the
state is carried divided by `exp(m_t)` with the stabiliser
`m_t = max(log f_t + m_{t-1}, i~_t)` (log f_t = log_sigmoid(f~_t)); the
output is unchanged: `(C~ q) / max(|n~^T q|, exp(-m_t))` with C~ = C exp(-m).
The readout is computed as `(o e^a) / max(|n~^T q| e^a, e^-b, tiny)`
with `a = min(m_t, 0)`, `b = max(m_t, 0)` (the same quotient with both
exponentials at most 1, so neither overflows when a saturated gate drives
`|m_t|` past 88 in float32), floored at the dtype's smallest normal number
(a zero query, such as a padded step's, then reads out 0, not 0 / 0), and
differentiated as `d(n / d) = dn / d - (n / d) dd / d` (`_quotient`), which
never forms `d^2`: with `d` at the floor `d^2` underflows, and `0 / 0`
there would reach every gradient through the padding mask.
The chunkwise form carries the same m across chunks (rnnjax/_chunkwise.py).

In rnnjax's key-major layout the state is `S = [C^T | n]`, `[dk, dv + 1]`:
the normaliser n is the memory of a value that is always 1, so one matrix
recurrence (`MatrixRecurrence` with `log_write = i~`) carries both.

Initialisation (the official xLSTM code): the gates' input weights zero, the
forget gate's bias `linspace(3, 6)` over the heads (remember at the start),
the input gate's bias N(0, 0.1^2); the projections LeCun normal, output
gate bias 0. The layer's per-head group normalisation is left to the backbone.

Params: `w_q, w_k, w_v, w_o [I, D]`, `b_o [D]`, `w_i, w_f [I, H]`, `b_i, b_f [H]`.
Carry: `MatrixState(S [*batch, H, dk, dk + 1], m [*batch, H])`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


@jax.custom_jvp
def _quotient(num: jax.Array, den: jax.Array) -> jax.Array:
    """`num / den` (den > 0) whose derivative never squares `den` (see the module docstring)."""
    return num / den


@_quotient.defjvp
def _quotient_jvp(primals, tangents):
    (num, den), (d_num, d_den) = primals, tangents
    out = num / den
    return out, (d_num - out * d_den) / den


@register("mlstm", example={"hidden_size": 8, "num_heads": 2}, reference=reference.mlstm)
def mlstm(hidden_size: int, *, num_heads: int = 4, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """mLSTM cell (equations in the module docstring), a token mixer of width `hidden_size`.

    Args:
      hidden_size: D, the width of the projections and the output.
      num_heads: H; D must be divisible by it.
      dtype: parameter dtype (the state is at least float32).
    """
    D = base.check_hidden_size("mlstm", hidden_size)
    dh = base.check_heads("mlstm", D, num_heads)
    dtype = base.check_dtype("mlstm", dtype)
    H = num_heads

    def init(key, input_size):
        I = base.check_input_size(input_size)
        ks = jax.random.split(key, 5)
        return {
            "w_q": base.input_kernel(ks[0], I, D, dtype),
            "w_k": base.input_kernel(ks[1], I, D, dtype),
            "w_v": base.input_kernel(ks[2], I, D, dtype),
            "w_o": base.input_kernel(ks[3], I, D, dtype),
            "b_o": jnp.zeros(D, dtype),
            "w_i": jnp.zeros((I, H), dtype),
            "b_i": (0.1 * jax.random.normal(ks[4], (H,))).astype(dtype),
            "w_f": jnp.zeros((I, H), dtype),
            "b_f": jnp.linspace(3.0, 6.0, H).astype(dtype),
        }

    def heads(a):
        return a.reshape(*a.shape[:-1], H, dh)

    def inputs(params, x):
        v = heads(x @ params["w_v"])
        return base.MatrixInputs(
            q=heads(x @ params["w_q"]),
            k=heads(x @ params["w_k"]) * dh**-0.5,
            v=jnp.concatenate([v, jnp.ones((*v.shape[:-1], 1), v.dtype)], axis=-1),  # the last column is n
            log_decay=jax.nn.log_sigmoid(x @ params["w_f"] + params["b_f"])[..., None],
            log_write=x @ params["w_i"] + params["b_i"],
        )

    def readout(params, o, m, x):
        # o = [C~ q | n~^T q]; max(|n~^T q|, exp(-m)) is max(|n^T q|, 1) in the stabilised units
        a = jnp.exp(jnp.minimum(m, 0.0))[..., None]
        floor = jnp.maximum(jnp.exp(-jnp.maximum(m, 0.0)), jnp.finfo(o.dtype).tiny)[..., None]
        h = _quotient(o[..., :dh] * a, jnp.maximum(jnp.abs(o[..., dh:]) * a, floor))
        h = h.reshape(*h.shape[:-2], D).astype(x.dtype)
        return jax.nn.sigmoid(x @ params["w_o"] + params["b_o"]) * h

    # chunks of 64: the fastest training step at T = 1024-16,384 in benchmarks/results/cpu-matrix-2026-11-27.md
    matrix = base.MatrixRecurrence(
        inputs, readout, num_heads=H, key_size=dh, value_size=dh + 1, stabilised=True, chunk_size=64
    )
    return base.matrix_cell("mlstm", D, init=init, matrix=matrix, config={"num_heads": H, "dtype": dtype})
