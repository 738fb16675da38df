"""Manual BPTT for S5, in NumPy float64, with the complex arithmetic written out in real and imaginary parts.

Forward, for t = 1..T (every product of complex numbers expanded):
    Lr = -exp(log_neg_re),  Li = lambda_im,  dt = exp(log_step)
    lam = exp(L dt):  lr = exp(Lr dt) cos(Li dt),  li = exp(Lr dt) sin(Li dt)
    g = (lam - 1) / L:  gr = ((lr - 1) Lr + li Li) / |L|^2,  gi = (li Lr - (lr - 1) Li) / |L|^2
    u = x_t B:  ur = x_t B_re,  ui = x_t B_im;   b = g u:  br = gr ur - gi ui,  bi = gr ui + gi ur
    h_t = lam h_{t-1} + b:  hr' = lr hr - li hi + br,  hi' = lr hi + li hr + bi
    y_t = 2 (hr' C_re - hi' C_im) + x_t D

Complex gradients follow JAX's convention: a cotangent `a + ib` for a complex
value z stands for dL/dRe(z) = a and dL/dIm(z) = -b, and the gradient returned
for the initial carry is `dL/dRe(h0) - i dL/dIm(h0)`.
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64


def s5(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, complex `h0 [N]`, `dys [T, O]`, complex `dh_final [N]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T = xs.shape[0]
    Lr, Li, dt = -np.exp(p["log_neg_re"]), p["lambda_im"], np.exp(p["log_step"])
    mag, ang = np.exp(Lr * dt), Li * dt
    lr, li = mag * np.cos(ang), mag * np.sin(ang)
    D2 = Lr**2 + Li**2
    gr, gi = ((lr - 1.0) * Lr + li * Li) / D2, (li * Lr - (lr - 1.0) * Li) / D2

    h0 = np.asarray(h0, np.complex128)
    hr, hi = [h0.real.copy()], [h0.imag.copy()]
    ys = np.zeros((T, p["d"].shape[1]))
    for t in range(T):
        x = xs[t]
        ur, ui = x @ p["b_re"], x @ p["b_im"]
        br, bi = gr * ur - gi * ui, gr * ui + gi * ur
        hr.append(lr * hr[-1] - li * hi[-1] + br)
        hi.append(lr * hi[-1] + li * hr[-2] + bi)
        ys[t] = 2.0 * (hr[-1] @ p["c_re"] - hi[-1] @ p["c_im"]) + x @ p["d"]

    d = {name: np.zeros_like(v) for name, v in p.items()}
    d_xs = np.zeros_like(xs)
    d_final = np.asarray(dh_final, np.complex128)
    dhr, dhi = d_final.real.copy(), -d_final.imag  # JAX's cotangent convention
    dlr = dli = dgr = dgi = 0.0
    for t in reversed(range(T)):
        x = xs[t]
        # y = 2 (hr C_re - hi C_im) + x D
        dhr = dhr + 2.0 * p["c_re"] @ dys[t]
        dhi = dhi - 2.0 * p["c_im"] @ dys[t]
        d["c_re"] += 2.0 * np.outer(hr[t + 1], dys[t])
        d["c_im"] -= 2.0 * np.outer(hi[t + 1], dys[t])
        d["d"] += np.outer(x, dys[t])
        d_xs[t] += p["d"] @ dys[t]
        # h_t = lam h_{t-1} + b, written out in real and imaginary parts
        dlr = dlr + dhr * hr[t] + dhi * hi[t]
        dli = dli - dhr * hi[t] + dhi * hr[t]
        dbr, dbi = dhr, dhi
        dhr, dhi = lr * dhr + li * dhi, -li * dhr + lr * dhi
        # b = g u
        ur, ui = x @ p["b_re"], x @ p["b_im"]
        dgr = dgr + dbr * ur + dbi * ui
        dgi = dgi - dbr * ui + dbi * ur
        dur, dui = dbr * gr + dbi * gi, -dbr * gi + dbi * gr
        d["b_re"] += np.outer(x, dur)
        d["b_im"] += np.outer(x, dui)
        d_xs[t] += p["b_re"] @ dur + p["b_im"] @ dui

    # g = (lam - 1) / L, with Nr = lr - 1, Ni = li
    Nr, Ni = lr - 1.0, li
    dlr = dlr + (dgr * Lr - dgi * Li) / D2
    dli = dli + (dgr * Li + dgi * Lr) / D2
    dLr = dgr * (Nr - 2.0 * Lr * gr) / D2 + dgi * (Ni - 2.0 * Lr * gi) / D2
    dLi = dgr * (Ni - 2.0 * Li * gr) / D2 + dgi * (-Nr - 2.0 * Li * gi) / D2
    # lam = exp(Lr dt) (cos(Li dt) + i sin(Li dt))
    dmag = dlr * np.cos(ang) + dli * np.sin(ang)
    dang = -dlr * li + dli * lr
    dLr_dt = dmag * mag
    dLr = dLr + dLr_dt * dt
    d_dt = dLr_dt * Lr + dang * Li
    dLi = dLi + dang * dt
    d["log_neg_re"] += dLr * Lr  # Lr = -exp(log_neg_re)
    d["lambda_im"] += dLi
    d["log_step"] += d_dt * dt
    return BPTTResult(ys=ys, carry=hr[-1] + 1j * hi[-1], d_params=d, d_carry=dhr - 1j * dhi, d_xs=d_xs)
