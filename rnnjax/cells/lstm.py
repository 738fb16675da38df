"""Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

Gates in the order i, f, g, o, computed by one matmul of each input:

    [a_i, a_f, a_g, a_o] = x_t W_x + h_{t-1} W_h + b
    i_t = sigmoid(a_i)       input gate
    f_t = sigmoid(a_f)       forget gate
    g_t = tanh(a_g)          candidate cell
    o_t = sigmoid(a_o)       output gate
    c_t = f_t * c_{t-1} + i_t * g_t
    h_t = o_t * tanh(c_t),   y_t = h_t

The forget-gate bias starts at 1.0 (Gers et al. 2000; Jozefowicz et al. 2015,
"An Empirical Exploration of Recurrent Network Architectures"): the cell then
remembers by default, which is what lets gradients survive long delays early
in training. Other biases start at 0; `forget_bias` changes it.

Params: `w_x [I, 4H]`, `w_h [H, 4H]`, `b [4H]`.  Carry: `LSTMState(h, c)`,
each `[*batch, H]` (haiku's order; flax's `LSTMCell` carry is `(c, h)`).

Variants (options of the same factory, registered under their own names):

- `peephole=True` ("lstm_peephole"; Gers & Schmidhuber 2000): the gates also
  see the cell state, `a_i += p_i * c_{t-1}`, `a_f += p_f * c_{t-1}`,
  `a_o += p_o * c_t`; extra param `peephole [3H]` (p_i | p_f | p_o), zeros at init.
- `layer_norm=True` ("lstm_layernorm"; Ba, Kiros & Hinton 2016): the two
  matmuls are normalised separately and the cell state before the output,
  `a = LN(x_t W_x; g_x) + LN(h_{t-1} W_h; g_h) + b`, `h_t = o_t * tanh(LN(c_t; g_c, beta_c))`;
  extra params `ln_x_scale [4H]`, `ln_h_scale [4H]`, `ln_c_scale [H]`, `ln_c_bias [H]`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax import reference
from rnnjax._kernels import cudnn_lstm
from rnnjax._kernels import lstm as lstm_kernel
from rnnjax.cells import cell as base
from rnnjax.cells.registry import register


class LSTMState(NamedTuple):
    """The LSTM carry: hidden state `h` and cell state `c`, each `[*batch, H]`."""

    h: jax.Array
    c: jax.Array


def _layer_norm(a, scale, bias=None, eps=1e-5):
    mean = jnp.mean(a, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)
    out = (a - mean) * jax.lax.rsqrt(var + eps) * scale
    return out if bias is None else out + bias


@register("lstm_layernorm", defaults={"layer_norm": True}, reference=reference.lstm_layernorm)
@register("lstm_peephole", defaults={"peephole": True}, reference=reference.lstm)
@register("lstm", reference=reference.lstm)
def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    peephole: bool = False,
    layer_norm: bool = False,
    dtype: DTypeLike = jnp.float32,
) -> base.Cell:
    """LSTM cell (see the module docstring for the equations and the variants).

    Args:
      hidden_size: H, the size of `h`, `c` and the output.
      forget_bias: initial value of the forget-gate bias (default 1.0).
      peephole: add peephole connections from the cell state to the gates.
      layer_norm: layer-normalise the gate pre-activations and the cell state.
      dtype: parameter and state dtype.

    Registered as "lstm", "lstm_peephole" and "lstm_layernorm".
    """
    H = base.check_hidden_size("lstm", hidden_size)
    dtype = base.check_dtype("lstm", dtype)
    if layer_norm and H < 2:
        raise ValueError(
            f"lstm: layer_norm=True needs hidden_size >= 2 (a layer norm over one unit is constant: "
            f"the cell state would not reach the output), got hidden_size={H}"
        )

    def init(key, input_size):
        input_size = base.check_input_size(input_size)
        k_x, k_h = jax.random.split(key)
        b = jnp.zeros(4 * H, dtype).at[H : 2 * H].set(forget_bias)
        params = {
            "w_x": base.input_kernel(k_x, input_size, 4 * H, dtype),
            "w_h": base.recurrent_kernel(k_h, H, 4, dtype),
            "b": b,
        }
        if peephole:
            params["peephole"] = jnp.zeros(3 * H, dtype)
        if layer_norm:
            params.update(
                ln_x_scale=jnp.ones(4 * H, dtype),
                ln_h_scale=jnp.ones(4 * H, dtype),
                ln_c_scale=jnp.ones(H, dtype),
                ln_c_bias=jnp.zeros(H, dtype),
            )
        return params

    def initial_carry(params, batch_shape=()):
        zeros = base.zeros_carry(params["w_h"].dtype, batch_shape, H)
        return LSTMState(h=zeros, c=zeros)

    def step(params, carry, x):
        if layer_norm:
            a = (
                _layer_norm(x @ params["w_x"], params["ln_x_scale"])
                + _layer_norm(carry.h @ params["w_h"], params["ln_h_scale"])
                + params["b"]
            )
        else:
            a = x @ params["w_x"] + carry.h @ params["w_h"] + params["b"]
        a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
        if peephole:
            p_i, p_f, p_o = jnp.split(params["peephole"], 3)
            a_i = a_i + p_i * carry.c
            a_f = a_f + p_f * carry.c
        c = jax.nn.sigmoid(a_f) * carry.c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
        if peephole:
            a_o = a_o + p_o * c
        c_out = _layer_norm(c, params["ln_c_scale"], params["ln_c_bias"]) if layer_norm else c
        h = jax.nn.sigmoid(a_o) * jnp.tanh(c_out)
        return LSTMState(h=h, c=c), h

    def sequence(params, xs, carry, mask, reverse):
        # cuDNN on a GPU for float32 (rnnjax/_kernels/cudnn_lstm.py), the blocked kernel elsewhere
        run = cudnn_lstm.lstm_sequence if cudnn_lstm.applies(xs) else lstm_kernel.lstm_sequence
        hs, h, c = run(params, xs, carry.h, carry.c, mask, reverse)
        return LSTMState(h=h, c=c), hs

    return base.Cell(
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_spec=base.spec_from_weight("w_x"),
        name="lstm",
        hidden_size=H,
        output_size=H,
        config={
            "hidden_size": H,
            "forget_bias": forget_bias,
            "peephole": peephole,
            "layer_norm": layer_norm,
            "dtype": dtype,
        },
        # the plain LSTM has a sequence kernel (rnnjax/_kernels/lstm.py); the variants use the scan
        sequence=None if peephole or layer_norm else sequence,
    )
