"""Manual BPTT for the minimal gated unit, in NumPy float64.

Forward, for t = 1..T:
    [u_f, u_h] = x_t W_x + b,   f = sigmoid(u_f + h_{t-1} U_f)
    h~ = tanh(u_h + (f * h_{t-1}) U_h),   h_t = (1 - f) * h_{t-1} + f * h~,   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def mgu(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]`."""
    w_x, w_h, b = f64(params["w_x"]), f64(params["w_h"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], w_h.shape[0]
    w_hf, w_hh = w_h[:, :H], w_h[:, H:]
    hs, cache = [f64(h0)], []
    for t in range(T):
        u = xs[t] @ w_x + b
        f = sigmoid(u[:H] + hs[-1] @ w_hf)
        h_tilde = np.tanh(u[H:] + (f * hs[-1]) @ w_hh)
        hs.append((1.0 - f) * hs[-1] + f * h_tilde)
        cache.append((f, h_tilde))

    d_w_x, d_w_h, d_b, d_xs = np.zeros_like(w_x), np.zeros_like(w_h), np.zeros_like(b), np.zeros_like(xs)
    dh_next = f64(dh_final)
    for t in reversed(range(T)):
        f, h_tilde = cache[t]
        h_prev = hs[t]
        dh = dys[t] + dh_next
        # h_t = (1 - f) h_{t-1} + f h~
        df = dh * (h_tilde - h_prev)
        dh_tilde = dh * f
        dh_prev = dh * (1.0 - f)
        # h~ = tanh(u_h + (f * h_{t-1}) U_h)
        da_h = dh_tilde * (1.0 - h_tilde**2)
        d_fh = da_h @ w_hh.T  # gradient of the reset product f * h_{t-1}
        df = df + d_fh * h_prev
        dh_prev = dh_prev + d_fh * f
        # f = sigmoid(u_f + h_{t-1} U_f)
        da_f = df * f * (1.0 - f)
        dh_prev = dh_prev + da_f @ w_hf.T
        du = np.concatenate([da_f, da_h])
        d_w_x += np.outer(xs[t], du)
        d_b += du
        d_w_h += np.concatenate([np.outer(h_prev, da_f), np.outer(f * h_prev, da_h)], axis=1)
        d_xs[t] = du @ w_x.T
        dh_next = dh_prev

    ys = np.stack(hs[1:]) if T else np.zeros((0, H))
    return BPTTResult(ys=ys, carry=hs[-1], d_params={"w_x": d_w_x, "w_h": d_w_h, "b": d_b}, d_carry=dh_next, d_xs=d_xs)
