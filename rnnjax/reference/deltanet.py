"""Manual BPTT for the delta-rule family with a scalar decay: DeltaNet, Gated DeltaNet and Gated
DeltaProduct (`householder` substeps per token), with negative eigenvalues and grouped value heads,
in NumPy float64.

Forward, for t = 1..T, per value head h (key-major state S[h] of shape [d, d]); Hk query/key heads,
each serving a group of Hv / Hk value heads (`expand` repeats a key head for its group):
    q = expand(l2norm(x_t W_q))                                     l2norm(a) = a / sqrt(|a|^2 + eps)
    k_j = expand(l2norm(x_t W_k[j])),  v_j = x_t W_v[j],  j = 1..n   (n = householder, 1 for DeltaNet)
    beta_j = c sigmoid(x_t w_beta[j] + b_beta[j])                   (c = 2 with negative eigenvalues, else 1)
    alpha = 1, or (gated) exp(-exp(A_log) * softplus(x_t w_a + dt_bias))         ([Hv])
    S^0 = alpha S_{t-1};   S^j = S^(j-1) + beta_j outer(k_j, v_j - r_j),  r_j = S^(j-1)^T k_j
    S_t = S^n,   y_t = concat(S_t^T q)
"""

from __future__ import annotations

from functools import partial

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid, softplus

L2_EPS = 1e-6


def _l2norm(a):
    norm = np.sqrt(np.sum(a * a, axis=-1, keepdims=True) + L2_EPS)
    return a / norm, norm


def _l2norm_backward(d_out, out, norm):
    # out = a / norm, norm = sqrt(|a|^2 + eps): d a = (d_out - out (out . d_out)) / norm
    return (d_out - out * np.sum(out * d_out, axis=-1, keepdims=True)) / norm


def deltanet(
    params,
    xs,
    carry0,
    dys,
    d_carry_final,
    *,
    num_heads,
    gated=False,
    householder=1,
    negative_eigenvalues=False,
    num_value_heads=None,
    **_config,
) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [Hv, d, d], None)`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D, n = xs.shape[0], p["w_v"].shape[1] // householder, householder
    Hk = num_heads
    Hv = num_value_heads or num_heads
    d, group = D // Hv, Hv // Hk
    c = 2.0 if negative_eigenvalues else 1.0

    def expand(a):  # [Hk, d] -> [Hv, d]: each key head repeated for its group of value heads
        return np.repeat(a, group, axis=0)

    def contract(da):  # the gradient of `expand`: a key head gets its group's sum
        return da.reshape(Hk, group, *da.shape[1:]).sum(axis=1)

    Ss, cache = [f64(carry0[0])], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        q, q_norm = _l2norm((x @ p["w_q"]).reshape(Hk, d))
        ks, k_norms = _l2norm((x @ p["w_k"]).reshape(n, Hk, d))
        vs = (x @ p["w_v"]).reshape(n, Hv, d)
        sig = sigmoid(x @ p["w_beta"] + p["b_beta"]).reshape(n, Hv)
        betas = c * sig
        if gated:
            z = x @ p["w_a"] + p["dt_bias"]
            log_alpha = -np.exp(p["a_log"]) * softplus(z)
        else:
            z, log_alpha = None, np.zeros(Hv)
        alpha = np.exp(log_alpha)
        S = alpha[:, None, None] * Ss[-1]  # decay first
        befores, rs = [], []
        for j in range(n):
            k = expand(ks[j])
            r = np.einsum("hkv,hk->hv", S, k)  # what the memory returns for k_j
            befores.append(S)
            rs.append(r)
            S = S + betas[j][:, None, None] * k[:, :, None] * (vs[j] - r)[:, None, :]
        ys[t] = np.einsum("hkv,hk->hv", S, expand(q)).reshape(D)
        Ss.append(S)
        cache.append((q, q_norm, ks, k_norms, vs, sig, betas, z, log_alpha, alpha, befores, rs))

    d_p = {name: np.zeros_like(a) for name, a in p.items()}
    d_xs = np.zeros_like(xs)
    dS = f64(d_carry_final[0])
    for t in reversed(range(T)):
        x = xs[t]
        q, q_norm, ks, k_norms, vs, sig, betas, z, log_alpha, alpha, befores, rs = cache[t]
        S = Ss[t + 1]
        do = dys[t].reshape(Hv, d)
        # y = S_t^T expand(q)
        dS = dS + expand(q)[:, :, None] * do[:, None, :]
        dq = contract(np.einsum("hkv,hv->hk", S, do))
        dks, dvs, d_betas = np.zeros((n, Hv, d)), np.zeros((n, Hv, d)), np.zeros((n, Hv))
        for j in reversed(range(n)):
            k, S_before, r = expand(ks[j]), befores[j], rs[j]
            e = vs[j] - r
            # S^j = S^(j-1) + beta outer(k, e)
            d_betas[j] = np.einsum("hk,hkv,hv->h", k, dS, e)
            dks[j] = betas[j][:, None] * np.einsum("hkv,hv->hk", dS, e)
            de = betas[j][:, None] * np.einsum("hkv,hk->hv", dS, k)
            dvs[j] = de
            # e = v - r, r = S^(j-1)^T k
            dr = -de
            dks[j] += np.einsum("hkv,hv->hk", S_before, dr)
            dS = dS + k[:, :, None] * dr[:, None, :]
        # S^0 = alpha S_{t-1}
        d_alpha = np.sum(dS * Ss[t], axis=(1, 2))
        dS = alpha[:, None, None] * dS
        # beta = c sigmoid(pre)
        d_beta_pre = (d_betas * betas * (1.0 - sig)).reshape(n * Hv)
        dk_pre = np.stack([_l2norm_backward(contract(dks[j]), ks[j], k_norms[j]) for j in range(n)])
        grads = {
            "w_q": _l2norm_backward(dq, q, q_norm).reshape(Hk * d),
            "w_k": dk_pre.reshape(n * Hk * d),
            "w_v": dvs.reshape(n * D),
            "w_beta": d_beta_pre,
        }
        d_p["b_beta"] += d_beta_pre
        if gated:
            # alpha = exp(log_alpha), log_alpha = -exp(A_log) softplus(z)
            d_log_alpha = d_alpha * alpha
            d_p["a_log"] += d_log_alpha * log_alpha
            dz = d_log_alpha * -np.exp(p["a_log"]) * sigmoid(z)
            d_p["dt_bias"] += dz
            grads["w_a"] = dz
        for name, grad in grads.items():
            d_p[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(ys=ys, carry=(Ss[-1], None), d_params=d_p, d_carry=(dS, None), d_xs=d_xs)


# Gated DeltaProduct is the gated delta rule with `householder` substeps per token
gated_deltaproduct = partial(deltanet, gated=True)
