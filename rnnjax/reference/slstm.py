"""Manual BPTT for the sLSTM (xLSTM's scalar memory), in NumPy float64, in the paper's stabilised form.

Forward, for t = 1..T (R block-diagonal: one [dh, 4 dh] block per head):
    a = x_t W_x + (h_{t-1} R, per head, gates reordered z, i, f, o) + b,   [z~, i~, f~, o~] = a
    log_f = log_sigmoid(f~),  m_t = max(log_f + m_{t-1}, i~)
    i' = exp(i~ - m_t),  f' = exp(log_f + m_{t-1} - m_t)
    c_t = f' c_{t-1} + i' tanh(z~),  n_t = f' n_{t-1} + i'
    h_t = sigmoid(o~) c_t / n_t,   y_t = h_t
"""

from __future__ import annotations

import numpy as np

from rnnjax.reference.result import BPTTResult, f64, log_sigmoid, sigmoid


def slstm(params, xs, carry0, dys, d_carry_final, *, num_heads, **_config) -> BPTTResult:
    """One sequence: `xs [T, I]`, `carry0 = (h, c, n, m)` each `[H]`, `dys [T, H]`."""
    w_x, r, b = f64(params["w_x"]), f64(params["r"]), f64(params["b"])
    xs, dys = f64(xs), f64(dys)
    T, H = xs.shape[0], b.shape[0] // 4
    hd = H // num_heads  # units per head

    def recurrent(h):
        # per head: [hd] @ [hd, 4 hd] -> gates (z, i, f, o) of that head's units, then gate-major
        out = np.einsum("hd,hde->he", h.reshape(num_heads, hd), r).reshape(num_heads, 4, hd)
        return out.transpose(1, 0, 2).reshape(4 * H)

    def recurrent_backward(da, h):
        # the transpose of `recurrent`: gradients for h and for R
        g = da.reshape(4, num_heads, hd).transpose(1, 0, 2).reshape(num_heads, 4 * hd)
        dr = np.einsum("hd,he->hde", h.reshape(num_heads, hd), g)
        return np.einsum("hde,he->hd", r, g).reshape(H), dr

    hs, cs, ns, ms = [f64(carry0[0])], [f64(carry0[1])], [f64(carry0[2])], [f64(carry0[3])]
    cache = []
    for t in range(T):
        a = xs[t] @ w_x + recurrent(hs[-1]) + b
        z_pre, i_pre, f_pre, o_pre = np.split(a, 4)
        log_f = log_sigmoid(f_pre)
        m = np.maximum(log_f + ms[-1], i_pre)
        i_g, f_g = np.exp(i_pre - m), np.exp(log_f + ms[-1] - m)
        z, o = np.tanh(z_pre), sigmoid(o_pre)
        c = f_g * cs[-1] + i_g * z
        n = f_g * ns[-1] + i_g
        hs.append(o * c / n), cs.append(c), ns.append(n), ms.append(m)
        cache.append((i_pre, f_pre, log_f, i_g, f_g, z, o))

    d_w_x, d_r, d_b = np.zeros_like(w_x), np.zeros_like(r), np.zeros_like(b)
    d_xs = np.zeros_like(xs)
    dh_next, dc, dn, dm = (f64(g) for g in d_carry_final)
    for t in reversed(range(T)):
        i_pre, f_pre, log_f, i_g, f_g, z, o = cache[t]
        c, n, m_prev = cs[t + 1], ns[t + 1], ms[t]
        dh = dys[t] + dh_next
        # h = o c / n
        do = dh * c / n
        dc = dc + dh * o / n
        dn = dn - dh * o * c / n**2
        # c = f' c_{t-1} + i' z,  n = f' n_{t-1} + i'
        df = dc * cs[t] + dn * ns[t]
        di = dc * z + dn
        dz = dc * i_g
        dc, dn = dc * f_g, dn * f_g  # to c_{t-1}, n_{t-1}
        # i' = exp(i~ - m_t),  f' = exp(log_f + m_{t-1} - m_t)
        di_pre = di * i_g
        dlog_f = df * f_g
        dm_prev = df * f_g
        dm = dm - df * f_g - di * i_g
        # m_t = max(log_f + m_{t-1}, i~): the gradient goes to the larger
        from_f = log_f + m_prev >= i_pre
        dlog_f = dlog_f + np.where(from_f, dm, 0.0)
        dm_prev = dm_prev + np.where(from_f, dm, 0.0)
        di_pre = di_pre + np.where(from_f, 0.0, dm)
        dm = dm_prev
        # the nonlinearities
        da = np.concatenate([dz * (1.0 - z**2), di_pre, dlog_f * (1.0 - sigmoid(f_pre)), do * o * (1.0 - o)])
        d_w_x += np.outer(xs[t], da)
        d_b += da
        d_xs[t] = da @ w_x.T
        dh_next, dr_t = recurrent_backward(da, hs[t])
        d_r += dr_t

    return BPTTResult(
        ys=np.stack(hs[1:]) if T else np.zeros((0, H)),
        carry=(hs[-1], cs[-1], ns[-1], ms[-1]),
        d_params={"w_x": d_w_x, "r": d_r, "b": d_b},
        d_carry=(dh_next, dc, dn, dm),
        d_xs=d_xs,
    )
