"""Manual BPTT for the layer-normalised LSTM (Ba, Kiros & Hinton 2016), in NumPy float64.

Forward, for t = 1..T, with LN(a; g, beta) = (a - mean(a)) / sqrt(var(a) + 1e-5) * g + beta:
    a = LN(x_t W_x; g_x) + LN(h_{t-1} W_h; g_h) + b,    gates i, f, g, o as in the LSTM
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(LN(c_t; g_c, beta_c)),   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid

EPS = 1e-5


def _norm(a):
    """(a - mean) / sqrt(var + eps), and 1 / sqrt(var + eps)."""
    rstd = 1.0 / np.sqrt(np.var(a) + EPS)
    return (a - np.mean(a)) * rstd, rstd


def _norm_backward(d_normed, normed, rstd):
    # the gradient of (a - mean) * rstd: remove the parts along 1 and along the normalised vector
    return rstd * (d_normed - np.mean(d_normed) - normed * np.mean(d_normed * normed))


def lstm_layernorm(params, xs, carry0, dys, d_carry_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (h0, c0)`, `dys [T, H]`, `d_carry_final = (dh_T, dc_T)`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], p["w_h"].shape[0]
    hs, cs, cache = [f64(carry0[0])], [f64(carry0[1])], []
    for t in range(T):
        nx, rx = _norm(xs[t] @ p["w_x"])
        nh, rh = _norm(hs[-1] @ p["w_h"])
        a = nx * p["ln_x_scale"] + nh * p["ln_h_scale"] + p["b"]
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
        cs.append(f * cs[-1] + i * g)
        nc, rc = _norm(cs[-1])
        tanh_c = np.tanh(nc * p["ln_c_scale"] + p["ln_c_bias"])
        hs.append(o * tanh_c)
        cache.append((nx, rx, nh, rh, i, f, g, o, nc, rc, tanh_c))

    d = {name: np.zeros_like(v) for name, v in p.items()}
    d_xs = np.zeros_like(xs)
    dh_next, dc_next = f64(d_carry_final[0]), f64(d_carry_final[1])
    for t in reversed(range(T)):
        nx, rx, nh, rh, i, f, g, o, nc, rc, tanh_c = cache[t]
        dh = dys[t] + dh_next
        # h = o * tanh(LN(c))
        do = dh * tanh_c
        d_ln_c = dh * o * (1.0 - tanh_c**2)
        d["ln_c_scale"] += d_ln_c * nc
        d["ln_c_bias"] += d_ln_c
        dc = dc_next + _norm_backward(d_ln_c * p["ln_c_scale"], nc, rc)
        # c_t = f * c_{t-1} + i * g, then the gate nonlinearities
        da = np.concatenate(
            [dc * g * i * (1.0 - i), dc * cs[t] * f * (1.0 - f), dc * i * (1.0 - g**2), do * o * (1.0 - o)]
        )
        dc_next = dc * f
        # a = LN(x W_x; g_x) + LN(h W_h; g_h) + b
        d["b"] += da
        d["ln_x_scale"] += da * nx
        d["ln_h_scale"] += da * nh
        dax = _norm_backward(da * p["ln_x_scale"], nx, rx)
        dah = _norm_backward(da * p["ln_h_scale"], nh, rh)
        d["w_x"] += np.outer(xs[t], dax)
        d["w_h"] += np.outer(hs[t], dah)
        d_xs[t] = dax @ p["w_x"].T
        dh_next = dah @ p["w_h"].T

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)),
        carry=(hs[-1], cs[-1]),
        d_params=d,
        d_carry=(dh_next, dc_next),
        d_xs=d_xs,
    )
