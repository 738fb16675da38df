"""Manual BPTT for IndRNN, in NumPy float64.

Forward, for t = 1..T:
    a = x_t W_x + u * h_{t-1} + b,   h_t = f(a),   y_t = h_t       (f = relu or tanh)
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64


def indrnn(params, xs, h0, dys, dh_final, *, activation="relu", **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]`."""
    w_x, u, b = f64(params["w_x"]), f64(params["u"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], b.shape[0]
    hs, pre = [f64(h0)], []
    for t in range(T):
        a = xs[t] @ w_x + u * hs[-1] + b
        pre.append(a)
        hs.append(np.maximum(a, 0.0) if activation == "relu" else np.tanh(a))

    d_w_x, d_u, d_b, d_xs = np.zeros_like(w_x), np.zeros_like(u), np.zeros_like(b), np.zeros_like(xs)
    dh_next = f64(dh_final)
    for t in reversed(range(T)):
        dh = dys[t] + dh_next
        # backprop through the activation (relu' = 1 where a > 0, as jax.nn.relu's gradient)
        da = dh * (pre[t] > 0) if activation == "relu" else dh * (1.0 - hs[t + 1] ** 2)
        # a = x W_x + u * h_{t-1} + b: each unit sees only its own past
        d_w_x += np.outer(xs[t], da)
        d_u += da * hs[t]
        d_b += da
        d_xs[t] = da @ w_x.T
        dh_next = da * u

    ys = np.stack(hs[1:]) if T else np.zeros((0, H))
    return BPTTResult(ys=ys, carry=hs[-1], d_params={"w_x": d_w_x, "u": d_u, "b": d_b}, d_carry=dh_next, d_xs=d_xs)
