"""Manual BPTT for the LSTM, in NumPy float64.

Forward, for t = 1..T, with gates in the order i, f, g, o:
    [a_i, a_f, a_g, a_o] = x_t W_x + h_{t-1} W_h + b
    i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t),   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def lstm(params, xs, carry0, dys, d_carry_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (h0, c0)`, `dys [T, H]`, `d_carry_final = (dh_T, dc_T)`."""
    w_x, w_h, b = f64(params["w_x"]), f64(params["w_h"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], w_h.shape[0]

    # forward, caching the gates and states the backward pass needs
    hs, cs, gates = [f64(carry0[0])], [f64(carry0[1])], []
    for t in range(T):
        a = xs[t] @ w_x + hs[-1] @ w_h + b
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
        cs.append(f * cs[-1] + i * g)
        hs.append(o * np.tanh(cs[-1]))
        gates.append((i, f, g, o))

    d_w_x, d_w_h, d_b = np.zeros_like(w_x), np.zeros_like(w_h), np.zeros_like(b)
    d_xs = np.zeros_like(xs)
    dh_next, dc_next = f64(d_carry_final[0]), f64(d_carry_final[1])
    for t in reversed(range(T)):
        i, f, g, o = gates[t]
        c, c_prev, h_prev = cs[t + 1], cs[t], hs[t]
        tanh_c = np.tanh(c)
        dh = dys[t] + dh_next  # h_t is the output and feeds step t + 1
        # h_t = o * tanh(c_t)
        do = dh * tanh_c
        dc = dc_next + dh * o * (1.0 - tanh_c**2)  # c_t reaches the loss through h_t and through c_{t+1}
        # c_t = f * c_{t-1} + i * g
        df, di, dg = dc * c_prev, dc * g, dc * i
        dc_next = dc * f
        # backprop through the gate nonlinearities to the pre-activations
        da = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), dg * (1.0 - g**2), do * o * (1.0 - o)])
        # a = x_t W_x + h_{t-1} W_h + b
        d_w_x += np.outer(xs[t], da)
        d_w_h += np.outer(h_prev, da)
        d_b += da
        d_xs[t] = da @ w_x.T
        dh_next = da @ w_h.T

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)),
        carry=(hs[-1], cs[-1]),
        d_params={"w_x": d_w_x, "w_h": d_w_h, "b": d_b},
        d_carry=(dh_next, dc_next),
        d_xs=d_xs,
    )
