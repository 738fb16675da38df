"""Manual BPTT for DeltaNet and Gated DeltaNet, in NumPy float64.

Forward, for t = 1..T, per head h (key-major state S[h] of shape [dk, dv]):
    q = l2norm(x_t W_q),  k = l2norm(x_t W_k),  v = x_t W_v,   split into heads; l2norm(a) = a / sqrt(|a|^2 + eps)
    beta = sigmoid(x_t w_beta + b_beta)                                         ([H])
    alpha = 1, or (gated) exp(-exp(A_log) * softplus(x_t w_a + dt_bias))         ([H])
    r = S_{t-1}^T k,   P = S_{t-1} - beta outer(k, r)                            (erase what k points at)
    S_t = alpha P + beta outer(k, v),   y_t = concat(S_t^T q)
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid, softplus

L2_EPS = 1e-6


def _l2norm(a):
    norm = np.sqrt(np.sum(a * a, axis=-1, keepdims=True) + L2_EPS)
    return a / norm, norm


def _l2norm_backward(d_out, out, norm):
    # out = a / norm, norm = sqrt(|a|^2 + eps): d a = (d_out - out (out . d_out)) / norm
    return (d_out - out * np.sum(out * d_out, axis=-1, keepdims=True)) / norm


def deltanet(params, xs, carry0, dys, d_carry_final, *, num_heads, gated=False, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [H, dk, dv], None)`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D, H = xs.shape[0], p["w_q"].shape[1], num_heads
    dh = D // H
    Ss, cache = [f64(carry0[0])], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        q, q_norm = _l2norm((x @ p["w_q"]).reshape(H, dh))
        k, k_norm = _l2norm((x @ p["w_k"]).reshape(H, dh))
        v = (x @ p["w_v"]).reshape(H, dh)
        beta = sigmoid(x @ p["w_beta"] + p["b_beta"])
        if gated:
            z = x @ p["w_a"] + p["dt_bias"]
            log_alpha = -np.exp(p["a_log"]) * softplus(z)
        else:
            z, log_alpha = None, np.zeros(H)
        alpha = np.exp(log_alpha)
        r = np.einsum("hkv,hk->hv", Ss[-1], k)
        P_ = Ss[-1] - beta[:, None, None] * k[:, :, None] * r[:, None, :]
        S = alpha[:, None, None] * P_ + beta[:, None, None] * k[:, :, None] * v[:, None, :]
        ys[t] = np.einsum("hkv,hk->hv", S, q).reshape(D)
        Ss.append(S)
        cache.append((q, q_norm, k, k_norm, v, beta, z, log_alpha, alpha, r, P_))

    d = {name: np.zeros_like(a) for name, a in p.items()}
    d_xs = np.zeros_like(xs)
    dS = f64(d_carry_final[0])
    for t in reversed(range(T)):
        x = xs[t]
        q, q_norm, k, k_norm, v, beta, z, log_alpha, alpha, r, P_ = cache[t]
        S_prev, S = Ss[t], Ss[t + 1]
        do = dys[t].reshape(H, dh)
        # o = S_t^T q
        dS = dS + q[:, :, None] * do[:, None, :]
        dq = np.einsum("hkv,hv->hk", S, do)
        # S_t = alpha P + beta outer(k, v)
        d_alpha = np.sum(dS * P_, axis=(1, 2))
        dP = alpha[:, None, None] * dS
        d_beta = np.einsum("hk,hkv,hv->h", k, dS, v)
        dk = beta[:, None] * np.einsum("hkv,hv->hk", dS, v)
        dv = beta[:, None] * np.einsum("hkv,hk->hv", dS, k)
        # P = S_{t-1} - beta outer(k, r),  r = S_{t-1}^T k
        dS = dP.copy()
        d_beta = d_beta - np.einsum("hk,hkv,hv->h", k, dP, r)
        dk = dk - beta[:, None] * np.einsum("hkv,hv->hk", dP, r)
        dr = -beta[:, None] * np.einsum("hkv,hk->hv", dP, k)
        dS = dS + k[:, :, None] * dr[:, None, :]
        dk = dk + np.einsum("hkv,hv->hk", S_prev, dr)
        # beta = sigmoid(.)
        d_beta_pre = d_beta * beta * (1.0 - beta)
        grads = {
            "w_q": _l2norm_backward(dq, q, q_norm).reshape(D),
            "w_k": _l2norm_backward(dk, k, k_norm).reshape(D),
            "w_v": dv.reshape(D),
            "w_beta": d_beta_pre,
        }
        d["b_beta"] += d_beta_pre
        if gated:
            # alpha = exp(log_alpha), log_alpha = -exp(A_log) softplus(z)
            d_log_alpha = d_alpha * alpha
            d["a_log"] += d_log_alpha * log_alpha
            dz = d_log_alpha * -np.exp(p["a_log"]) * sigmoid(z)
            d["dt_bias"] += dz
            grads["w_a"] = dz
        for name, grad in grads.items():
            d[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(ys=ys, carry=(Ss[-1], None), d_params=d, d_carry=(dS, None), d_xs=d_xs)
