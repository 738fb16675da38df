"""The chunkwise form of the decay-and-write matrix cells (GLA, Mamba-2's SSD) as a Pallas kernel.

One program per (example, head) walks the chunks in order and keeps the
state `S [dk, dv]` on chip, so the states between chunks never go to memory.
Inside a chunk of C steps, with `G` the cumulative log decay from the chunk's
start (a `[C, C]` matrix product with a lower-triangular matrix of ones, so
no scan is needed inside the kernel):

    A_ts = sum_k q_tk k_sk exp(G_tk - G_sk)      for s <= t (0 above the diagonal)
    o    = (q * exp(G)) S + A v
    S   <- exp(G_C) * S + (k * exp(G_C - G))^T v

Every exponent is a difference `G_t - G_s <= 0` for `s <= t`, never a
quotient, so nothing overflows (the pure-JAX form, rnnjax/chunkwise.py, does
the same). A decay per key dimension (GLA) broadcasts over a `[C, C, dk]`
tensor; a scalar decay per head (SSD) over `[C, C, 1]`.

The VJP is custom: the forward is the kernel, the backward is autodiff of the
pure-JAX chunkwise form on the same inputs (recomputed, as `jax.checkpoint`
would), so gradients equal the reference path's. `rnnjax.unroll(...,
method="pallas")` runs a matrix cell through it when the cell has neither
the delta rule nor a stabiliser, and the call has no `resets` (padding and
`reverse` are handled before the kernel, as on the pure-JAX path). Off a GPU
it runs in Pallas's interpret mode (`interpret=None` chooses): that is how the
test suite holds it to the sequential scan on the CPU; the GPU check
(`python -m benchmarks.accelerator`) times it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

NEG = -1e30


def _kernel(q_ref, k_ref, v_ref, g_ref, s0_ref, o_ref, s_ref, *, chunks: int, C: int):
    t = jax.lax.broadcasted_iota(jnp.int32, (C, C), 0)
    s = jax.lax.broadcasted_iota(jnp.int32, (C, C), 1)
    causal = t >= s
    ones_lower = causal.astype(q_ref.dtype)

    def body(n, S):
        rows = pl.ds(n * C, C)
        q, k, v, g = q_ref[rows, :], k_ref[rows, :], v_ref[rows, :], g_ref[rows, :]
        G = jnp.dot(ones_lower, g)  # [C, D]: cumulative log decay inside the chunk
        pair = jnp.where(causal[:, :, None], G[:, None, :] - G[None, :, :], NEG)  # [C, C, D]
        A = jnp.sum(q[:, None, :] * k[None, :, :] * jnp.exp(pair), axis=-1)  # [C, C]
        o_ref[rows, :] = jnp.dot(q * jnp.exp(G), S) + jnp.dot(A, v)
        G_end = G[C - 1 :, :]  # [1, D]
        return jnp.exp(G_end).T * S + jnp.dot((k * jnp.exp(G_end - G)).T, v)

    s_ref[...] = jax.lax.fori_loop(0, chunks, body, s0_ref[...])


def _forward(q, k, v, g, S0, C: int, interpret: bool):
    """`q, k, g: [BH, T, dk or D]`, `v: [BH, T, dv]`, `S0: [BH, dk, dv]`, T a multiple of C."""
    BH, T, dk = q.shape
    dv, D = v.shape[-1], g.shape[-1]
    spec = lambda d: pl.BlockSpec((None, T, d), lambda i: (i, 0, 0))  # noqa: E731
    state = pl.BlockSpec((None, dk, dv), lambda i: (i, 0, 0))
    return pl.pallas_call(
        functools.partial(_kernel, chunks=T // C, C=C),
        out_shape=(jax.ShapeDtypeStruct((BH, T, dv), q.dtype), jax.ShapeDtypeStruct((BH, dk, dv), q.dtype)),
        grid=(BH,),
        in_specs=[spec(dk), spec(dk), spec(dv), spec(D), state],
        out_specs=(spec(dv), state),
        interpret=interpret,
    )(q, k, v, g, S0)


def _flatten(q, k, v, g, S0):
    """`[N, C, B, H, d]` chunked steps -> `[B * H, N * C, d]`; `S0 [B, H, dk, dv]` -> `[B * H, dk, dv]`."""

    def rows(a):
        N, C, B, H, d = a.shape
        return jnp.transpose(a, (2, 3, 0, 1, 4)).reshape(B * H, N * C, d)

    B, H = S0.shape[:2]
    return rows(q), rows(k), rows(v), rows(g), S0.reshape(B * H, *S0.shape[2:])


def _reference(q, k, v, g, S0):
    """The pure-JAX chunkwise form on the same chunked inputs: the backward pass differentiates it."""
    from rnnjax.chunkwise import _decay_write

    finish, _ = _decay_write(q, k, v, g, None, None, S0, None)
    (o, _), (S, _) = finish(S0, None)
    return o, S


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _chunkwise(q, k, v, g, S0, interpret):
    N, C, B, H, _ = q.shape
    o, S = _forward(*_flatten(q, k, v, g, S0), C, interpret)
    dv = v.shape[-1]
    o = jnp.transpose(o.reshape(B, H, N, C, dv), (2, 3, 0, 1, 4))
    return o, S.reshape(S0.shape)


def _chunkwise_fwd(q, k, v, g, S0, interpret):
    return _chunkwise(q, k, v, g, S0, interpret), (q, k, v, g, S0)


def _chunkwise_bwd(interpret, residuals, cotangents):
    _, vjp = jax.vjp(_reference, *residuals)
    return vjp(cotangents)


_chunkwise.defvjp(_chunkwise_fwd, _chunkwise_bwd)


def decay_write_chunkwise(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    log_decay: jax.Array,
    S0: jax.Array,
    *,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Outputs `o = S_t^T q_t` and the final state of `S_t = exp(log_decay_t) * S_(t-1) + k_t v_t^T`.

    Args:
      q: `[N, C, B, H, dk]`, the steps in N chunks of C (rnnjax/chunkwise.py's layout).
      k: `[N, C, B, H, dk]`.
      v: `[N, C, B, H, dv]`.
      log_decay: `[N, C, B, H, D]`, `<= 0`; D = dk (a decay per key, GLA) or 1 (per head, SSD).
      S0: `[B, H, dk, dv]`, the state entering the first chunk.
      interpret: Pallas's interpret mode; None: on when the backend is not a GPU.

    Returns:
      `(o [N, C, B, H, dv], S [B, H, dk, dv])`.
    """
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    return _chunkwise(q, k, v, log_decay, S0, interpret)
