"""sLSTM, the scalar-memory LSTM of xLSTM (Beck, Poppel, Spanring, Auer, Prudnikova, Kopp,
Klambauer, Brandstetter & Hochreiter 2024, "xLSTM: Extended Long Short-Term Memory").

An LSTM with an exponential input gate, a normaliser state and memory mixing
inside heads (block-diagonal recurrent matrices):

    [z~, i~, f~, o~] = x_t W_x + blockdiag(R) h_{t-1} + b            gates z, i, f, o; H each
    m_t = max(log_sigmoid(f~) + m_{t-1}, i~)                          stabiliser
    i' = exp(i~ - m_t),   f' = exp(log_sigmoid(f~) + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z~),   n_t = f' n_{t-1} + i'
    h_t = sigmoid(o~) * c_t / n_t,    y_t = h_t

The stabiliser keeps `exp` from overflowing: c and n are carried divided by
`exp(m_t)`, which leaves `c / n` unchanged (the paper's stabilised form).
`R` has one `[dh, 4 dh]` block per head: units mix within their head only.
Nonlinear in the state (through R and the gates), so sequential only.

Initialisation: `W_x` LeCun normal, `R` blocks N(0, 1/dh), forget-gate
bias `linspace(3, 6)` over the units (remember at the start, as the
official code's forget-gate init does), other biases 0.

Params: `w_x [I, 4H]`, `r [heads, dh, 4 dh]`, `b [4H]`. Carry: `SLSTMState(h, c, n, m)`, each `[*batch, H]`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


class SLSTMState(NamedTuple):
    """The sLSTM carry: output h, cell c, normaliser n and stabiliser m, each `[*batch, H]`."""

    h: jax.Array
    c: jax.Array
    n: jax.Array
    m: jax.Array


@register("slstm", example={"hidden_size": 4, "num_heads": 2}, reference=reference.slstm)
def slstm(hidden_size: int, *, num_heads: int = 4, dtype: DTypeLike = jnp.float32) -> base.Cell:
    """sLSTM cell (equations in the module docstring).

    Args:
      hidden_size: H, the size of the state and the output.
      num_heads: heads of the block-diagonal recurrent matrix; H must be divisible by it.
      dtype: parameter and state dtype.
    """
    H = base.check_hidden_size("slstm", hidden_size)
    dh = base.check_heads("slstm", H, num_heads)
    dtype = base.check_dtype("slstm", dtype)

    def init(key, input_size):
        I = base.check_input_size(input_size)
        k_x, k_r = jax.random.split(key)
        b = jnp.zeros(4 * H, dtype).at[2 * H : 3 * H].set(jnp.linspace(3.0, 6.0, H).astype(dtype))
        r = jax.random.normal(k_r, (num_heads, dh, 4 * dh)) / jnp.sqrt(dh)
        return {"w_x": base.input_kernel(k_x, I, 4 * H, dtype), "r": r.astype(dtype), "b": b}

    def initial_carry(params, batch_shape=()):
        zeros = base.zeros_carry(params["w_x"].dtype, batch_shape, H)
        return SLSTMState(zeros, zeros, zeros, zeros)

    def step(params, carry, x):
        rec = jnp.einsum("...hd,hde->...he", carry.h.reshape(*carry.h.shape[:-1], num_heads, dh), params["r"])
        rec = jnp.swapaxes(rec.reshape(*rec.shape[:-1], 4, dh), -2, -3).reshape(*rec.shape[:-2], 4 * H)
        z_pre, i_pre, f_pre, o_pre = jnp.split(x @ params["w_x"] + rec + params["b"], 4, axis=-1)
        log_f = jax.nn.log_sigmoid(f_pre)
        m = jnp.maximum(log_f + carry.m, i_pre)
        i_gate, f_gate = jnp.exp(i_pre - m), jnp.exp(log_f + carry.m - m)
        c = f_gate * carry.c + i_gate * jnp.tanh(z_pre)
        n = f_gate * carry.n + i_gate
        h = jax.nn.sigmoid(o_pre) * c / n
        return SLSTMState(h, c, n, m), h

    return base.Cell(
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_spec=base.spec_from_weight("w_x"),
        name="slstm",
        hidden_size=H,
        output_size=H,
        config={"hidden_size": H, "num_heads": num_heads, "dtype": dtype},
    )
