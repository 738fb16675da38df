"""Manual BPTT for the RG-LRU (Griffin), in NumPy float64.

Forward, for t = 1..T:
    u = x_t W_u,  r = sigmoid(x_t W_a + b_a),  i = sigmoid(x_t W_x + b_x)
    log_a = -c r softplus(-Lambda),  a = exp(log_a),  g = sqrt(1 - a^2)
    h_t = a h_{t-1} + g i u,   y_t = h_t

The derivative of the square root is capped at 1000 as in the cell
(`rnnjax.cells.rglru.MAX_SQRT_GRADIENT`, RecurrentGemma's bound).
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, sigmoid, softplus

MAX_SQRT_GRADIENT = 1000.0  # written out again: the reference shares no code with the cell


def rglru(params, xs, h0, dys, dh_final, *, c=8.0, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `h0 [H]`, `dys [T, H]`, `dh_final [H]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], p["lam"].shape[0]
    sp = softplus(-p["lam"])  # -log sigmoid(Lambda) > 0
    hs, cache = [f64(h0)], []
    for t in range(T):
        x = xs[t]
        u = x @ p["w_u"]
        r = sigmoid(x @ p["w_a"] + p["b_a"])
        i = sigmoid(x @ p["w_x"] + p["b_x"])
        a = np.exp(-c * r * sp)
        g = np.sqrt(1.0 - a**2)
        hs.append(a * hs[-1] + g * i * u)
        cache.append((u, r, i, a, g))

    d = {name: np.zeros_like(v) for name, v in p.items()}
    d_xs = np.zeros_like(xs)
    dh_next = f64(dh_final)
    for t in reversed(range(T)):
        x = xs[t]
        u, r, i, a, g = cache[t]
        dh = dys[t] + dh_next
        # h_t = a h_{t-1} + g i u
        da = dh * hs[t]
        dg = dh * i * u
        di = dh * g * u
        du = dh * g * i
        dh_next = dh * a
        # g = sqrt(y), y = 1 - a^2: dg/dy = 1 / (2 g), capped at MAX_SQRT_GRADIENT; dy/da = -2a
        dg_dy = np.minimum(0.5 / np.maximum(g, np.finfo(np.float64).tiny), MAX_SQRT_GRADIENT)
        da = da - dg * dg_dy * 2.0 * a
        # a = exp(-c r sp): d/dr = -c sp a, d/dsp = -c r a, and sp = softplus(-Lambda): dsp/dLambda = -sigmoid(-Lambda)
        dr = da * -c * sp * a
        d["lam"] += da * -c * r * a * -sigmoid(-p["lam"])
        # the sigmoid gates
        dr_pre, di_pre = dr * r * (1.0 - r), di * i * (1.0 - i)
        d["b_a"] += dr_pre
        d["b_x"] += di_pre
        for name, grad in (("w_u", du), ("w_a", dr_pre), ("w_x", di_pre)):
            d[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)), carry=hs[-1], d_params=d, d_carry=dh_next, d_xs=d_xs
    )
