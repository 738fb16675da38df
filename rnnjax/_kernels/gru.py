"""The GRU's sequence kernel: the whole unroll as one function with a hand-written VJP.

`rnnjax.unroll` runs this instead of `lax.scan` over `gru.step` on CPU (see
`Cell.sequence`), computing the same function (tests/test_kernels.py checks
values and gradients against the plain scan; the NumPy reference BPTT and the
cell contract run through it). It follows the LSTM kernel's layout
(rnnjax/_kernels/lstm.py has the reasons and measurements): hidden units in
blocks from `BLOCKED_FROM` on, unrolled scans, and a manual BPTT
(the equations of rnnjax/reference/gru.py) whose forward stores each step's
local derivatives, so that with `d = dL/dh_t` the backward step is

    du = [d, d, d] * [C_r, C_z, C_n]         gradient of the input pre-activations u
    dv = [du_r, du_z, du_n * r]              gradient of the recurrent matmul's output v
    dh_{t-1} = d * z + dv @ W_h^T

with `C_n = (1 - z)(1 - n^2)`, `C_r = C_n (v_n + b_hn) r (1 - r)` and
`C_z = (h_{t-1} - n) z (1 - z)`. The weight gradients are one large matmul each
over all steps. Masked steps store `C = 0, r = 0, z = 1`, which passes `d`
through unchanged and gives them no gradient. The backward stacks `du` as a
scan output: writing it over the stored `C` in place (as the LSTM kernel does)
made XLA copy the whole buffer every step here.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from rnnjax._kernels.layout import STEPS_PER_ITERATION, blocks_for, previous, to_blocks


def _forward(w_x, w_h, b, b_hn, xs, h0, mask, reverse, residuals):
    """Run the blocked GRU; returns the final carry, every step's carry (masked steps
    repeat the previous one) and, with `residuals`, per block `[C_r C_z C_n]` and `[r z]`."""
    blocks = len(w_h)

    def step(h, inputs):
        x, valid = inputs
        h_parts = jnp.split(h, blocks, axis=-1)
        hs, res = [], []
        for k in range(blocks):
            u_r, u_z, u_n = jnp.split(x @ w_x[k] + b[k], 3, axis=-1)
            v_r, v_z, v_n = jnp.split(h @ w_h[k], 3, axis=-1)
            r = jax.nn.sigmoid(u_r + v_r)
            z = jax.nn.sigmoid(u_z + v_z)
            vn = v_n + b_hn[k]
            n = jnp.tanh(u_n + r * vn)
            hs.append((1 - z) * n + z * h_parts[k])
            if residuals:  # the step's local derivatives, see the module docstring
                c_n = (1 - z) * (1 - n**2)
                coef = [c_n * vn * r * (1 - r), (h_parts[k] - n) * z * (1 - z), c_n]
                rz = [r, z]
                if valid is not None:  # a masked step passes dL/dh straight through
                    v = valid[:, None]
                    coef = [jnp.where(v, c, 0) for c in coef]
                    rz = [jnp.where(v, r, 0), jnp.where(v, z, 1)]
                res.append((jnp.concatenate(coef, axis=-1), jnp.concatenate(rz, axis=-1)))
        h_new = jnp.concatenate(hs, axis=-1)
        if valid is not None:
            h_new = jnp.where(valid[:, None], h_new, h)
        return h_new, (h_new, res)

    return jax.lax.scan(step, h0, (xs, mask), reverse=reverse, unroll=STEPS_PER_ITERATION)


@partial(jax.custom_vjp, nondiff_argnums=(7,))
def _run(w_x, w_h, b, b_hn, xs, h0, mask, reverse):
    h, (hs, _) = _forward(w_x, w_h, b, b_hn, xs, h0, mask, reverse, residuals=False)
    return hs, h


def _run_fwd(w_x, w_h, b, b_hn, xs, h0, mask, reverse):
    h, (hs, res) = _forward(w_x, w_h, b, b_hn, xs, h0, mask, reverse, residuals=True)
    return (hs, h), (w_x, w_h, xs, h0, mask, hs, res)


def _run_bwd(reverse, res, cotangents):
    w_x, w_h, xs, h0, mask, hs, stored = res
    d_hs, d_h = cotangents
    blocks = len(w_h)
    T, B = xs.shape[:2]
    w_h_t = [w.T for w in w_h]  # transposed once here, not in every step
    coefs = [c for c, _ in stored]
    rzs = [rz for _, rz in stored]

    def step(dh_rec, inputs):  # dh_rec: the gradient reaching h_t from later steps
        dy, coef_t, rz_t = inputs
        dh = dy + dh_rec
        dh_parts = jnp.split(dh, blocks, axis=-1)
        dus, direct, dh_prev = [], [], 0
        for k in range(blocks):
            d = dh_parts[k]
            r, z = jnp.split(rz_t[k], 2, axis=-1)
            du = jnp.concatenate([d, d, d], axis=-1) * coef_t[k]
            du_r, du_z, du_n = jnp.split(du, 3, axis=-1)
            dh_prev = dh_prev + jnp.concatenate([du_r, du_z, du_n * r], axis=-1) @ w_h_t[k]
            dus.append(du)
            direct.append(d * z)
        return dh_prev + jnp.concatenate(direct, axis=-1), dus

    dh0, dus = jax.lax.scan(step, d_h, (d_hs, coefs, rzs), reverse=not reverse, unroll=STEPS_PER_ITERATION)
    h_prev = previous(h0, hs, reverse).reshape(T * B, -1)
    x_flat = xs.reshape(T * B, -1)
    d_w_x, d_w_h, d_b, d_b_hn, d_xs = [], [], [], [], 0
    for k in range(blocks):  # weight gradients: one matmul over all steps each
        du = dus[k].reshape(T * B, -1)
        du_r, du_z, du_n = jnp.split(du, 3, axis=-1)
        dv_n = du_n * jnp.split(rzs[k].reshape(T * B, -1), 2, axis=-1)[0]
        d_w_x.append(x_flat.T @ du)
        d_w_h.append(h_prev.T @ jnp.concatenate([du_r, du_z, dv_n], axis=-1))
        d_b.append(du.sum(0))
        d_b_hn.append(dv_n.sum(0))
        d_xs = d_xs + dus[k] @ w_x[k].T
    d_mask = None if mask is None else jnp.zeros(mask.shape, jax.dtypes.float0)
    return d_w_x, d_w_h, d_b, d_b_hn, d_xs, dh0, d_mask


_run.defvjp(_run_fwd, _run_bwd)


def gru_sequence(params, xs, h0, mask=None, reverse=False, blocks: int | None = None):
    """The GRU over a whole sequence: `xs [T, B, I]`, carry `h0 [B, H]`, optional
    `mask [T, B]` (False at padded steps).

    Returns `(hs, h_T)`: the carry after every step (a masked step repeats the
    previous one) and the final carry. Differentiable in params, inputs and
    initial carry (reverse mode; the VJP is hand-written). `blocks`: hidden-unit
    blocks (None: `blocks_for`'s measured default).
    """
    H = params["w_h"].shape[0]
    n = blocks_for(H, blocks)
    w_x = to_blocks(params["w_x"], H, n, 3)
    w_h = to_blocks(params["w_h"], H, n, 3)
    b = [p[0] for p in to_blocks(params["b"][None], H, n, 3)]
    return _run(w_x, w_h, b, jnp.split(params["b_hn"], n), xs, h0, mask, reverse)
