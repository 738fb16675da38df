"""Manual BPTT for the GRU, in NumPy float64.

Forward, for t = 1..T (the flax / PyTorch / cuDNN GRU, gates in the order r, z, n):
    [u_r, u_z, u_n] = x_t W_x + b          [v_r, v_z, v_n] = h_{t-1} W_h
    r = sigmoid(u_r + v_r),   z = sigmoid(u_z + v_z)
    n = tanh(u_n + r * (v_n + b_hn))
    h_t = (1 - z) * n + z * h_{t-1},   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid


def gru(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]`."""
    w_x, w_h, b, b_hn = (f64(params[k]) for k in ("w_x", "w_h", "b", "b_hn"))
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], w_h.shape[0]

    hs, cache = [f64(h0)], []
    for t in range(T):
        u = xs[t] @ w_x + b
        v = hs[-1] @ w_h
        r = sigmoid(u[:H] + v[:H])
        z = sigmoid(u[H : 2 * H] + v[H : 2 * H])
        m = v[2 * H :] + b_hn  # the hidden part of the candidate, before the reset gate
        n = np.tanh(u[2 * H :] + r * m)
        hs.append((1.0 - z) * n + z * hs[-1])
        cache.append((r, z, n, m))

    d_w_x, d_w_h = np.zeros_like(w_x), np.zeros_like(w_h)
    d_b, d_b_hn = np.zeros_like(b), np.zeros_like(b_hn)
    d_xs = np.zeros_like(xs)
    dh_next = f64(dh_final)
    for t in reversed(range(T)):
        r, z, n, m = cache[t]
        h_prev = hs[t]
        dh = dys[t] + dh_next
        # h_t = (1 - z) * n + z * h_{t-1}
        dn = dh * (1.0 - z)
        dz = dh * (h_prev - n)
        dh_prev = dh * z  # the direct (gated identity) path to h_{t-1}
        # n = tanh(u_n + r * m)
        da_n = dn * (1.0 - n**2)
        dr = da_n * m
        dm = da_n * r
        # backprop through the sigmoid gates
        da_r = dr * r * (1.0 - r)
        da_z = dz * z * (1.0 - z)
        du = np.concatenate([da_r, da_z, da_n])  # u = x_t W_x + b
        dv = np.concatenate([da_r, da_z, dm])  # v = h_{t-1} W_h, and m = v_n + b_hn
        d_w_x += np.outer(xs[t], du)
        d_b += du
        d_w_h += np.outer(h_prev, dv)
        d_b_hn += dm
        d_xs[t] = du @ w_x.T
        dh_next = dh_prev + dv @ w_h.T

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)),
        carry=hs[-1],
        d_params={"w_x": d_w_x, "w_h": d_w_h, "b": d_b, "b_hn": d_b_hn},
        d_carry=dh_next,
        d_xs=d_xs,
    )
