"""Manual BPTT for KDA (Kimi Delta Attention), in NumPy float64.

Forward, for t = 1..T, per value head h (key-major state S[h] of shape [d, d]); Hk query/key heads,
each serving a group of Hv / Hk value heads (`expand` repeats a key head for its group):
    q = expand(l2norm(x_t W_q)),  k = expand(l2norm(x_t W_k)),  v = x_t W_v
    f = x_t W_f1 W_f2 + dt_bias                                        ([Hv, d])
    g = -exp(A_log) softplus(f),   alpha = exp(g)                      (a decay per key dimension)
    beta = c sigmoid(x_t w_beta + b_beta)                              (c = 2 with negative eigenvalues)
    S' = alpha * S_{t-1}  (rows scaled),   r = S'^T k
    S_t = S' + beta outer(k, v - r),   y_t = concat(S_t^T q)
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.deltanet import _l2norm, _l2norm_backward
from rnnjax.reference.result import BPTTResult, f64, sigmoid, softplus


def kda(
    params, xs, carry0, dys, d_carry_final, *, num_heads, num_value_heads=None, negative_eigenvalues=False, **_config
) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [Hv, d, d], None)`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D = xs.shape[0], p["w_v"].shape[1]
    Hk = num_heads
    Hv = num_value_heads or num_heads
    d, group = D // Hv, Hv // Hk
    c = 2.0 if negative_eigenvalues else 1.0
    A = np.exp(p["a_log"])[:, None]  # [Hv, 1]

    def expand(a):  # [Hk, d] -> [Hv, d]
        return np.repeat(a, group, axis=0)

    def contract(da):  # the gradient of `expand`
        return da.reshape(Hk, group, d).sum(axis=1)

    Ss, cache = [f64(carry0[0])], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        q, q_norm = _l2norm((x @ p["w_q"]).reshape(Hk, d))
        k, k_norm = _l2norm((x @ p["w_k"]).reshape(Hk, d))
        v = (x @ p["w_v"]).reshape(Hv, d)
        low = x @ p["w_f1"]
        f = (low @ p["w_f2"] + p["dt_bias"]).reshape(Hv, d)
        g = -A * softplus(f)
        alpha = np.exp(g)
        sig = sigmoid(x @ p["w_beta"] + p["b_beta"])
        beta = c * sig
        S_dec = alpha[:, :, None] * Ss[-1]  # decay first, per key dimension
        r = np.einsum("hkv,hk->hv", S_dec, expand(k))
        S = S_dec + beta[:, None, None] * expand(k)[:, :, None] * (v - r)[:, None, :]
        ys[t] = np.einsum("hkv,hk->hv", S, expand(q)).reshape(D)
        Ss.append(S)
        cache.append((q, q_norm, k, k_norm, v, low, f, g, alpha, sig, beta, S_dec, r))

    d_p = {name: np.zeros_like(a) for name, a in p.items()}
    d_xs = np.zeros_like(xs)
    dS = f64(d_carry_final[0])
    for t in reversed(range(T)):
        x = xs[t]
        q, q_norm, k, k_norm, v, low, f, g, alpha, sig, beta, S_dec, r = cache[t]
        kx, S = expand(k), Ss[t + 1]
        do = dys[t].reshape(Hv, d)
        # y = S_t^T expand(q)
        dS = dS + expand(q)[:, :, None] * do[:, None, :]
        dq = contract(np.einsum("hkv,hv->hk", S, do))
        # S_t = S' + beta outer(k, e), e = v - r
        e = v - r
        d_beta = np.einsum("hk,hkv,hv->h", kx, dS, e)
        dk = beta[:, None] * np.einsum("hkv,hv->hk", dS, e)
        de = beta[:, None] * np.einsum("hkv,hk->hv", dS, kx)
        dv = de
        # r = S'^T k
        dr = -de
        dk = dk + np.einsum("hkv,hv->hk", S_dec, dr)
        dS_dec = dS + kx[:, :, None] * dr[:, None, :]
        # S' = alpha * S_{t-1}
        d_alpha = np.sum(dS_dec * Ss[t], axis=2)  # [Hv, d]
        dS = alpha[:, :, None] * dS_dec
        # alpha = exp(g), g = -A softplus(f)
        dg = d_alpha * alpha
        d_p["a_log"] += np.sum(dg * g, axis=1)
        df = (dg * -A * sigmoid(f)).reshape(D)
        d_p["dt_bias"] += df
        d_p["w_f2"] += np.outer(low, df)
        d_low = df @ p["w_f2"].T
        # beta = c sigmoid(pre)
        d_beta_pre = d_beta * beta * (1.0 - sig)
        d_p["b_beta"] += d_beta_pre
        grads = {
            "w_q": _l2norm_backward(dq, q, q_norm).reshape(Hk * d),
            "w_k": _l2norm_backward(contract(dk), k, k_norm).reshape(Hk * d),
            "w_v": dv.reshape(D),
            "w_f1": d_low,
            "w_beta": d_beta_pre,
        }
        for name, grad in grads.items():
            d_p[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(ys=ys, carry=(Ss[-1], None), d_params=d_p, d_carry=(dS, None), d_xs=d_xs)
