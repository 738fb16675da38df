"""Manual BPTT for the mLSTM (xLSTM's matrix memory), in NumPy float64, in the paper's stabilised form.

Forward, for t = 1..T, per head h (C[h] key-major, dk x dv; n[h] of length dk; m[h] a scalar):
    q = x_t W_q,  k = x_t W_k / sqrt(dk),  v = x_t W_v,   split into heads
    i~ = x_t w_i + b_i,   f~ = x_t w_f + b_f,   log_f = log_sigmoid(f~)
    m_t = max(log_f + m_{t-1}, i~)                             the stabiliser
    f' = exp(log_f + m_{t-1} - m_t),   i' = exp(i~ - m_t)      the gates, divided by exp(m)
    C_t = f' C_{t-1} + i' outer(k, v),   n_t = f' n_{t-1} + i' k
    h~ = (C_t^T q) / max(|n_t . q|, exp(-m_t)),   y_t = sigmoid(x_t W_o + b_o) * concat(h~)

The carry is `(S, m)` with `S[h] = [C | n]` (`[dk, dv + 1]`), as rnnjax stores it.
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, log_sigmoid, sigmoid


def mlstm(params, xs, carry0, dys, d_carry_final, *, num_heads, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (S0 [H, dk, dk + 1], m0 [H])`, `dys [T, D]`."""
    p = {name: f64(a) for name, a in params.items()}
    xs, dys = f64(xs), f64(dys)
    T, D, H = xs.shape[0], p["w_q"].shape[1], num_heads
    dh = D // H
    S0, m0 = f64(carry0[0]), f64(carry0[1])
    Cs, ns, ms, cache = [S0[..., :dh]], [S0[..., dh]], [m0], []
    ys = np.zeros((T, D))
    for t in range(T):
        x = xs[t]
        q = (x @ p["w_q"]).reshape(H, dh)
        k = (x @ p["w_k"]).reshape(H, dh) * dh**-0.5
        v = (x @ p["w_v"]).reshape(H, dh)
        i_pre = x @ p["w_i"] + p["b_i"]
        f_pre = x @ p["w_f"] + p["b_f"]
        log_f = log_sigmoid(f_pre)
        m = np.maximum(log_f + ms[-1], i_pre)
        f_gate = np.exp(log_f + ms[-1] - m)
        i_gate = np.exp(i_pre - m)
        C = f_gate[:, None, None] * Cs[-1] + i_gate[:, None, None] * k[:, :, None] * v[:, None, :]
        n = f_gate[:, None] * ns[-1] + i_gate[:, None] * k
        num = np.einsum("hkv,hk->hv", C, q)
        den_raw = np.sum(n * q, axis=1)
        den = np.maximum(np.abs(den_raw), np.exp(-m))
        h = num / den[:, None]
        o_gate = sigmoid(x @ p["w_o"] + p["b_o"])
        ys[t] = o_gate * h.reshape(D)
        Cs.append(C), ns.append(n), ms.append(m)
        cache.append((q, k, v, i_pre, f_pre, log_f, f_gate, i_gate, num, den_raw, den, h, o_gate))

    d = {name: np.zeros_like(a) for name, a in p.items()}
    d_xs = np.zeros_like(xs)
    dS_final, dm = f64(d_carry_final[0]), f64(d_carry_final[1])
    dC, dn = dS_final[..., :dh], dS_final[..., dh]
    for t in reversed(range(T)):
        x = xs[t]
        q, k, v, i_pre, f_pre, log_f, f_gate, i_gate, num, den_raw, den, h, o_gate = cache[t]
        C_prev, n_prev, m_prev, C, n, m = Cs[t], ns[t], ms[t], Cs[t + 1], ns[t + 1], ms[t + 1]
        # y = o_gate * h~
        dh_ = (dys[t] * o_gate).reshape(H, dh)
        do_pre = dys[t] * h.reshape(D) * o_gate * (1.0 - o_gate)
        # h~ = num / den
        dnum = dh_ / den[:, None]
        dden = -np.sum(dh_ * num, axis=1) / den**2
        # den = max(|n . q|, exp(-m)): the gradient goes to the larger one
        use_n = np.abs(den_raw) >= np.exp(-m)
        dden_raw = np.where(use_n, dden * np.sign(den_raw), 0.0)
        dm = dm + np.where(use_n, 0.0, -dden * np.exp(-m))
        # num = C_t^T q and den_raw = n_t . q read the state
        dC = dC + q[:, :, None] * dnum[:, None, :]
        dn = dn + q * dden_raw[:, None]
        dq = np.einsum("hkv,hv->hk", C, dnum) + n * dden_raw[:, None]
        # C_t = f' C_{t-1} + i' k v^T,  n_t = f' n_{t-1} + i' k
        df = np.sum(dC * C_prev, axis=(1, 2)) + np.sum(dn * n_prev, axis=1)
        di = np.einsum("hk,hkv,hv->h", k, dC, v) + np.sum(dn * k, axis=1)
        dk = i_gate[:, None] * (np.einsum("hkv,hv->hk", dC, v) + dn)
        dv = i_gate[:, None] * np.einsum("hkv,hk->hv", dC, k)
        dC, dn = f_gate[:, None, None] * dC, f_gate[:, None] * dn  # to C_{t-1}, n_{t-1}
        # f' = exp(log_f + m_{t-1} - m_t),  i' = exp(i~ - m_t)
        dlog_f = df * f_gate
        dm_prev = df * f_gate
        dm = dm - df * f_gate - di * i_gate
        di_pre = di * i_gate
        # m_t = max(log_f + m_{t-1}, i~)
        from_f = log_f + m_prev >= i_pre
        dlog_f = dlog_f + np.where(from_f, dm, 0.0)
        dm_prev = dm_prev + np.where(from_f, dm, 0.0)
        di_pre = di_pre + np.where(from_f, 0.0, dm)
        dm = dm_prev
        # log_f = log_sigmoid(f~): d/df~ = 1 - sigmoid(f~)
        df_pre = dlog_f * (1.0 - sigmoid(f_pre))
        # the projections are linear in x
        grads = {
            "w_q": dq.reshape(D),
            "w_k": (dk * dh**-0.5).reshape(D),
            "w_v": dv.reshape(D),
            "w_o": do_pre,
            "w_i": di_pre,
            "w_f": df_pre,
        }
        for name, grad in grads.items():
            d[name] += np.outer(x, grad)
            d_xs[t] += grad @ p[name].T
        d["b_o"] += do_pre
        d["b_i"] += di_pre
        d["b_f"] += df_pre

    carry = (np.concatenate([Cs[-1], ns[-1][..., None]], axis=-1), ms[-1])
    d_carry = (np.concatenate([dC, dn[..., None]], axis=-1), dm)
    return BPTTResult(ys=ys, carry=carry, d_params=d, d_carry=d_carry, d_xs=d_xs)
