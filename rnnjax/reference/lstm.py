"""Manual BPTT for the LSTM, in NumPy float64.

Forward, for t = 1..T, with gates in the order i, f, g, o:
    [a_i, a_f, a_g, a_o] = x_t W_x + h_{t-1} W_h + b
    i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t),   y_t = h_t

With peepholes (`peephole=True`), the gates also read the cell state:
    a_i += p_i * c_{t-1},   a_f += p_f * c_{t-1},   a_o += p_o * c_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def lstm(params, xs, carry0, dys, d_carry_final, *, peephole=False, layer_norm=False, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (h0, c0)`, `dys [T, H]`, `d_carry_final = (dh_T, dc_T)`."""
    if layer_norm:
        raise ValueError("reference.lstm: the layer-normalised LSTM's reference is reference.lstm_layernorm")
    w_x, w_h, b = f64(params["w_x"]), f64(params["w_h"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], w_h.shape[0]
    p_i, p_f, p_o = np.split(f64(params["peephole"]), 3) if peephole else (np.zeros(H),) * 3

    # forward, caching the gates and states the backward pass needs
    hs, cs, gates = [f64(carry0[0])], [f64(carry0[1])], []
    for t in range(T):
        a = xs[t] @ w_x + hs[-1] @ w_h + b
        i = sigmoid(a[:H] + p_i * cs[-1])
        f = sigmoid(a[H : 2 * H] + p_f * cs[-1])
        g = np.tanh(a[2 * H : 3 * H])
        cs.append(f * cs[-1] + i * g)
        o = sigmoid(a[3 * H :] + p_o * cs[-1])
        hs.append(o * np.tanh(cs[-1]))
        gates.append((i, f, g, o))

    d_w_x, d_w_h, d_b = np.zeros_like(w_x), np.zeros_like(w_h), np.zeros_like(b)
    d_p_i, d_p_f, d_p_o = np.zeros(H), np.zeros(H), np.zeros(H)
    d_xs = np.zeros_like(xs)
    dh_next, dc_next = f64(d_carry_final[0]), f64(d_carry_final[1])
    for t in reversed(range(T)):
        i, f, g, o = gates[t]
        c, c_prev, h_prev = cs[t + 1], cs[t], hs[t]
        tanh_c = np.tanh(c)
        dh = dys[t] + dh_next  # h_t is the output and feeds step t + 1
        # h_t = o * tanh(c_t)
        do = dh * tanh_c
        da_o = do * o * (1.0 - o)  # backprop through the output gate's sigmoid
        # c_t reaches the loss through h_t, through c_{t+1}, and (peephole) through a_o
        dc = dc_next + dh * o * (1.0 - tanh_c**2) + da_o * p_o
        # c_t = f * c_{t-1} + i * g
        df, di, dg = dc * c_prev, dc * g, dc * i
        # backprop through the other gate nonlinearities to the pre-activations
        da_i, da_f, da_g = di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2)
        dc_next = dc * f + da_i * p_i + da_f * p_f  # c_{t-1} feeds c_t, and (peephole) a_i and a_f
        d_p_i += da_i * c_prev
        d_p_f += da_f * c_prev
        d_p_o += da_o * c
        da = np.concatenate([da_i, da_f, da_g, da_o])
        # a = x_t W_x + h_{t-1} W_h + b
        d_w_x += np.outer(xs[t], da)
        d_w_h += np.outer(h_prev, da)
        d_b += da
        d_xs[t] = da @ w_x.T
        dh_next = da @ w_h.T

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)),
        carry=(hs[-1], cs[-1]),
        d_params={"w_x": d_w_x, "w_h": d_w_h, "b": d_b}
        | ({"peephole": np.concatenate([d_p_i, d_p_f, d_p_o])} if peephole else {}),
        d_carry=(dh_next, dc_next),
        d_xs=d_xs,
    )
