"""Manual BPTT for GLA (gated linear attention), in NumPy float64.

Forward, for t = 1..T, per head h (key-major state S[h] of shape [dk, dv]):
    q = x_t W_q / sqrt(dk),  k = x_t W_k,  v = x_t W_v,   split into heads
    z = (x_t W_a1) W_a2 + b_a,   log_alpha = log_sigmoid(z) / tau,   alpha = exp(log_alpha)
    S_t[h] = alpha[h, :, None] * S_{t-1}[h] + outer(k[h], v[h])
    o[h] = S_t[h]^T q[h],   g = x_t W_g,   y_t = concat(o) * silu(g)
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, log_sigmoid, sigmoid


def gla(params, xs, carry0, dys, d_carry_final, *, num_heads, gate_normalizer, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [H, dk, dv], None)`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D, H = xs.shape[0], p["w_q"].shape[1], num_heads
    dh = D // H
    scale, tau = dh**-0.5, gate_normalizer

    Ss, cache = [f64(carry0[0])], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        q = (x @ p["w_q"]).reshape(H, dh) * scale
        k = (x @ p["w_k"]).reshape(H, dh)
        v = (x @ p["w_v"]).reshape(H, dh)
        a1 = x @ p["w_a1"]
        z = a1 @ p["w_a2"] + p["b_a"]
        alpha = np.exp(log_sigmoid(z) / tau).reshape(H, dh)
        S = alpha[:, :, None] * Ss[-1] + k[:, :, None] * v[:, None, :]
        o = np.einsum("hkv,hk->hv", S, q).reshape(D)
        g = x @ p["w_g"]
        ys[t] = o * g * sigmoid(g)
        Ss.append(S)
        cache.append((q, k, v, a1, z, alpha, o, g))

    d = {name: np.zeros_like(a) for name, a in p.items()}
    d_xs = np.zeros_like(xs)
    dS = f64(d_carry_final[0])  # dL/dS_t, from the steps after t
    for t in reversed(range(T)):
        x = xs[t]
        q, k, v, a1, z, alpha, o, g = cache[t]
        S_prev, S = Ss[t], Ss[t + 1]
        # y = o * silu(g), silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g)))
        sg = sigmoid(g)
        do = (dys[t] * g * sg).reshape(H, dh)
        dg = dys[t] * o * sg * (1.0 + g * (1.0 - sg))
        # o[h] = S_t[h]^T q[h]: the read adds to the state's gradient
        dS = dS + q[:, :, None] * do[:, None, :]
        dq = np.einsum("hkv,hv->hk", S, do)
        # S_t = alpha * S_{t-1} + k v^T
        d_alpha = np.sum(dS * S_prev, axis=2)
        dk = np.einsum("hkv,hv->hk", dS, v)
        dv = np.einsum("hkv,hk->hv", dS, k)
        dS = alpha[:, :, None] * dS  # to S_{t-1}
        # alpha = exp(log_sigmoid(z) / tau); d log_sigmoid(z) / dz = 1 - sigmoid(z)
        dz = (d_alpha * alpha).reshape(D) / tau * (1.0 - sigmoid(z))
        da1 = dz @ p["w_a2"].T
        # the projections are linear in x
        dq_pre, dk_pre, dv_pre = (dq * scale).reshape(D), dk.reshape(D), dv.reshape(D)
        for name, grad in (("w_q", dq_pre), ("w_k", dk_pre), ("w_v", dv_pre), ("w_g", dg), ("w_a1", da1)):
            d[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T
        d["w_a2"] += np.outer(a1, dz)
        d["b_a"] += dz

    return BPTTResult(ys=ys, carry=(Ss[-1], None), d_params=d, d_carry=(dS, None), d_xs=d_xs)
