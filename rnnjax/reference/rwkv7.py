"""Manual BPTT for RWKV-7 time mixing, in NumPy float64.

Forward, for t = 1..T, per head h (key-major state S[h] of shape [d, d]):
    r = x_t W_r,  k = x_t W_k,  v = x_t W_v                                   (split into heads)
    log w = -e^(-1/2) sigmoid(tanh(x_t W_w1) W_w2 + b_w),   w = exp(log w)     (a decay per key)
    a = sigmoid(x_t W_a1 W_a2 + b_a)
    kappa = l2norm(k * k_k),   k~ = k * (1 + (a - 1) * k_a)
    rd = S_{t-1}^T kappa                                                      (what the removal key reads)
    S_t = w * S_{t-1} - outer(a * kappa, rd) + outer(k~, v),   o = S_t^T r
    n = (o - mean(o)) / sqrt(var(o) + d 1e-5) * ln_w + ln_b                   (per head)
    y_t = concat(n + sum(r * k~ * r_k) v) * (sigmoid(x_t W_g1) W_g2)
"""

from __future__ import annotations

import math

import numpy as np

from rnnjax.reference.deltanet import _l2norm, _l2norm_backward
from rnnjax.reference.result import BPTTResult, f64, sigmoid

DECAY_SCALE = math.exp(-0.5)


def rwkv7(params, xs, carry0, dys, d_carry_final, *, num_heads, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [H, d, d], None)`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D, H = xs.shape[0], p["w_r"].shape[1], num_heads
    d = D // H
    eps = d * 1e-5

    def heads(a):
        return a.reshape(H, d)

    Ss, cache = [f64(carry0[0])], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        r, k, v = x @ p["w_r"], x @ p["w_k"], x @ p["w_v"]
        th = np.tanh(x @ p["w_w1"])
        sw = sigmoid(th @ p["w_w2"] + p["b_w"])
        w = heads(np.exp(-DECAY_SCALE * sw))
        low_a = x @ p["w_a1"]
        a = sigmoid(low_a @ p["w_a2"] + p["b_a"])
        kappa, k_norm = _l2norm(heads(k * p["k_k"]))
        k_mod = k * (1.0 + (a - 1.0) * p["k_a"])
        S_prev = Ss[-1]
        rd = np.einsum("hkv,hk->hv", S_prev, kappa)
        erase = heads(a) * kappa
        S = (
            w[:, :, None] * S_prev
            - erase[:, :, None] * rd[:, None, :]
            + heads(k_mod)[:, :, None] * heads(v)[:, None, :]
        )
        o = np.einsum("hkv,hk->hv", S, heads(r))
        mean = o.mean(axis=1, keepdims=True)
        sd = np.sqrt(((o - mean) ** 2).mean(axis=1, keepdims=True) + eps)
        xhat = (o - mean) / sd
        coef = np.sum(heads(r * k_mod * p["r_k"]), axis=1, keepdims=True)
        z = (xhat * heads(p["ln_w"]) + heads(p["ln_b"]) + coef * heads(v)).reshape(D)
        gl = sigmoid(x @ p["w_g1"])
        g = gl @ p["w_g2"]
        ys[t] = z * g
        Ss.append(S)
        cache.append((r, k, v, th, sw, w, low_a, a, kappa, k_norm, k_mod, rd, erase, xhat, sd, coef, z, gl, g))

    d_p = {name: np.zeros_like(a) for name, a in p.items()}
    d_xs = np.zeros_like(xs)
    dS = f64(d_carry_final[0])
    for t in reversed(range(T)):
        x = xs[t]
        r, k, v, th, sw, w, low_a, a, kappa, k_norm, k_mod, rd, erase, xhat, sd, coef, z, gl, g = cache[t]
        S_prev, S = Ss[t], Ss[t + 1]
        # y = z * g,  g = sigmoid(x W_g1) W_g2
        dz, dg = dys[t] * g, dys[t] * z
        d_p["w_g2"] += np.outer(gl, dg)
        d_pre_g = (dg @ p["w_g2"].T) * gl * (1.0 - gl)
        dz = heads(dz)
        # z = xhat ln_w + ln_b + coef v,   coef = sum(r k~ r_k) per head
        d_p["ln_w"] += (dz * xhat).reshape(D)
        d_p["ln_b"] += dz.reshape(D)
        dv = (coef * dz).reshape(D)
        d_coef = np.sum(dz * heads(v), axis=1, keepdims=True)
        dr = (d_coef * heads(k_mod * p["r_k"])).reshape(D)
        dk_mod = (d_coef * heads(r * p["r_k"])).reshape(D)
        d_p["r_k"] += (d_coef * heads(r * k_mod)).reshape(D)
        # group norm per head: xhat = (o - mean) / sd
        dxhat = dz * heads(p["ln_w"])
        do = (dxhat - dxhat.mean(axis=1, keepdims=True) - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)) / sd
        # o = S_t^T r
        dS = dS + heads(r)[:, :, None] * do[:, None, :]
        dr = dr + np.einsum("hkv,hv->hk", S, do).reshape(D)
        # S_t = w * S_{t-1} - outer(erase, rd) + outer(k~, v)
        dk_mod = dk_mod + np.einsum("hkv,hv->hk", dS, heads(v)).reshape(D)
        dv = dv + np.einsum("hkv,hk->hv", dS, heads(k_mod)).reshape(D)
        d_erase = -np.einsum("hkv,hv->hk", dS, rd)
        d_rd = -np.einsum("hkv,hk->hv", dS, erase)
        dw = np.sum(dS * S_prev, axis=2)
        dS_prev = w[:, :, None] * dS
        # rd = S_{t-1}^T kappa
        d_kappa = np.einsum("hkv,hv->hk", S_prev, d_rd)
        dS_prev = dS_prev + kappa[:, :, None] * d_rd[:, None, :]
        dS = dS_prev
        # erase = a kappa
        da = (d_erase * kappa).reshape(D)
        d_kappa = d_kappa + d_erase * heads(a)
        # kappa = l2norm(k * k_k)
        d_kk = _l2norm_backward(d_kappa, kappa, k_norm).reshape(D)
        dk = d_kk * p["k_k"]
        d_p["k_k"] += d_kk * k
        # k~ = k (1 + (a - 1) k_a)
        dk = dk + dk_mod * (1.0 + (a - 1.0) * p["k_a"])
        da = da + dk_mod * k * p["k_a"]
        d_p["k_a"] += dk_mod * k * (a - 1.0)
        # w = exp(-e^-1/2 sw),  sw = sigmoid(tanh(x W_w1) W_w2 + b_w)
        d_lora = (dw * w).reshape(D) * -DECAY_SCALE * sw * (1.0 - sw)
        d_p["b_w"] += d_lora
        d_p["w_w2"] += np.outer(th, d_lora)
        d_pre_w = (d_lora @ p["w_w2"].T) * (1.0 - th**2)
        # a = sigmoid(x W_a1 W_a2 + b_a)
        d_pre_a = da * a * (1.0 - a)
        d_p["b_a"] += d_pre_a
        d_p["w_a2"] += np.outer(low_a, d_pre_a)
        d_low_a = d_pre_a @ p["w_a2"].T
        grads = {"w_r": dr, "w_k": dk, "w_v": dv, "w_w1": d_pre_w, "w_a1": d_low_a, "w_g1": d_pre_g}
        for name, grad in grads.items():
            d_p[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(ys=ys, carry=(Ss[-1], None), d_params=d_p, d_carry=(dS, None), d_xs=d_xs)
