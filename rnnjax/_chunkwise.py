"""The chunkwise-parallel unroll of matrix-memory cells (`rnnjax.unroll(..., method=rnnjax.Chunkwise())`).

For a cell with a `MatrixRecurrence` form (per head, key-major `S [dk, dv]`)::

    S_t = exp(log_decay_t) * (S_{t-1} - beta_t k_t (k_t^T S_{t-1})) + w_t k_t v_t^T,    o_t = S_t^T q_t

the sequence is cut into chunks of C steps. Inside a chunk everything is a
masked matrix product, quadratic in C and run for all chunks at once; across
chunks a `lax.scan` over T / C steps carries the state, so the backward pass
stores one state per chunk instead of one per step.

Write `G_t` for the cumulative log decay inside a chunk (so the decay from
step s to step t is `exp(G_t - G_s) <= 1`, computed from a difference of
sums, never from a quotient of products) and `S_0` for the state entering it:

- **Decay and write only** (GLA, Mamba-2's SSD, mLSTM):
  `o_t = (q_t * exp(G_t))^T S_0 + sum_{s <= t} (q_t . (k_s * exp(G_t - G_s))) w_s v_s`.
  A per-key-dimension decay (GLA) makes the intra-chunk scores a contraction
  over a `[C, C, dk]` tensor of decays; a scalar decay a `[C, C]` matrix.
- **Delta rule** (DeltaNet, Gated DeltaNet), by the UT transform of Yang et
  al. (2024, "Parallelizing linear transformers with the delta rule over
  sequence length"): writing `S_t = exp(G_t) S_0 + sum_{s<=t} exp(G_t - G_s) k_s u_s^T`,
  the pseudo-values `u_t = beta_t (v_t - exp(log_decay_t) S_{t-1}^T k_t)` solve the unit
  lower-triangular system `(I + diag(beta) M) U = diag(beta) (V - diag(exp(G)) K S_0)`,
  `M_ts = exp(G_t - G_s) k_t . k_s` for s < t. One inverse per chunk, for all
  chunks at once, gives `U = U~ - W S_0`; the scan over chunks then needs two
  `[C, dk] x [dk, dv]` products per chunk: `U` from `S_0`, and
  `S_C = exp(G_C) S_0 + sum_s exp(G_C - G_s) k_s u_s^T`.
- **Exponential input gate** (mLSTM): the log-weight of the write at s seen
  from t is `G_t - G_s + log_write_s`; each step's stabiliser `m_t` is the
  largest of these and of the entering state's (`G_t + m_0`), exactly the
  `m_t` that the step-by-step recurrence carries, so every exponential is
  at most 1 and the chunkwise carry equals the sequential one.

`resets` start a new segment inside a chunk: decays across a reset are cut
(the pairwise masks), and the steps after it see `initial_carry` (S*) instead
of `S_0`, decayed from the reset on. Padded steps (`lengths`) are the
identity (no decay, no write). `reverse` runs the reversed sequence forward.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG = -1e30  # log of zero: large but finite, so that differences of two such values are 0, not NaN


def _segment_decays(log_decay, resets, exclusive=False):
    """Cumulative log decays inside each chunk, cut at resets.

    Args:
      log_decay: `[N, C, B, H, D]` (D = 1 for a scalar decay per head).
      resets: `[N, C, B]` booleans, or None.
      exclusive: also return the decays that end before t's own step (see below).

    Returns:
      pair: `[N, B, H, C(t), C(s), D]`, `G_t - G_s` for s <= t in the same
        segment and NEG elsewhere (so `exp(pair)` is the causal decay mask).
      base: `[N, B, H, C, D]`, the log decay of the state that entered t's
        segment, from where it entered up to t.
      after_reset: `[N, B, 1, C, 1]`, whether t's segment started at a reset
        inside the chunk (so it sees `initial_carry`, not the state entering the chunk).
      With `exclusive`, also `pair_before` (`G_{t-1} - G_s` for s < t in the same
      segment, NEG elsewhere) and `base_before` (`base` without t's own decay):
      what reaches the state that step t reads. Both are differences of the same
      cumulative sums, `G_{t-1}` taken from the sum itself rather than as
      `G_t - g_t`, so they are exactly 0 for s = t - 1 and never above 0, however
      strong the decay (in float32 a `G_t - g_t` of `|G| ~ 1e13` is off by ~1e6).
    """
    N, C, B = log_decay.shape[:3]
    G = jnp.cumsum(log_decay, axis=1)
    G_before = jnp.concatenate([jnp.zeros_like(G[:, :1]), G[:, :-1]], axis=1)  # G_{t-1}, 0 at the chunk's start
    t = jnp.arange(C)
    causal = t[:, None] >= t[None, :]  # [C(t), C(s)]
    same = causal
    base, base_before, after_reset = G, G_before, jnp.zeros((N, C, B), bool)
    if resets is not None:
        seg = jnp.moveaxis(jnp.cumsum(resets, axis=1), 1, -1)  # [N, B, C]: segment index inside the chunk
        same = (seg[..., :, None] == seg[..., None, :]) & causal  # [N, B, C, C]
        last = jax.lax.cummax(jnp.where(resets, t[None, :, None], -1), axis=1)  # the latest reset at or before t
        after_reset = last >= 0
        idx = jnp.broadcast_to(jnp.maximum(last, 0)[..., None, None], G.shape)
        before_reset = jnp.take_along_axis(G_before, idx, axis=1)  # G just before that reset
        base = jnp.where(after_reset[..., None, None], G - before_reset, G)
        base_before = jnp.where(after_reset[..., None, None], G_before - before_reset, G_before)
        same = same[:, :, None, :, :, None]
    else:
        same = same[:, :, None]
    Gt = jnp.moveaxis(G, 1, 3)  # [N, B, H, C, D]
    pair = jnp.where(same, Gt[..., :, None, :] - Gt[..., None, :, :], NEG)
    after = jnp.moveaxis(after_reset, 1, 2)[:, :, None, :, None]
    if not exclusive:
        return pair, jnp.moveaxis(base, 1, 3), after
    strict = same & (t[:, None] > t[None, :])[:, :, None]  # s < t, in the same segment
    Gb = jnp.moveaxis(G_before, 1, 3)
    pair_before = jnp.where(strict, Gb[..., :, None, :] - Gt[..., None, :, :], NEG)
    return pair, jnp.moveaxis(base, 1, 3), after, pair_before, jnp.moveaxis(base_before, 1, 3)


def _heads_first(*arrays):
    """`[N, C, B, H, ...]` -> `[N, B, H, C, ...]`, where the chunk's steps are the matrix rows."""
    return [None if a is None else jnp.moveaxis(a, 1, 3) for a in arrays]


def decay_write(q, k, v, log_decay, log_w, resets, S_star, m_star):
    """Cells without the delta rule; stabilised when `log_w` is given.

    Returns `(finish, maps)`: `finish(S_in, m_in) -> ((o, m_t), (S, m))` runs the
    scan across chunks from the state entering the first chunk, and `maps()` gives
    each chunk's map of the state (see `compose_maps`), for the time-sharded unroll.
    """
    pair, base, after = _segment_decays(log_decay, resets)
    Q, K, V, LW = _heads_first(q, k, v, log_w)
    stabilised = LW is not None
    first = jnp.where(after, 0.0, 1.0)  # [N, B, 1, C, 1]: t sees the state entering the chunk
    star = 1.0 - first  # ... or the initial carry, after a reset

    if stabilised:  # scalar decays (D = 1)
        logits = pair[..., 0] + LW[..., None, :]  # [N, B, H, C(t), C(s)]: log-weight of write s seen from t
        m_intra = jnp.max(logits, axis=-1)
        end = logits[..., -1, :]  # seen from the chunk's last step
        m_loc = jnp.max(end, axis=-1)  # [N, B, H]
        dS = jnp.einsum("nbhs,nbhsk,nbhsv->nbhkv", jnp.exp(end - m_loc[..., None]), K, V)
    else:
        dS = jnp.einsum("nbhsk,nbhsv->nbhkv", K * jnp.exp(pair[..., -1, :, :]), V)
        m_loc = jnp.zeros(dS.shape[:3], dS.dtype)
    base_end, star_end = base[..., -1, :], star[..., -1, 0]  # [N, B, H, D], [N, B, 1]

    def across_chunks(carry, chunk):
        S, m = carry
        dS_n, base_n, star_n, m_loc_n = chunk
        S_in = jnp.where(star_n[..., None, None] > 0, S_star, S)
        if not stabilised:
            return (jnp.exp(base_n)[..., None] * S_in + dS_n, m), (S, m)
        m_in = jnp.where(star_n > 0, m_star, m)
        m_new = jnp.maximum(base_n[..., 0] + m_in, m_loc_n)
        S_new = jnp.exp(base_n[..., 0] + m_in - m_new)[..., None, None] * S_in
        S_new = S_new + jnp.exp(m_loc_n - m_new)[..., None, None] * dS_n
        return (S_new, m_new), (S, m)

    def maps():
        reset = star_end > 0  # [N, B, 1]: the chunk holds a reset, so its end state forgets the entering one
        if not stabilised:
            a = jnp.where(reset[..., None], 0.0, jnp.exp(base_end))
            b = dS + jnp.where(reset[..., None, None], jnp.exp(base_end)[..., None] * S_star, 0.0)
            return ("diag", (a, b))
        lam = base_end[..., 0]  # [N, B, H]
        mu = jnp.where(reset, jnp.maximum(lam + m_star, m_loc), m_loc)
        # min(., 0): the unselected branch of `where` must not overflow either (its gradient would be NaN)
        from_star = jnp.exp(jnp.minimum(lam + m_star - mu, 0.0))[..., None, None] * S_star
        D = jnp.where(reset[..., None, None], from_star + jnp.exp(m_loc - mu)[..., None, None] * dS, dS)
        return ("stabilised", (jnp.where(reset, NEG, lam), mu, D))

    def finish(S_in, m_in):
        m0 = m_in if stabilised else jnp.zeros(S_in.shape[:2], S_in.dtype)
        (S_final, m_final), (S_n, m_n) = jax.lax.scan(across_chunks, (S_in, m0), (dS, base_end, star_end, m_loc))
        scores = jnp.einsum("nbhtk,nbhsk->nbhts", Q, K)
        if stabilised:
            lam = base[..., 0]  # [N, B, H, C]
            m_enter = jnp.where(star[..., 0] > 0, m_star[None, :, :, None], m_n[..., None])
            m_t = jnp.maximum(lam + m_enter, m_intra)
            enter = jnp.exp(lam + m_enter - m_t)[..., None]  # weight of the entering state, [N, B, H, C, 1]
            Qd = Q * enter
            A = scores * jnp.exp(logits - m_t[..., None])
        else:
            m_t = None
            Qd = Q * jnp.exp(base)
            if pair.shape[-1] == 1:
                A = scores * jnp.exp(pair[..., 0])
            else:  # one decay per key dimension (GLA): a [C, C, dk] tensor of decays
                A = jnp.einsum("nbhtk,nbhsk,nbhtsk->nbhts", Q, K, jnp.exp(pair))
        o = (
            first * jnp.einsum("nbhtk,nbhkv->nbhtv", Qd, S_n)
            + star * jnp.einsum("nbhtk,bhkv->nbhtv", Qd, S_star)
            + jnp.einsum("nbhts,nbhsv->nbhtv", A, V)
        )
        o = jnp.moveaxis(o, 3, 1)  # [N, C, B, H, dv]
        m_t = None if m_t is None else jnp.moveaxis(m_t, 3, 1)
        return (o, m_t), (S_final, m_final if stabilised else None)

    return finish, maps


# chunk lengths up to which the delta rule's triangular systems are inverted by matrix products
PRODUCT_INVERSE_UP_TO = 64


def _unit_lower_inverse(N):
    """`(I + N)^-1` for strictly lower-triangular `N [..., C, C]`, by log2(C) matrix products.

    N is nilpotent (N^C = 0), so `(I + N)^-1 = (I - N)(I + N^2)(I + N^4)...`, a
    finite product. On the CPU these batched matmuls were 3x faster than
    `solve_triangular` (C = 16, float32: 2.4 vs 7.3 ms for 512 systems with 96
    right-hand sides); the result agrees with it to 3e-7 (float32) and 5e-16
    (float64) relative at C = 64 with unit keys. The powers of N grow with C,
    though, and the product loses float32 precision on long chunks: DeltaNet's
    quadratic form (C = T = 1024) gave a loss of 4.4e6 instead of 0.88 in the
    benchmark's loss check, so chunks longer than `PRODUCT_INVERSE_UP_TO` use
    `solve_triangular`.
    """
    C = N.shape[-1]
    inverse, power, reach = jnp.eye(C, dtype=N.dtype) - N, N, 1
    while 2 * reach < C:  # each round doubles the terms: inverse = sum of (-N)^j for j < 2 * reach
        power = power @ power
        inverse = inverse + inverse @ power
        reach *= 2
    return inverse


def delta(q, k, v, log_decay, beta, resets, S_star):
    """DeltaNet and Gated DeltaNet (scalar decays) by the UT transform.

    Returns `(finish, maps)` as `_decay_write` does; `finish(S_in, None) -> ((o, None), (S, None))`.
    """
    pair, base, after = _segment_decays(log_decay, resets)
    Q, K, V, Beta = _heads_first(q, k, v, beta)
    C, dk, dv = Q.shape[3], K.shape[-1], V.shape[-1]
    decay = jnp.exp(pair[..., 0])  # [N, B, H, C(t), C(s)]: exp(G_t - G_s), causal and within segments
    enter = jnp.exp(base[..., 0])  # [N, B, H, C]
    e0 = jnp.where(after[..., 0] > 0, 0.0, enter)  # decay of the state entering the chunk, seen at t
    es = jnp.where(after[..., 0] > 0, enter, 0.0)  # ... of the initial carry, after a reset
    strict = jnp.tril(jnp.ones((C, C), bool), -1)
    M = jnp.where(strict, decay * jnp.einsum("nbhtk,nbhsk->nbhts", K, K), 0.0)
    rhs = Beta[..., None] * jnp.concatenate([V, e0[..., None] * K, es[..., None] * K], axis=-1)
    if C <= PRODUCT_INVERSE_UP_TO:
        X = _unit_lower_inverse(Beta[..., :, None] * M) @ rhs  # (I + diag(beta) M)^-1
    else:  # long chunks (the quadratic form): forward substitution keeps float32 precision
        L = jnp.eye(C, dtype=K.dtype) + Beta[..., :, None] * M
        X = jax.scipy.linalg.solve_triangular(L, rhs, lower=True, unit_diagonal=True)
    U_, W0, Ws = X[..., :dv], X[..., dv : dv + dk], X[..., dv + dk :]  # U = U_ - W0 S_0 - Ws S*
    U_star = U_ - jnp.einsum("nbhtk,bhkv->nbhtv", Ws, S_star)
    K_end = K * decay[..., -1, :][..., None]  # keys decayed to the chunk's last step
    R = es[..., -1, None, None] * S_star  # the initial carry's part of the end state, after a reset

    def across_chunks(S, chunk):
        U_n, W0_n, K_end_n, e0_n, R_n = chunk
        U = U_n - W0_n @ S  # the pseudo-values, now that S_0 is known
        return e0_n[..., None, None] * S + R_n + jnp.swapaxes(K_end_n, -1, -2) @ U, (S, U)

    def maps():
        # S_end = e0 S + R + K_end^T (U* - W0 S): a [dk, dk] transition per chunk and head
        A = e0[..., -1, None, None] * jnp.eye(dk, dtype=K.dtype) - jnp.einsum("nbhck,nbhcj->nbhkj", K_end, W0)
        return ("full", (A, R + jnp.einsum("nbhck,nbhcv->nbhkv", K_end, U_star)))

    def finish(S_in, m_in):
        S_final, (S_n, U) = jax.lax.scan(across_chunks, S_in, (U_star, W0, K_end, e0[..., -1], R))
        A = jnp.einsum("nbhtk,nbhsk->nbhts", Q, K) * decay
        o = e0[..., None] * (Q @ S_n) + es[..., None] * jnp.einsum("nbhtk,bhkv->nbhtv", Q, S_star) + A @ U
        return (jnp.moveaxis(o, 3, 1), None), (S_final, None)

    return finish, maps


def _decay_products(x, y, E):
    """`M[t, s] = sum_i x_ti y_si E[t, s, i]` for `x, y [..., C, dk]` and decays `E [..., C, C, D]`
    (D = 1: a scalar per head, one weighted matrix product; D = dk: a decay per key dimension)."""
    if E.shape[-1] == 1:
        return jnp.einsum("...tk,...sk->...ts", x, y) * E[..., 0]
    return jnp.einsum("...tk,...sk,...tsk->...ts", x, y, E)


def general(q, k, v, log_decay, a, b, resets, S_star):
    """The general form `S_t = (D_t + a_t b_t^T) S_{t-1} + k_t v_t^T` (`D_t = Diag(exp(g_t))`, a decay
    per key dimension or per head) by a WY-style representation of the chunk's transitions.

    Inside a chunk entered by `S_0`, with `G` the cumulative log decay (inclusive) and `G^-` the
    exclusive one (`G^-_t = G_t - g_t`), and `u_t = S_{t-1}^T b_t` what the low-rank term reads::

        S_t = exp(G_t) S_0 + sum_{s <= t} exp(G_t - G_s) (a_s u_s^T + k_s v_s^T)
        u_t = (b_t exp(G^-_t))^T S_0 + sum_{s < t} [b_t . a_s]_(t,s) u_s + [b_t . k_s]_(t,s) v_s

    where `[x_t . y_s]_(t,s) = sum_i x_ti y_si exp(G^-_ti - G_si)`. The pseudo-values solve the unit
    lower-triangular system `(I - L_ba) U = B~ S_0 + L_bk V`: one inverse per chunk, for all chunks at
    once, gives `U = U* + W S_0`, and the scan across chunks is two `[C, dk] x [dk, dv]` products, as
    for the delta rule. Every exponent is a difference of cumulative log decays over steps that lie
    between s and t, so at most 0: the decays are formed as a `[C, C, D]` tensor (exact for any
    decay, however strong; D = 1 for a scalar decay per head) rather than factored into
    `exp(G_t) exp(-G_s)`, which overflows once a chunk's decay passes `exp(-88)` in float32.

    The delta rule with a decay per key dimension (KDA) is this form with `a = -beta k`,
    `b = exp(g) k` (decayed first) and the write `beta k v^T`.

    Returns `(finish, maps)` as `delta` does.
    """
    pair, base, after, pair_before, base_before = _segment_decays(log_decay, resets, exclusive=True)
    Q, K, V, A, Bk = _heads_first(q, k, v, a, b)
    C, dk = Q.shape[3], K.shape[-1]
    E_incl = jnp.exp(pair)  # [N, B, H, C, C, D]: exp(G_t - G_s), s <= t in the same segment, else 0
    E_excl = jnp.exp(pair_before)  # exp(G_{t-1} - G_s), s < t: the decay from s to the state t reads
    first = after[..., 0] == 0  # [N, B, 1, C]: t's segment entered the chunk from S_0 (not a reset's S*)
    enter_incl = jnp.exp(base)  # [N, B, H, C, D]: the entering state's decay, seen at t (after t's decay)
    enter_excl = jnp.exp(base_before)  # ... seen by what t reads (before it)
    B_enter = Bk * enter_excl  # [N, B, H, C, dk]
    Q_enter = Q * enter_incl
    L_ba = _decay_products(Bk, A, E_excl)
    L_bk = _decay_products(Bk, K, E_excl)
    M_qa = _decay_products(Q, A, E_incl)
    M_qk = _decay_products(Q, K, E_incl)
    zero = jnp.zeros((), Q.dtype)
    rhs = jnp.concatenate(
        [
            jnp.einsum("...ts,...sv->...tv", L_bk, V),
            jnp.where(first[..., None], B_enter, zero),  # read from S_0 ...
            jnp.where(first[..., None], zero, B_enter),  # ... or from S*, after a reset
        ],
        axis=-1,
    )
    if C <= PRODUCT_INVERSE_UP_TO:
        X = _unit_lower_inverse(-L_ba) @ rhs  # (I - L_ba)^-1
    else:  # long chunks (the quadratic form): forward substitution keeps float32 precision
        X = jax.scipy.linalg.solve_triangular(jnp.eye(C, dtype=Q.dtype) - L_ba, rhs, lower=True, unit_diagonal=True)
    dv = V.shape[-1]
    U_, W0, Ws = X[..., :dv], X[..., dv : dv + dk], X[..., dv + dk :]  # U = U_ + W0 S_0 + Ws S*
    U_star = U_ + jnp.einsum("nbhtk,bhkv->nbhtv", Ws, S_star)
    end = E_incl[..., -1, :, :]  # [N, B, H, C, D]: exp(G_C - G_s) for s in the chunk's last segment
    A_end, K_end = A * end, K * end
    last_first = first[..., -1]  # [N, B, 1]: no reset in the chunk
    e_end = jnp.where(last_first[..., None], enter_incl[..., -1, :], 0.0)  # [N, B, H, D]: S_0's decay to the end
    # the end state's parts that do not depend on S_0: the initial carry after a reset, and the writes
    R = jnp.where(last_first[..., None], 0.0, enter_incl[..., -1, :])[..., None] * S_star
    R = R + jnp.einsum("nbhck,nbhcv->nbhkv", A_end, U_star) + jnp.einsum("nbhck,nbhcv->nbhkv", K_end, V)

    def across_chunks(S, chunk):
        U_n, W0_n, A_end_n, e_n, R_n = chunk
        U = U_n + W0_n @ S  # the pseudo-values, now that S_0 is known
        return e_n[..., None] * S + jnp.swapaxes(A_end_n, -1, -2) @ (W0_n @ S) + R_n, (S, U)

    def maps():
        # S_end = (Diag(e) + A_end^T W0) S_0 + R: a [dk, dk] transition per chunk and head
        eye = jnp.eye(dk, dtype=Q.dtype)
        A_map = e_end[..., None] * eye + jnp.einsum("nbhck,nbhcj->nbhkj", A_end, W0)
        return ("full", (A_map, R))

    def finish(S_in, m_in):
        S_final, (S_n, U) = jax.lax.scan(across_chunks, S_in, (U_star, W0, A_end, e_end, R))
        o = (
            jnp.where(first[..., None], Q_enter, zero) @ S_n
            + jnp.einsum("nbhtk,bhkv->nbhtv", jnp.where(first[..., None], zero, Q_enter), S_star)
            + M_qa @ U
            + M_qk @ V
        )
        return (jnp.moveaxis(o, 3, 1), None), (S_final, None)

    return finish, maps


# --- maps of the state, for the time axis sharded over devices --------------------------------
#
# Over a chunk (or a device's slice of the sequence) the end state is a map of the entering one:
#   "diag"        (a, b):      S -> a * S + b, `a [..., H, D]` a decay per key (D = dk) or per head (D = 1)
#   "full"        (A, b):      S -> A @ S + b, `A [..., H, dk, dk]` (the delta rule)
#   "stabilised"  (lam, mu, D): (S, m) -> (exp(lam + m - m') S + exp(mu - m') D, m'), m' = max(lam + m, mu)
# (the mLSTM's state, divided by exp(m); `mu` is the stabiliser of the slice's own writes, and
# `lam = NEG` where a reset makes the map forget the entering state). Maps compose into maps.


def apply_map(kind: str, f, state):
    """The state `(S, m)` after the map `f` (`m` is None unless `kind` is "stabilised")."""
    S, m = state
    if kind == "diag":
        a, b = f
        return a[..., None] * S + b, m
    if kind == "full":
        A, b = f
        return A @ S + b, m
    lam, mu, D = f
    m_new = jnp.maximum(lam + m, mu)
    S_new = jnp.exp(lam + m - m_new)[..., None, None] * S + jnp.exp(mu - m_new)[..., None, None] * D
    return S_new, m_new


def compose_maps(kind: str, earlier, later):
    """The map of `earlier`, then `later`."""
    if kind == "diag":
        (a1, b1), (a2, b2) = earlier, later
        return a2 * a1, a2[..., None] * b1 + b2
    if kind == "full":
        (A1, b1), (A2, b2) = earlier, later
        return A2 @ A1, A2 @ b1 + b2
    (lam1, mu1, D1), (lam2, mu2, D2) = earlier, later
    mu = jnp.maximum(lam2 + mu1, mu2)
    D = jnp.exp(lam2 + mu1 - mu)[..., None, None] * D1 + jnp.exp(mu2 - mu)[..., None, None] * D2
    return jnp.maximum(lam1 + lam2, NEG), mu, D
