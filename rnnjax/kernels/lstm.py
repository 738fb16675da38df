"""The LSTM's sequence kernel: the whole unroll as one function with a hand-written VJP.

`rnnjax.unroll` runs this instead of `lax.scan` over `lstm.step` on CPU (see
`Cell.sequence`). It computes the same function (tests/test_lstm_kernel.py
checks values and gradients against the plain scan and the NumPy reference);
what differs is how the work is laid out for XLA:CPU, from measurements on a
2-core x86 machine (README "Benchmarks" and
benchmarks/results/cpu-lstm-kernel-2026-11-26.md have the numbers):

- **Hidden units in blocks.** The gate matmul `h @ W_h` is split by hidden
  unit into `blocks` independent chains (each block's four gates and its
  elementwise work), joined once per step by concatenating `h`. XLA's runtime
  runs independent chains on different cores, each chain's slice of `W_h`
  stays in its core's cache, and no core sits idle while another does the
  gates. The single `[B, 4H]` matmul is spread across cores by the matmul
  library instead, whose worker threads fall asleep during the gate work and
  are slow to wake: per step that cost more than the matmul itself.
- **Manual BPTT** (the equations of rnnjax/reference/lstm.py): the backward
  scan does one `[B, 4H/blocks] x [4H/blocks, H]` product per block and step
  and stacks the gate gradients `da_t`; the weight gradients are then one
  large matmul each over all steps, instead of XLA's per-step accumulation.
- **Unrolled scans** (4 steps per loop iteration), which XLA:CPU compiles to
  better code for reading the stored activations.

Masked steps (`lengths`) follow `unroll`'s rules: they keep the carry and
get zero gradient. The caller turns the stacked carries into outputs.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

STEPS_PER_ITERATION = 4


def blocks_for(hidden_size: int, blocks: int = 2) -> int:
    """The number of hidden-unit blocks: `blocks` when it divides H, else 1."""
    return blocks if hidden_size % blocks == 0 else 1


def _to_blocks(w: jax.Array, hidden_size: int, blocks: int) -> list[jax.Array]:
    """`[rows, 4H]` (gates i|f|g|o) -> `blocks` arrays `[rows, 4H/blocks]`, each the
    four gates of one block of hidden units, in the same i|f|g|o order."""
    per = hidden_size // blocks
    w4 = w.reshape(w.shape[0], 4, hidden_size)
    return [w4[:, :, k * per:(k + 1) * per].reshape(w.shape[0], 4 * per) for k in range(blocks)]


def _forward(w_x, w_h, b, xs, h0, c0, mask, reverse):
    """Run the blocked LSTM; returns the final carry and per step the carries `h, c`
    (masked steps repeat the previous carry) and the activated gates."""
    blocks = len(w_h)

    def step(carry, inputs):
        h, cs = carry
        x, valid = inputs
        hs, cs_new, gates = [], [], []
        for k in range(blocks):
            a = x @ w_x[k] + h @ w_h[k] + b[k]
            a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
            i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
            c = f * cs[k] + i * g
            hs.append(o * jnp.tanh(c))
            cs_new.append(c)
            gates.append(jnp.concatenate([i, f, g, o], axis=-1))
        h_new = jnp.concatenate(hs, axis=-1)
        if valid is not None:
            v = valid[:, None]
            h_new = jnp.where(v, h_new, h)
            cs_new = [jnp.where(v, c, c_old) for c, c_old in zip(cs_new, cs)]
        return (h_new, cs_new), (h_new, cs_new, gates)

    return jax.lax.scan(step, (h0, c0), (xs, mask), reverse=reverse, unroll=STEPS_PER_ITERATION)


@partial(jax.custom_vjp, nondiff_argnums=(7,))
def _run(w_x, w_h, b, xs, h0, c0, mask, reverse):
    (h, c), (hs, _, _) = _forward(w_x, w_h, b, xs, h0, c0, mask, reverse)
    return hs, h, c


def _run_fwd(w_x, w_h, b, xs, h0, c0, mask, reverse):
    (h, c), (hs, cs, gates) = _forward(w_x, w_h, b, xs, h0, c0, mask, reverse)
    return (hs, h, c), (w_x, w_h, xs, h0, c0, mask, hs, cs, gates)


def _previous(first, stacked, reverse):
    """Each step's incoming carry: the stacked carries shifted by one step in scan order."""
    if reverse:
        return jnp.concatenate([stacked[1:], first[None]])
    return jnp.concatenate([first[None], stacked[:-1]])


def _run_bwd(reverse, res, cotangents):
    w_x, w_h, xs, h0, c0, mask, hs, cs, gates = res
    d_hs, d_h, d_c = cotangents
    blocks = len(w_h)
    cs_prev = [_previous(c0[k], cs[k], reverse) for k in range(blocks)]
    w_h_t = [w.T for w in w_h]  # transposed once here, not in every step

    def step(carry, inputs):
        dh_next, dc_next = carry
        dy, c, c_prev, gate, valid = inputs
        dh = dy + dh_next  # the step's h feeds the output and the next step
        if valid is not None:
            v = valid[:, None].astype(dh.dtype)
            dh_new, dc_new = dh * v, [dc * v for dc in dc_next]  # a masked step passes them through
        else:
            dh_new, dc_new = dh, dc_next
        dh_parts = jnp.split(dh_new, blocks, axis=-1)
        das, dc_prev, dh_prev = [], [], 0
        for k in range(blocks):
            i, f, g, o = jnp.split(gate[k], 4, axis=-1)
            tanh_c = jnp.tanh(c[k])
            dc = dc_new[k] + dh_parts[k] * o * (1 - tanh_c**2)  # through h = o * tanh(c)
            da = jnp.concatenate([
                dc * g * i * (1 - i),  # input gate, through sigmoid
                dc * c_prev[k] * f * (1 - f),  # forget gate
                dc * i * (1 - g**2),  # candidate, through tanh
                dh_parts[k] * tanh_c * o * (1 - o),  # output gate
            ], axis=-1)
            das.append(da)
            dc_prev.append(dc * f)
            dh_prev = dh_prev + da @ w_h_t[k]  # through the recurrent matmul
        if valid is not None:
            dh_prev = dh_prev + dh * (1 - v)
            dc_prev = [d + dc_n * (1 - v) for d, dc_n in zip(dc_prev, dc_next)]
        return (dh_prev, dc_prev), das

    (dh0, dc0), das = jax.lax.scan(
        step, (d_h, list(d_c)), (d_hs, cs, cs_prev, gates, mask), reverse=not reverse, unroll=STEPS_PER_ITERATION
    )
    T, B = xs.shape[:2]
    h_prev = _previous(h0, hs, reverse).reshape(T * B, -1)
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


def lstm_sequence(params, xs, h0, c0, mask=None, reverse=False, blocks: int = 2):
    """The LSTM over a whole sequence: `xs [T, B, I]`, carry `h0, c0 [B, H]`,
    optional `mask [T, B]` (False at padded steps).

    Returns `(hs, h_T, c_T)`: the carry `h` after every step (a masked step
    repeats the previous one) and the final carry. Differentiable in params,
    inputs and initial carry (reverse mode; the VJP is hand-written).
    """
    H = params["w_h"].shape[0]
    n = blocks_for(H, blocks)
    w_x = _to_blocks(params["w_x"], H, n)
    w_h = _to_blocks(params["w_h"], H, n)
    b = [p[0] for p in _to_blocks(params["b"][None], H, n)]
    hs, h, cs = _run(w_x, w_h, b, xs, h0, jnp.split(c0, n, axis=-1), mask, reverse)
    return hs, h, jnp.concatenate(cs, axis=-1)
