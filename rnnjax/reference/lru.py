"""Manual BPTT for the LRU, in NumPy float64, with the complex arithmetic written out in real and imaginary parts.

Forward, for t = 1..T:
    mag = exp(-exp(nu_log)),  theta = exp(theta_log),  lr = mag cos(theta),  li = mag sin(theta)
    gamma = exp(gamma_log),   br = gamma (x_t B_re),  bi = gamma (x_t B_im)
    h_t = lam h_{t-1} + b:    hr' = lr hr - li hi + br,  hi' = lr hi + li hr + bi
    y_t = hr' C_re - hi' C_im + x_t D

Complex gradients follow JAX's convention (see rnnjax/reference/s5.py).
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64


def lru(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, complex `h0 [N]`, `dys [T, O]`, complex `dh_final [N]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T = xs.shape[0]
    mag, theta, gamma = np.exp(-np.exp(p["nu_log"])), np.exp(p["theta_log"]), np.exp(p["gamma_log"])
    lr, li = mag * np.cos(theta), mag * np.sin(theta)

    h0 = np.asarray(h0, np.complex128)
    hr, hi = [h0.real.copy()], [h0.imag.copy()]
    ys = np.zeros((T, p["d"].shape[1]))
    for t in range(T):
        x = xs[t]
        br, bi = gamma * (x @ p["b_re"]), gamma * (x @ p["b_im"])
        hr.append(lr * hr[-1] - li * hi[-1] + br)
        hi.append(lr * hi[-1] + li * hr[-2] + bi)
        ys[t] = hr[-1] @ p["c_re"] - hi[-1] @ p["c_im"] + x @ p["d"]

    d = {name: np.zeros_like(v) for name, v in p.items()}
    d_xs = np.zeros_like(xs)
    d_final = np.asarray(dh_final, np.complex128)
    dhr, dhi = d_final.real.copy(), -d_final.imag  # JAX's cotangent convention
    dlr = dli = dgamma = 0.0
    for t in reversed(range(T)):
        x = xs[t]
        # y = hr C_re - hi C_im + x D
        dhr = dhr + p["c_re"] @ dys[t]
        dhi = dhi - p["c_im"] @ dys[t]
        d["c_re"] += np.outer(hr[t + 1], dys[t])
        d["c_im"] -= np.outer(hi[t + 1], dys[t])
        d["d"] += np.outer(x, dys[t])
        d_xs[t] += p["d"] @ dys[t]
        # h_t = lam h_{t-1} + b
        dlr = dlr + dhr * hr[t] + dhi * hi[t]
        dli = dli - dhr * hi[t] + dhi * hr[t]
        dbr, dbi = dhr, dhi
        dhr, dhi = lr * dhr + li * dhi, -li * dhr + lr * dhi
        # b = gamma (x B)
        dgamma = dgamma + dbr * (x @ p["b_re"]) + dbi * (x @ p["b_im"])
        d["b_re"] += np.outer(x, gamma * dbr)
        d["b_im"] += np.outer(x, gamma * dbi)
        d_xs[t] += p["b_re"] @ (gamma * dbr) + p["b_im"] @ (gamma * dbi)

    # lam = mag (cos theta + i sin theta), mag = exp(-exp(nu_log)), theta = exp(theta_log)
    dmag = dlr * np.cos(theta) + dli * np.sin(theta)
    dtheta = -dlr * li + dli * lr
    d["nu_log"] += dmag * mag * -np.exp(p["nu_log"])
    d["theta_log"] += dtheta * theta
    d["gamma_log"] += dgamma * gamma
    return BPTTResult(ys=ys, carry=hr[-1] + 1j * hi[-1], d_params=d, d_carry=dhr - 1j * dhi, d_xs=d_xs)
