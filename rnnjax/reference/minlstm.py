"""Manual BPTT for minLSTM, in NumPy float64.

Forward, for t = 1..T:
    [a_f, a_i, h~] = x_t W_x + b,   f = sigmoid(a_f),  i = sigmoid(a_i)
    h_t = f / (f + i) * h_{t-1} + i / (f + i) * h~,   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def minlstm(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]`."""
    w_x, b = f64(params["w_x"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], b.shape[0] // 3
    hs, cache = [f64(h0)], []
    for t in range(T):
        a = xs[t] @ w_x + b
        f, i, h_tilde = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), a[2 * H :]
        s = f + i
        hs.append(f / s * hs[-1] + i / s * h_tilde)
        cache.append((f, i, s, h_tilde))

    d_w_x, d_b, d_xs = np.zeros_like(w_x), np.zeros_like(b), np.zeros_like(xs)
    dh_next = f64(dh_final)
    for t in reversed(range(T)):
        f, i, s, h_tilde = cache[t]
        dh = dys[t] + dh_next
        # h_t = (f h_{t-1} + i h~) / s, s = f + i
        num = f * hs[t] + i * h_tilde
        ds = -dh * num / s**2
        df = dh * hs[t] / s + ds
        di = dh * h_tilde / s + ds
        dh_tilde = dh * i / s
        dh_next = dh * f / s
        # the sigmoid gates; h~ is affine in x
        da = np.concatenate([df * f * (1.0 - f), di * i * (1.0 - i), dh_tilde])
        d_w_x += np.outer(xs[t], da)
        d_b += da
        d_xs[t] = da @ w_x.T

    ys = np.stack(hs[1:]) if T else np.zeros((0, H))
    return BPTTResult(ys=ys, carry=hs[-1], d_params={"w_x": d_w_x, "b": d_b}, d_carry=dh_next, d_xs=d_xs)
