"""rnnjax.seq2seq: the attention decoder against a NumPy step and a step loop, source padding,
gradients, and greedy / beam search against each other and against exhaustive enumeration."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax import seq2seq
from rnnjax.contract import TOLERANCES

S, B, I, M = 5, 3, 4, 6


def _setup(score="additive", cell=None, feeding=True, dtype=jnp.float64, memory_size=M):
    cell = cell or rnnjax.cells.gru(memory_size if score == "dot" else 7)
    dec = seq2seq.attention_decoder(cell, memory_size, score=score, attention_size=5, input_feeding=feeding)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), dec.init(k1, I))
    memory = jax.random.normal(k2, (S, B, memory_size), dtype)
    xs = jax.random.normal(k3, (4, B, I), dtype)
    return dec, params, memory, xs, cell


def _numpy_step(params, carry, x, memory, lengths, score, cell):
    """One decoder step from the docstring's equations, in NumPy (the cell's own step is reused)."""
    p = jax.tree_util.tree_map(np.asarray, params)
    inp = np.concatenate([np.asarray(x), np.asarray(carry.feed)], -1)
    cell_carry, q = cell.step(params["cell"], carry.cell, jnp.asarray(inp))
    q = np.asarray(q)
    mem = np.moveaxis(np.asarray(memory), 0, 1)  # [B, S, M]
    if score == "additive":
        a = p["attention"]
        e = np.tanh(mem @ a["w_key"] + (q @ a["w_query"])[:, None, :]) @ a["v"]
    elif score == "general":
        e = np.einsum("bsm,mk,bk->bs", mem, p["attention"]["w"], q)
    else:
        e = np.einsum("bsm,bm->bs", mem, q)
    alpha = np.zeros_like(e)
    for b in range(e.shape[0]):
        n = int(lengths[b])
        w = np.exp(e[b, :n] - e[b, :n].max())
        alpha[b, :n] = w / w.sum()
    context = np.einsum("bs,bsm->bm", alpha, mem)
    out = np.tanh(np.concatenate([context, q], -1) @ p["combine"]["w"])
    return cell_carry, out, alpha


@pytest.mark.parametrize("score", seq2seq.SCORES)
def test_step_matches_numpy_equations(x64, score):
    dec, params, memory, xs, cell = _setup(score)
    lengths = jnp.array([5, 2, 3])
    bound = seq2seq.attach(dec, params, memory, lengths)
    carry = dec.initial_carry(bound, (B,))
    for t in range(xs.shape[0]):
        ref_cell, ref_out, ref_alpha = _numpy_step(bound, carry, xs[t], memory, lengths, score, cell)
        carry, y = dec.step(bound, carry, xs[t])
        np.testing.assert_allclose(y, ref_out, **TOLERANCES["float64"])
        np.testing.assert_allclose(carry.weights, ref_alpha, **TOLERANCES["float64"])
        np.testing.assert_allclose(carry.cell, ref_cell, **TOLERANCES["float64"])
        assert np.all(np.asarray(carry.weights)[np.arange(S)[None] >= np.asarray(lengths)[:, None]] == 0.0)


@pytest.mark.parametrize("feeding", [True, False])
def test_unroll_equals_step_loop_with_target_lengths(x64, feeding):
    dec, params, memory, xs, _ = _setup(feeding=feeding)
    bound = seq2seq.attach(dec, params, memory, jnp.array([5, 1, 4]))
    tgt_lengths = jnp.array([4, 2, 0])
    carry, ys = rnnjax.unroll(dec, bound, xs, lengths=tgt_lengths)
    c = dec.initial_carry(bound, (B,))
    for b in range(B):
        cb = jax.tree_util.tree_map(lambda a, b=b: a[b : b + 1], c)
        one = jax.tree_util.tree_map(lambda a, b=b: a[b : b + 1], bound["source"])
        pb = {**bound, "source": one}
        for t in range(int(tgt_lengths[b])):
            cb, y = dec.step(pb, cb, xs[t, b : b + 1])
            np.testing.assert_allclose(ys[t, b], y[0], **TOLERANCES["float64"])
        np.testing.assert_allclose(ys[int(tgt_lengths[b]) :, b], 0.0)
        for got, want in zip(jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(cb), strict=True):
            np.testing.assert_allclose(got[b], want[0], **TOLERANCES["float64"])


@pytest.mark.parametrize("score", seq2seq.SCORES)
def test_source_padding_changes_nothing(x64, score):
    """Garbage after each source's length: the same outputs, weights and memory gradients as without it."""
    dec, params, memory, xs, _ = _setup(score)
    lengths = jnp.array([3, 3, 3])
    padded = memory.at[3:].set(1e3 * jax.random.normal(jax.random.key(9), memory[3:].shape))

    def run(mem):
        carry, ys = rnnjax.unroll(dec, seq2seq.attach(dec, params, mem, lengths), xs)
        return ys, carry.weights

    (ys_a, w_a), (ys_b, w_b) = run(memory[:3]), run(padded)
    np.testing.assert_allclose(ys_a, ys_b, **TOLERANCES["float64"])
    np.testing.assert_allclose(w_a, w_b[:, :3], **TOLERANCES["float64"])
    assert np.all(np.asarray(w_b[:, 3:]) == 0.0)
    g = jax.grad(lambda mem: jnp.sum(run(mem)[0] ** 2))(padded)
    assert np.all(np.asarray(g[3:]) == 0.0)


def test_gradients_through_attach_and_unroll_match_finite_differences(x64):
    dec, params, memory, xs, _ = _setup("additive", cell=rnnjax.cells.lstm(7))
    lengths = jnp.array([5, 2, 4])

    def loss(params, memory):
        _, ys = rnnjax.unroll(dec, seq2seq.attach(dec, params, memory, lengths), xs, lengths=jnp.array([4, 3, 1]))
        return jnp.sum(jnp.sin(ys))

    check_grads(loss, (params, memory), order=1, modes=("rev",), atol=1e-7, rtol=1e-7)


def test_length_zero_source_gives_zero_context_not_nan(x64):
    dec, params, memory, xs, _ = _setup()
    bound = seq2seq.attach(dec, params, memory, jnp.array([0, 2, 5]))
    _, ys = rnnjax.unroll(dec, bound, xs)
    assert np.all(np.isfinite(np.asarray(ys)))
    carry, _ = rnnjax.unroll(dec, bound, xs)
    assert np.all(np.asarray(carry.weights[0]) == 0.0)


def test_errors_name_the_argument():
    cell = rnnjax.cells.gru(7)
    with pytest.raises(ValueError, match="score='dot' needs memory_size equal to the cell's output size 7"):
        seq2seq.attention_decoder(cell, 6, score="dot")
    with pytest.raises(ValueError, match="`score` must be one of"):
        seq2seq.attention_decoder(cell, 6, score="luong")
    dec = seq2seq.attention_decoder(cell, 6)
    params = dec.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="carry no source; call rnnjax.seq2seq.attach"):
        dec.initial_carry(params, (2,))
    with pytest.raises(ValueError, match=r"`memory` must be \[S, \*batch, 6\].*got shape \(5, 2, 3\)"):
        seq2seq.attach(dec, params, jnp.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"`lengths` must be integers of the memory's batch shape \(2,\)"):
        seq2seq.attach(dec, params, jnp.zeros((5, 2, 6)), jnp.array([1, 2, 3]))
    with pytest.raises(TypeError, match="must come from rnnjax.seq2seq.attention_decoder"):
        seq2seq.attach(cell, params, jnp.zeros((5, 2, 6)))


# --- decoding --------------------------------------------------------------------------------

V, H = 4, 8  # token 0 is EOS, 1 is BOS


def _toy_model(scale=2.0):
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    w = scale * jax.random.normal(k1, (H, H)) / np.sqrt(H)
    emb = scale * jax.random.normal(k2, (V, H))
    out = scale * jax.random.normal(k3, (H, V))

    def step_fn(h, tokens):
        h = jnp.tanh(h @ w + emb[tokens])
        return h, h @ out

    h0 = jax.random.normal(jax.random.key(4), (5, H))  # 5 different starting states: 5 problems
    return step_fn, h0


def test_beam_size_one_equals_greedy():
    step_fn, h0 = _toy_model()
    kw = dict(bos=1, eos=0, max_len=7, trace=lambda h: h)
    g = seq2seq.greedy_search(step_fn, h0, **kw)
    b = seq2seq.beam_search(step_fn, h0, beam_size=1, **kw)
    np.testing.assert_array_equal(g.tokens, b.tokens)
    np.testing.assert_array_equal(g.lengths, b.lengths)
    np.testing.assert_allclose(g.scores, b.scores, rtol=1e-6)
    np.testing.assert_allclose(g.trace, b.trace, rtol=1e-6)


def _enumerate_best(step_fn, h0, max_len, length_penalty):
    """Every sequence of at most max_len tokens (ending at the first EOS, or unfinished at max_len),
    scored one by one with the step function; the best per problem."""
    best = []
    for b in range(h0.shape[0]):
        top = (-np.inf, None)
        for n in range(1, max_len + 1):
            for body in itertools.product(range(1, V), repeat=n - 1):
                for last in range(V) if n == max_len else [0]:
                    seq = (*body, last)
                    h, tok, total = h0[b : b + 1], 1, 0.0
                    for s in seq:
                        h, logits = step_fn(h, jnp.array([tok]))
                        total += float(jax.nn.log_softmax(logits[0])[s])
                        tok = s
                    score = total / n**length_penalty
                    if score > top[0]:
                        top = (score, seq)
        best.append(top)
    return best


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_finds_the_best_sequence(length_penalty):
    """With a beam wider than the number of distinct hypotheses, beam search is exhaustive."""
    step_fn, h0 = _toy_model()
    max_len = 3
    res = seq2seq.beam_search(
        step_fn, h0, bos=1, eos=0, max_len=max_len, beam_size=V**max_len, length_penalty=length_penalty
    )
    for b, (score, seq) in enumerate(_enumerate_best(step_fn, h0, max_len, length_penalty)):
        n = len(seq)
        assert int(res.lengths[b, 0]) == n
        np.testing.assert_array_equal(res.tokens[b, 0, :n], seq)
        np.testing.assert_allclose(res.scores[b, 0], score, rtol=1e-5)
    # beams come sorted, and narrower beams never beat the exhaustive one
    finite = np.isfinite(np.asarray(res.scores))
    assert finite.sum(axis=1).min() == 1 + (V - 1) + (V - 1) ** 2 + (V - 1) ** 3  # every hypothesis, once
    assert np.all(np.diff(np.where(finite, res.scores, -1e30), axis=1) <= 0)
    narrow = seq2seq.beam_search(step_fn, h0, bos=1, eos=0, max_len=max_len, beam_size=2, length_penalty=length_penalty)
    assert np.all(np.asarray(narrow.scores[:, 0]) <= np.asarray(res.scores[:, 0]) + 1e-6)


def test_beam_search_jits_once_and_repeats_eos_after_the_end():
    step_fn, h0 = _toy_model()
    traces = []

    @jax.jit
    def run(h):
        traces.append(1)
        return seq2seq.beam_search(step_fn, h, bos=1, eos=0, max_len=6, beam_size=3)

    res = run(h0)
    run(h0 + 1.0)
    assert len(traces) == 1
    tokens, lengths = np.asarray(res.tokens), np.asarray(res.lengths)
    for b, k in itertools.product(range(h0.shape[0]), range(3)):
        n = lengths[b, k]
        assert 0 not in tokens[b, k, : n - 1]  # no EOS before the end
        if n < 6:
            assert np.all(tokens[b, k, n - 1 :] == 0)


def test_decoding_errors():
    step_fn, h0 = _toy_model()
    with pytest.raises(ValueError, match="`beam_size` must be a positive int, got 0"):
        seq2seq.beam_search(step_fn, h0, bos=1, eos=0, max_len=3, beam_size=0)
    with pytest.raises(ValueError, match="`max_len` must be a positive int"):
        seq2seq.greedy_search(step_fn, h0, bos=1, eos=0, max_len=0)
    with pytest.raises(ValueError, match="share one leading batch size"):
        seq2seq.greedy_search(lambda c, t: (c, c[0]), (h0, h0[:2]), bos=1, eos=0, max_len=2)


def test_attention_decoder_beam_search_ignores_source_padding(x64):
    """End to end: an attention decoder decoded with beam search; padding the source changes nothing."""
    dec, params, memory, _, _ = _setup()
    vocab = 5
    emb = jax.random.normal(jax.random.key(5), (vocab, I), jnp.float64)
    w_out = 3.0 * jax.random.normal(jax.random.key(6), (5, vocab), jnp.float64)
    lengths = jnp.array([3, 1, 2])

    def decode(mem):
        source = seq2seq.attach(dec, params, mem, lengths)["source"]
        carry = (dec.initial_carry({**params, "source": source}, (B,)), source)

        def step_fn(carry, tokens):
            c, src = carry
            c, y = dec.step({**params, "source": src}, c, emb[tokens])
            return (c, src), y @ w_out

        return seq2seq.beam_search(step_fn, carry, bos=1, eos=0, max_len=6, beam_size=3, trace=lambda c: c[0].weights)

    a = decode(memory[:3])
    padded = memory.at[3:].set(50.0)
    b = decode(padded)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-12)
    np.testing.assert_allclose(a.trace, b.trace[..., :3], rtol=1e-12, atol=1e-14)
    assert np.all(np.asarray(b.trace[..., 3:]) == 0.0)
