"""Manual BPTT for Mamba-2's SSD, in NumPy float64.

Forward, for t = 1..T, per head h (key-major state S[h] = H_t[h]^T of shape [N, P]):
    x~ = (x_t W_x) split into heads [H, P],   b = x_t W_b,   c = x_t W_c          ([N], shared by the heads)
    delta = softplus(x_t W_dt + dt_bias),   A = -exp(A_log),   a = exp(delta * A)  ([H])
    S_t[h] = a[h] S_{t-1}[h] + outer(b, delta[h] x~[h])
    y_t[h] = S_t[h]^T c + d[h] x~[h],   y_t = concat(y_t[h])
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid, softplus


def ssd(params, xs, carry0, dys, d_carry_final, *, num_heads, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [H, N, P], None)`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D, H = xs.shape[0], p["w_x"].shape[1], num_heads
    P = D // H
    A = -np.exp(p["a_log"])
    Ss, cache = [f64(carry0[0])], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        x_h = (x @ p["w_x"]).reshape(H, P)
        b, c = x @ p["w_b"], x @ p["w_c"]
        z = x @ p["w_dt"] + p["dt_bias"]
        delta = softplus(z)
        a = np.exp(delta * A)
        u = delta[:, None] * x_h
        S = a[:, None, None] * Ss[-1] + b[None, :, None] * u[:, None, :]
        ys[t] = (np.einsum("hnp,n->hp", S, c) + p["d"][:, None] * x_h).reshape(D)
        Ss.append(S)
        cache.append((x_h, b, c, z, delta, a, u))

    d = {name: np.zeros_like(a_) for name, a_ in p.items()}
    d_xs = np.zeros_like(xs)
    dS = f64(d_carry_final[0])
    for t in reversed(range(T)):
        x = xs[t]
        x_h, b, c, z, delta, a, u = cache[t]
        S_prev, S = Ss[t], Ss[t + 1]
        dy = dys[t].reshape(H, P)
        # y[h] = S_t[h]^T c + d[h] x~[h]
        dS = dS + c[None, :, None] * dy[:, None, :]
        dc = np.einsum("hnp,hp->n", S, dy)
        d["d"] += np.sum(dy * x_h, axis=1)
        dx_h = p["d"][:, None] * dy
        # S_t = a S_{t-1} + outer(b, u)
        da = np.sum(dS * S_prev, axis=(1, 2))
        db = np.einsum("hnp,hp->n", dS, u)
        du = np.einsum("hnp,n->hp", dS, b)
        dS = a[:, None, None] * dS  # to S_{t-1}
        # u = delta x~
        ddelta = np.sum(du * x_h, axis=1)
        dx_h = dx_h + delta[:, None] * du
        # a = exp(delta A), A = -exp(A_log): d a / d A_log = a * delta * A
        ddelta = ddelta + da * a * A
        d["a_log"] += da * a * delta * A
        # delta = softplus(z)
        dz = ddelta * sigmoid(z)
        d["dt_bias"] += dz
        for name, grad in (("w_x", dx_h.reshape(D)), ("w_b", db), ("w_c", dc), ("w_dt", dz)):
            d[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(ys=ys, carry=(Ss[-1], None), d_params=d, d_carry=(dS, None), d_xs=d_xs)
