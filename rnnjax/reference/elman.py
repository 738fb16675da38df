"""Manual BPTT for the Elman RNN, in NumPy float64.

Forward, for t = 1..T:   a_t = x_t W_x + h_{t-1} W_h + b,   h_t = f(a_t),   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def elman(params, xs, h0, dys, dh_final, *, activation: str = "tanh", **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]` (dL/dh_T)."""
    w_x, w_h, b = f64(params["w_x"]), f64(params["w_h"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T = xs.shape[0]

    # forward, keeping every h_t; hs[t + 1] is h_t and hs[0] is h_0
    hs = [f64(h0)]
    for t in range(T):
        a = xs[t] @ w_x + hs[-1] @ w_h + b
        if activation == "tanh":
            hs.append(np.tanh(a))
        elif activation == "sigmoid":
            hs.append(sigmoid(a))
        elif activation == "relu":
            hs.append(np.maximum(a, 0.0))
        else:
            raise ValueError(f"reference.elman: unknown activation {activation!r}")

    d_w_x, d_w_h, d_b = np.zeros_like(w_x), np.zeros_like(w_h), np.zeros_like(b)
    d_xs = np.zeros_like(xs)
    dh_next = f64(dh_final)  # dL/dh_t arriving from step t + 1 (at t = T: from the final carry)
    for t in reversed(range(T)):
        h, h_prev = hs[t + 1], hs[t]
        dh = dys[t] + dh_next  # h_t is both the output y_t and the next step's input
        # backprop through the activation, written in terms of its output h
        if activation == "tanh":
            da = dh * (1.0 - h**2)
        elif activation == "sigmoid":
            da = dh * h * (1.0 - h)
        else:  # relu
            da = dh * (h > 0.0)
        # a_t = x_t W_x + h_{t-1} W_h + b: each weight gets the outer product with its input
        d_w_x += np.outer(xs[t], da)
        d_w_h += np.outer(h_prev, da)
        d_b += da
        d_xs[t] = da @ w_x.T
        dh_next = da @ w_h.T  # gradient flowing back to h_{t-1}

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, w_h.shape[0])),
        carry=hs[-1],
        d_params={"w_x": d_w_x, "w_h": d_w_h, "b": d_b},
        d_carry=dh_next,
        d_xs=d_xs,
    )
