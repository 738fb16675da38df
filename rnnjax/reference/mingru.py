"""Manual BPTT for minGRU, in NumPy float64.

Forward, for t = 1..T:
    [a_z, h~] = x_t W_x + b,   z = sigmoid(a_z)
    h_t = (1 - z) * h_{t-1} + z * h~,   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def mingru(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]`."""
    w_x, b = f64(params["w_x"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], b.shape[0] // 2

    hs, cache = [f64(h0)], []
    for t in range(T):
        u = xs[t] @ w_x + b
        z, h_tilde = sigmoid(u[:H]), u[H:]
        hs.append((1.0 - z) * hs[-1] + z * h_tilde)
        cache.append((z, h_tilde))

    d_w_x, d_b, d_xs = np.zeros_like(w_x), np.zeros_like(b), np.zeros_like(xs)
    dh_next = f64(dh_final)
    for t in reversed(range(T)):
        z, h_tilde = cache[t]
        h_prev = hs[t]
        dh = dys[t] + dh_next
        # h_t = (1 - z) * h_{t-1} + z * h~: linear in h_{t-1}, so the carry gradient is just scaled by 1 - z
        dz = dh * (h_tilde - h_prev)
        dh_tilde = dh * z
        dh_next = dh * (1.0 - z)
        # backprop through the sigmoid; h~ is affine in x, no nonlinearity
        du = np.concatenate([dz * z * (1.0 - z), dh_tilde])
        d_w_x += np.outer(xs[t], du)
        d_b += du
        d_xs[t] = du @ w_x.T

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)),
        carry=hs[-1],
        d_params={"w_x": d_w_x, "b": d_b},
        d_carry=dh_next,
        d_xs=d_xs,
    )
