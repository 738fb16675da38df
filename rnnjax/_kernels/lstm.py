"""The LSTM's sequence kernel: the whole unroll as one function with a hand-written VJP.

`rnnjax.unroll` runs this instead of `lax.scan` over `lstm.step` on CPU (see
`Cell.sequence`). It computes the same function (tests/test_kernels.py
checks values and gradients against the plain scan and the NumPy reference);
what differs is how the work is laid out for XLA:CPU, from measurements on a
2-core x86 machine (docs/benchmarks.md and
benchmarks/results/cpu-lstm-kernel3-2026-11-26.md have the numbers):

- **Hidden units in blocks** (two from `layout.BLOCKED_FROM` = 256 hidden
  units on, where they were measured to pay). The gate matmul `h @ W_h` is split by hidden
  unit into `blocks` independent chains (each block's four gates and its
  elementwise work), joined once per step by concatenating `h`. XLA's runtime
  runs independent chains on different cores, each chain's slice of `W_h`
  stays in its core's cache, and no core sits idle while another does the
  gates. The single `[B, 4H]` matmul is spread across cores by the matmul
  library instead, whose worker threads fall asleep during the gate work and
  are slow to wake: per step that cost more than the matmul itself.
- **One nonlinearity for all four gates.** The candidate's columns of the
  weights are doubled (`tanh(a) = 2 sigmoid(2a) - 1`), so a single sigmoid
  over the block's `[B, 4H/blocks]` pre-activations gives every gate, with no
  split-and-concatenate between them.
- **Manual BPTT** (the equations of rnnjax/reference/lstm.py). The forward
  stores, per step and block, the step's local derivatives
  `[M_i, M_f, M_g, M_o, P, F]` (e.g. `M_f = c_{t-1} f (1 - f)`,
  `P = o (1 - tanh^2 c_t)`), computed while the gates are in registers; the
  backward scan is then only `dc = dc_{t+1} F_{t+1} + dh P`,
  `da = [dc M_i, dc M_f, dc M_g, dh M_o]` and one `[B, 4H/blocks] x
  [4H/blocks, H]` product per block, and writes `da_t` over the `M_t` it
  has just read (in place: no new `[T, B, 4H]` buffer to zero-fill); the weight gradients
  are one large matmul each over all steps, instead of XLA's per-step
  accumulation. Masked steps store `M = P = 0, F = 1`, which passes `dc`
  through unchanged.
- **Unrolled scans** (4 steps per loop iteration), which XLA:CPU compiles to
  better code for reading the stored activations.

Masked steps (`lengths`) follow `unroll`'s rules: they keep the carry and
get zero gradient. The caller turns the stacked carries into outputs.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from rnnjax._kernels.layout import STEPS_PER_ITERATION, blocks_for, previous, to_blocks


def _forward(w_x, w_h, b, xs, h0, c0, mask, reverse, residuals):
    """Run the blocked LSTM; returns the final carry and per step the carry `h`
    (masked steps repeat the previous carry) and, with `residuals`, per block the
    step's local derivatives `[M_i, M_f, M_g, M_o, P, F]` that the backward needs."""
    blocks = len(w_h)

    def step(carry, inputs):
        h, cs = carry
        x, valid = inputs
        hs, cs_new, res = [], [], []
        for k in range(blocks):
            s = jax.nn.sigmoid(x @ w_x[k] + h @ w_h[k] + b[k])  # g's columns come doubled (lstm_sequence)
            i, f, sg, o = jnp.split(s, 4, axis=-1)
            g = 2 * sg - 1
            c = f * cs[k] + i * g
            tanh_c = jnp.tanh(c)
            hs.append(o * tanh_c)
            cs_new.append(c)
            if residuals:  # d c_t / d a, d h_t / d c_t and d c_t / d c_{t-1}, see the module docstring
                q = [
                    g * i * (1 - i),
                    cs[k] * f * (1 - f),
                    2 * i * sg * (1 - sg),
                    tanh_c * o * (1 - o),
                    o * (1 - tanh_c**2),
                    f,
                ]
                if valid is not None:  # a masked step passes dh and dc straight through
                    v = valid[:, None]
                    q = [jnp.where(v, z, 0) for z in q[:5]] + [jnp.where(v, f, 1)]
                # [M_i M_f M_g M_o] (the backward overwrites it with da in place) and [P F]
                res.append((jnp.concatenate(q[:4], axis=-1), jnp.concatenate(q[4:], axis=-1)))
        h_new = jnp.concatenate(hs, axis=-1)
        if valid is not None:
            v = valid[:, None]
            h_new = jnp.where(v, h_new, h)
            cs_new = [jnp.where(v, c, c_old) for c, c_old in zip(cs_new, cs, strict=True)]
        return (h_new, cs_new), (h_new, res)

    return jax.lax.scan(step, (h0, c0), (xs, mask), reverse=reverse, unroll=STEPS_PER_ITERATION)


@partial(jax.custom_vjp, nondiff_argnums=(7,))
def _run(w_x, w_h, b, xs, h0, c0, mask, reverse):
    (h, c), (hs, _) = _forward(w_x, w_h, b, xs, h0, c0, mask, reverse, residuals=False)
    return hs, h, c


def _run_fwd(w_x, w_h, b, xs, h0, c0, mask, reverse):
    (h, c), (hs, q) = _forward(w_x, w_h, b, xs, h0, c0, mask, reverse, residuals=True)
    return (hs, h, c), (w_x, w_h, xs, h0, mask, hs, q)


def _run_bwd(reverse, res, cotangents):
    w_x, w_h, xs, h0, mask, hs, q = res
    d_hs, d_h, d_c = cotangents
    blocks = len(w_h)
    w_h_t = [w.T for w in w_h]  # transposed once here, not in every step
    T, B = xs.shape[:2]
    ms = [m for m, _ in q]  # per block [T, B, 4H/blocks]: M_t, replaced by da_t as the scan passes
    pfs = [pf for _, pf in q]

    def step(carry, inputs):
        # dh_rec: the gradient reaching h_t from later steps; dcf: dc_{t+1} * F_{t+1}; t: this step's index
        dh_rec, dcf, ms, t = carry
        dy, pf_t, valid = inputs
        t = t - 1 if not reverse else t + 1
        dh = dy + dh_rec
        dh_parts = jnp.split(dh, blocks, axis=-1)
        ms_new, dcf_new, dh_prev = [], [], 0
        for k in range(blocks):
            m_t = jax.lax.dynamic_index_in_dim(ms[k], t, keepdims=False)
            m_i, m_f, m_g, m_o = jnp.split(m_t, 4, axis=-1)
            p, f = jnp.split(pf_t[k], 2, axis=-1)
            dc = dcf[k] + dh_parts[k] * p
            da = jnp.concatenate([dc * m_i, dc * m_f, dc * m_g, dh_parts[k] * m_o], axis=-1)
            ms_new.append(jax.lax.dynamic_update_index_in_dim(ms[k], da, t, 0))
            dcf_new.append(dc * f)
            dh_prev = dh_prev + da @ w_h_t[k]  # through the recurrent matmul
        if valid is not None:
            dh_prev = dh_prev + jnp.where(valid[:, None], 0, dh)
        return (dh_prev, dcf_new, ms_new, t), None

    t0 = jnp.array(T if not reverse else -1, jnp.int32)  # one past the backward scan's first step
    (dh0, dc0, das, _), _ = jax.lax.scan(
        step, (d_h, list(d_c), ms, t0), (d_hs, pfs, mask), reverse=not reverse, unroll=STEPS_PER_ITERATION
    )
    h_prev = previous(h0, hs, reverse).reshape(T * B, -1)
    x_flat = xs.reshape(T * B, -1)
    d_w_x, d_w_h, d_b, d_xs = [], [], [], 0
    for k in range(blocks):  # weight gradients: one matmul over all steps each
        da = das[k].reshape(T * B, -1)
        d_w_x.append(x_flat.T @ da)
        d_w_h.append(h_prev.T @ da)
        d_b.append(da.sum(0))
        d_xs = d_xs + das[k] @ w_x[k].T
    d_mask = None if mask is None else jnp.zeros(mask.shape, jax.dtypes.float0)
    return d_w_x, d_w_h, d_b, d_xs, dh0, dc0, d_mask


_run.defvjp(_run_fwd, _run_bwd)


def lstm_sequence(params, xs, h0, c0, mask=None, reverse=False, blocks: int | None = None):
    """The LSTM over a whole sequence: `xs [T, B, I]`, carry `h0, c0 [B, H]`,
    optional `mask [T, B]` (False at padded steps).

    Returns `(hs, h_T, c_T)`: the carry `h` after every step (a masked step
    repeats the previous one) and the final carry. Differentiable in params,
    inputs and initial carry (reverse mode; the VJP is hand-written).
    `blocks`: hidden-unit blocks (None: `blocks_for`'s measured default).
    """
    H = params["w_h"].shape[0]
    n = blocks_for(H, blocks)
    # double the candidate's columns: one sigmoid then gives all four gates (g = 2 sigmoid(2a) - 1)
    scale = jnp.repeat(jnp.array([1, 1, 2, 1], params["w_h"].dtype), H)
    w_x = to_blocks(params["w_x"] * scale, H, n, 4)
    w_h = to_blocks(params["w_h"] * scale, H, n, 4)
    b = [p[0] for p in to_blocks((params["b"] * scale)[None], H, n, 4)]
    hs, h, cs = _run(w_x, w_h, b, xs, h0, jnp.split(c0, n, axis=-1), mask, reverse)
    return hs, h, jnp.concatenate(cs, axis=-1)
