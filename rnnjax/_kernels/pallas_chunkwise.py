"""The chunkwise form of the matrix-memory cells as Pallas kernels.

One program per (example, head) walks the chunks in order and keeps the
state `S [dk, dv]` on chip, so the states between chunks never go to memory.
Inside a chunk of C steps, with `G` the cumulative log decay from the chunk's
start (a `[C, C]` matrix product with a lower-triangular matrix of ones, so
no scan is needed inside the kernel), three kernels:

- **Decay and write** (GLA, Mamba-2's SSD):
  `A_ts = sum_k q_tk k_sk exp(G_tk - G_sk)` for s <= t, `o = (q * exp(G)) S + A v`,
  `S <- exp(G_C) * S + (k * exp(G_C - G))^T v`. A decay per key dimension
  (GLA) broadcasts over a `[C, C, dk]` tensor, a scalar decay per head (SSD)
  over `[C, C, 1]`.
- **Stabilised** (the mLSTM's exponential input gate `exp(w)`): the state is
  carried divided by `exp(m)`; each step's stabiliser
  `m_t = max(G_t + m, max_s(G_t - G_s + w_s))` is the one the step-by-step
  recurrence carries, so every exponential is at most 1.
- **Delta rule** (DeltaNet, Gated DeltaNet), by the UT transform: the
  pseudo-values `U = (I + diag(beta) M)^-1 diag(beta) (V - exp(G) K S)`,
  `M_ts = exp(G_t - G_s) k_t . k_s` (s < t), with the unit lower-triangular
  inverse as log2(C) matrix products (`N^C = 0`); chunks of at most
  `DELTA_MAX_CHUNK` steps, where that inverse keeps float32 precision.

Every exponent is a difference `G_t - G_s <= 0` for `s <= t` (or, stabilised,
at most 0 by the choice of m), never a quotient, so nothing overflows: the
same numerics as the pure-JAX form, rnnjax/_chunkwise.py.

The VJP is custom: the forward is the kernel, the backward is autodiff of the
pure-JAX chunkwise form on the same inputs (recomputed, as `jax.checkpoint`
would), so gradients equal the reference path's; a backward kernel is not
written yet. `rnnjax.unroll(..., method=rnnjax.Chunkwise(implementation="pallas"))` runs every matrix cell
through it for calls without `resets` (padding and `reverse` are handled
before the kernel, as on the pure-JAX path). Off a GPU it runs in Pallas's
interpret mode (`interpret=None` chooses): that is how the test suite holds it
to the sequential scan on the CPU; the GPU check (`python -m
benchmarks.accelerator`) times it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from rnnjax import _chunkwise as chunkwise_math

NEG = -1e30
# the delta rule's triangular systems are inverted by matrix products inside the kernel, which keep
# float32 precision up to chunks of this length (rnnjax/_chunkwise.py, PRODUCT_INVERSE_UP_TO)
DELTA_MAX_CHUNK = 64


def _masks(C: int, dtype):
    t = jax.lax.broadcasted_iota(jnp.int32, (C, C), 0)
    s = jax.lax.broadcasted_iota(jnp.int32, (C, C), 1)
    return t >= s, t > s, (t >= s).astype(dtype), (t == s).astype(dtype)


def _decay_write_kernel(q_ref, k_ref, v_ref, g_ref, s0_ref, o_ref, s_ref, *, chunks: int, C: int):
    causal, _, ones_lower, _ = _masks(C, q_ref.dtype)

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


def _stabilised_kernel(
    q_ref, k_ref, v_ref, g_ref, w_ref, s0_ref, m0_ref, o_ref, mt_ref, s_ref, m_ref, *, chunks: int, C: int
):
    """The mLSTM: an exponential input gate `exp(w)`, the state carried divided by `exp(m)`."""
    causal, _, ones_lower, _ = _masks(C, q_ref.dtype)

    def body(n, carry):
        S, m = carry  # [dk, dv], [1, 1]
        rows = pl.ds(n * C, C)
        q, k, v, g, w = q_ref[rows, :], k_ref[rows, :], v_ref[rows, :], g_ref[rows, :], w_ref[rows, :]
        G = jnp.dot(ones_lower, g)  # [C, 1]
        logits = jnp.where(causal, G - G.T + w.T, NEG)  # [C(t), C(s)]: log-weight of write s seen from t
        m_t = jnp.maximum(G + m, jnp.max(logits, axis=1, keepdims=True))  # [C, 1]: the step's stabiliser
        A = jnp.dot(q, k.T) * jnp.exp(logits - m_t)
        o_ref[rows, :] = jnp.exp(G + m - m_t) * jnp.dot(q, S) + jnp.dot(A, v)
        mt_ref[rows, :] = m_t
        G_end = G[C - 1 :, :]  # [1, 1]
        end = G_end - G + w  # [C, 1]: each write's log-weight at the chunk's end
        m_new = jnp.maximum(G_end + m, jnp.max(end, axis=0, keepdims=True))
        S = jnp.exp(G_end + m - m_new) * S + jnp.dot((k * jnp.exp(end - m_new)).T, v)
        return S, m_new

    S, m = jax.lax.fori_loop(0, chunks, body, (s0_ref[...], m0_ref[...]))
    s_ref[...] = S
    m_ref[...] = m


def _delta_kernel(q_ref, k_ref, v_ref, g_ref, b_ref, s0_ref, o_ref, s_ref, *, chunks: int, C: int):
    """DeltaNet and Gated DeltaNet by the UT transform (see rnnjax/_chunkwise.py)."""
    causal, strict, ones_lower, eye = _masks(C, q_ref.dtype)

    def body(n, S):
        rows = pl.ds(n * C, C)
        q, k, v, g, beta = q_ref[rows, :], k_ref[rows, :], v_ref[rows, :], g_ref[rows, :], b_ref[rows, :]
        G = jnp.dot(ones_lower, g)  # [C, 1]
        decay = jnp.exp(jnp.where(causal, G - G.T, NEG))  # [C, C]: exp(G_t - G_s), s <= t
        N = beta * jnp.where(strict, decay * jnp.dot(k, k.T), 0.0)  # diag(beta) M, strictly lower
        inverse, power, reach = eye - N, N, 1  # (I + N)^-1 = (I - N)(I + N^2)(I + N^4)..., N^C = 0
        while 2 * reach < C:
            power = jnp.dot(power, power)
            inverse = inverse + jnp.dot(inverse, power)
            reach *= 2
        e0 = jnp.exp(G)  # [C, 1]: the entering state's decay, seen at t
        U = jnp.dot(inverse, beta * v) - jnp.dot(jnp.dot(inverse, beta * e0 * k), S)  # the pseudo-values
        o_ref[rows, :] = e0 * jnp.dot(q, S) + jnp.dot(jnp.dot(q, k.T) * decay, U)
        G_end = G[C - 1 :, :]
        return jnp.exp(G_end) * S + jnp.dot((k * jnp.exp(G_end - G)).T, U)

    s_ref[...] = jax.lax.fori_loop(0, chunks, body, s0_ref[...])


KERNELS = {"decay_write": _decay_write_kernel, "stabilised": _stabilised_kernel, "delta": _delta_kernel}


def _forward(kind: str, C: int, interpret: bool, *arrays):
    """Per (example, head): the steps `[BH, T, d]` (T a multiple of C), then the states `[BH, a, b]`."""
    BH, T, dk = arrays[0].shape
    dv, dtype = arrays[2].shape[-1], arrays[0].dtype
    spec = lambda a: pl.BlockSpec((None, *a.shape[1:]), lambda i: (i, 0, 0))  # noqa: E731
    out = [jax.ShapeDtypeStruct((BH, T, dv), dtype)]  # o
    if kind == "stabilised":
        out.append(jax.ShapeDtypeStruct((BH, T, 1), dtype))  # m_t
    out.append(jax.ShapeDtypeStruct((BH, dk, dv), dtype))  # S
    if kind == "stabilised":
        out.append(jax.ShapeDtypeStruct((BH, 1, 1), dtype))  # m
    return pl.pallas_call(
        functools.partial(KERNELS[kind], chunks=T // C, C=C),
        out_shape=tuple(out),
        grid=(BH,),
        in_specs=[spec(a) for a in arrays],
        out_specs=tuple(spec(o) for o in out),
        interpret=interpret,
    )(*arrays)


def _rows(a):
    """`[N, C, B, H, d]` chunked steps (or `[N, C, B, H]`) -> `[B * H, N * C, d]`."""
    if a.ndim == 4:
        a = a[..., None]
    N, C, B, H, d = a.shape
    return jnp.transpose(a, (2, 3, 0, 1, 4)).reshape(B * H, N * C, d)


def _unrows(a, N, C, B, H):
    """`[B * H, N * C, d]` -> `[N, C, B, H, d]`."""
    return jnp.transpose(a.reshape(B, H, N, C, a.shape[-1]), (2, 3, 0, 1, 4))


def _reference(kind: str, *arrays):
    """The pure-JAX chunkwise form on the same chunked inputs: the backward pass differentiates it."""

    if kind == "delta":
        q, k, v, g, beta, S0 = arrays
        finish, _ = chunkwise_math.delta(q, k, v, g, beta, None, S0)
        (o, _), (S, _) = finish(S0, None)
        return o, S
    if kind == "stabilised":
        q, k, v, g, w, S0, m0 = arrays
        finish, _ = chunkwise_math.decay_write(q, k, v, g, w, None, S0, m0)
        (o, m_t), (S, m) = finish(S0, m0)
        return o, m_t, S, m
    q, k, v, g, S0 = arrays
    finish, _ = chunkwise_math.decay_write(q, k, v, g, None, None, S0, None)
    (o, _), (S, _) = finish(S0, None)
    return o, S


# where the states start among each kind's arrays: the steps come first
STATES_AT = {"decay_write": 4, "stabilised": 5, "delta": 5}


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _chunkwise(kind: str, interpret: bool, *arrays):
    at = STATES_AT[kind]
    steps, states = arrays[:at], arrays[at:]
    N, C, B, H = steps[0].shape[:4]
    S0 = states[0]
    rows = [_rows(a) for a in steps] + [S0.reshape(B * H, *S0.shape[2:])]
    if kind == "stabilised":
        rows.append(states[1].reshape(B * H, 1, 1))
    out = _forward(kind, C, interpret, *rows)
    if kind == "stabilised":
        o, m_t, S, m = out
        return _unrows(o, N, C, B, H), _unrows(m_t, N, C, B, H)[..., 0], S.reshape(S0.shape), m.reshape(B, H)
    o, S = out
    return _unrows(o, N, C, B, H), S.reshape(S0.shape)


def _chunkwise_fwd(kind, interpret, *arrays):
    return _chunkwise(kind, interpret, *arrays), arrays


def _chunkwise_bwd(kind, interpret, arrays, cotangents):
    _, vjp = jax.vjp(functools.partial(_reference, kind), *arrays)
    return vjp(cotangents)


_chunkwise.defvjp(_chunkwise_fwd, _chunkwise_bwd)


def chunkwise(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    log_decay: jax.Array,
    S0: jax.Array,
    *,
    beta: jax.Array | None = None,
    log_write: jax.Array | None = None,
    m0: jax.Array | None = None,
    interpret: bool | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array, jax.Array | None]:
    """The chunkwise form of a matrix recurrence in a Pallas kernel (see the module docstring).

    Args:
      q: `[N, C, B, H, dk]`, the steps in N chunks of C (rnnjax/_chunkwise.py's layout).
      k: `[N, C, B, H, dk]`.
      v: `[N, C, B, H, dv]`.
      log_decay: `[N, C, B, H, D]`, `<= 0`; D = dk (a decay per key, GLA) or 1 (per head).
      S0: `[B, H, dk, dv]`, the state entering the first chunk.
      beta: `[N, C, B, H]`, the delta rule's strength (DeltaNet, Gated DeltaNet), or None.
      log_write: `[N, C, B, H]`, the log of an exponential input gate (mLSTM), or None.
      m0: `[B, H]`, the stabiliser entering the first chunk (with `log_write`).
      interpret: Pallas's interpret mode; None: on when the backend is not a GPU.

    Returns:
      `(o [N, C, B, H, dv], m_t [N, C, B, H] or None, S [B, H, dk, dv], m [B, H] or None)`:
      `o = S_t^T q_t` (divided by `exp(m_t)` when stabilised) and the final state.
    """
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    if beta is not None and log_write is not None:
        raise ValueError("rnnjax._kernels.pallas_chunkwise: the delta rule and a stabiliser are not combined")
    C = q.shape[1]
    if beta is not None:
        if C > DELTA_MAX_CHUNK:
            raise ValueError(
                f"rnnjax._kernels.pallas_chunkwise: the delta rule's chunks are at most {DELTA_MAX_CHUNK} steps "
                f"(its triangular inverse by products loses float32 precision beyond), got chunk_size={C}"
            )
        o, S = _chunkwise("delta", interpret, q, k, v, log_decay, beta, S0)
        return o, None, S, None
    if log_write is not None:
        return _chunkwise("stabilised", interpret, q, k, v, log_decay, log_write, S0, m0)
    o, S = _chunkwise("decay_write", interpret, q, k, v, log_decay, S0)
    return o, None, S, None
