"""Manual BPTT for S6 (Mamba's selective SSM), in NumPy float64.

Forward, for t = 1..T (state h [H, N]):
    u = x_t W_u,  z = (x_t W_dt1) W_dt2 + dt_bias,  delta = softplus(z),  b = x_t W_B,  c = x_t W_C
    A = -exp(A_log),  abar = exp(delta[:, None] * A)
    h_t = abar * h_{t-1} + outer(delta * u, b),   y_t = h_t c + d * u
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid, softplus


def s6(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H, N]`, `dys [T, H]`, `dh_final [H, N]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], p["d"].shape[0]
    A = -np.exp(p["a_log"])
    hs, cache = [f64(h0)], []
    ys = np.zeros((T, H))
    for t in range(T):
        x = xs[t]
        u, r = x @ p["w_u"], x @ p["w_dt1"]
        z = r @ p["w_dt2"] + p["dt_bias"]
        delta = softplus(z)
        b, c = x @ p["w_b"], x @ p["w_c"]
        abar = np.exp(delta[:, None] * A)
        h = abar * hs[-1] + np.outer(delta * u, b)
        ys[t] = h @ c + p["d"] * u
        hs.append(h)
        cache.append((u, r, z, delta, b, c, abar))

    d = {name: np.zeros_like(v) for name, v in p.items()}
    d_xs = np.zeros_like(xs)
    dh = f64(dh_final)
    for t in reversed(range(T)):
        x = xs[t]
        u, r, z, delta, b, c, abar = cache[t]
        h_prev, h = hs[t], hs[t + 1]
        dy = dys[t]
        # y = h c + d u
        dh = dh + np.outer(dy, c)
        dc = dy @ h
        d["d"] += dy * u
        du = dy * p["d"]
        # h_t = abar h_{t-1} + outer(delta u, b)
        dabar = dh * h_prev
        dw = dh @ b  # w = delta * u
        db = (delta * u) @ dh
        dh = abar * dh  # to h_{t-1}
        ddelta = dw * u
        du = du + dw * delta
        # abar = exp(delta A), A = -exp(A_log)
        dlog = dabar * abar  # d/d(delta A)
        ddelta = ddelta + np.sum(dlog * A, axis=1)
        d["a_log"] += dlog * delta[:, None] * A
        # delta = softplus(z), z = r W_dt2 + dt_bias, r = x W_dt1
        dz = ddelta * sigmoid(z)
        d["dt_bias"] += dz
        d["w_dt2"] += np.outer(r, dz)
        dr = dz @ p["w_dt2"].T
        for name, grad in (("w_u", du), ("w_dt1", dr), ("w_b", db), ("w_c", dc)):
            d[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(ys=ys, carry=hs[-1], d_params=d, d_carry=dh, d_xs=d_xs)
