"""Sequence to sequence: an attention decoder over encoder outputs, greedy and beam-search decoding.

An encoder is any `rnnjax.unroll` (or `rnnjax.layers.bidirectional`) over the
source; its outputs are the *memory* the decoder attends to::

    dec = rnnjax.seq2seq.attention_decoder(rnnjax.cells.gru(128), memory_size=256)
    dparams = dec.init(key, input_size=embed_size)            # cell + attention weights
    enc_carry, memory = rnnjax.unroll(encoder, eparams, src, lengths=src_lengths)  # memory [S, B, M]
    bound = rnnjax.seq2seq.attach(dec, dparams, memory, src_lengths)
    carry0 = dec.initial_carry(bound, (B,))._replace(cell=enc_carry)   # optional: start from the encoder
    _, hs = rnnjax.unroll(dec, bound, tgt_in, initial_carry=carry0, lengths=tgt_lengths)  # teacher forcing
    logits = hs @ w_out                                          # [T, B, vocab]

The decoder is a `Cell`, so `unroll` trains it (lengths, remat, ...) and its
`step` decodes. The source enters through the params (`attach`), where the
scan closes over it instead of carrying it from step to step; gradients reach
the encoder through `attach` like through any other function.

Decoding is generic: `greedy_search` and `beam_search` take a step function
`(carry, tokens [N]) -> (carry, logits [N, V])` and a carry whose leaves have
a leading batch axis (put the source in it for an attention decoder; see
`experiments/seq2seq.py`), and run a fixed number of steps under `lax.scan`,
so they compile once per shape inside `jax.jit`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rnnjax._forms import Array, Carry, Cell, Params

SCORES = ("additive", "dot", "general")


class AttentionState(NamedTuple):
    """The carry of an attention decoder.

    Attributes:
      cell: the wrapped cell's carry.
      feed: `[*batch, A]` the previous step's attentional output, fed back with
        the next input (input feeding, Luong et al. 2015); zeros at the start.
      weights: `[*batch, S]` the attention weights of the previous step (zeros at the start).
    """

    cell: Carry
    feed: Array
    weights: Array


def _dense(key, fan_in: int, fan_out: int, dtype) -> Array:
    return jax.random.normal(key, (fan_in, fan_out), dtype) / jnp.sqrt(jnp.asarray(fan_in, dtype))


def attention_decoder(
    cell: Cell,
    memory_size: int,
    *,
    score: str = "additive",
    attention_size: int | None = None,
    input_feeding: bool = True,
) -> Cell:
    """A decoder cell that attends, at every step, over the encoder outputs it was `attach`ed to.

    At step t, with input `x_t` and source memory `h_1..h_S` (valid where the source mask is True)::

        (carry_t, q_t) = cell.step(carry_{t-1}, [x_t ; a_{t-1}])       # [x_t] without input feeding
        e_tj = v^T tanh(W_q q_t + W_k h_j)     score="additive"  (Bahdanau et al. 2015)
             = q_t . h_j                       score="dot"       (Luong et al. 2015; needs M = cell output)
             = q_t^T W_a h_j                   score="general"   (Luong et al. 2015)
        alpha_t = softmax over the valid j of e_tj     (padding gets weight exactly 0)
        c_t = sum_j alpha_tj h_j
        a_t = tanh(W_c [c_t ; q_t])                     the step's output y_t, [*batch, A]

    The query is the cell's output after the step, as in Luong et al. and
    TensorFlow's AttentionWrapper for both scores; Bahdanau's additive score
    is kept, his ordering (querying with the previous state) is not.

    Args:
      cell: any cell (registered or a stack).
      memory_size: M, the size of each encoder output the decoder attends to.
      score: "additive", "dot" or "general".
      attention_size: A, the size of `a_t` and of the additive score's hidden
        layer; default the cell's output size.
      input_feeding: concatenate `a_{t-1}` to the input (the cell then reads
        `input_size + A` features).

    Returns:
      A `Cell` named `attention_<cell>`. Its params, `{"cell", "attention",
      "combine", "source": None}`, hold no source: `attach(decoder, params, memory, lengths)`
      adds it before `initial_carry`, `step` or `unroll` are called.
    """
    fn = "rnnjax.seq2seq.attention_decoder"
    if not isinstance(cell, Cell):
        raise TypeError(f"{fn}: `cell` must be an rnnjax Cell, got {type(cell).__name__}")
    if score not in SCORES:
        raise ValueError(f"{fn}: `score` must be one of {list(SCORES)}, got {score!r}")
    if not isinstance(memory_size, int) or memory_size < 1:
        raise ValueError(f"{fn}: `memory_size` must be a positive int, got {memory_size!r}")
    query_size = cell.output_size
    if score == "dot" and memory_size != query_size:
        raise ValueError(
            f"{fn}: score='dot' needs memory_size equal to the cell's output size {query_size}, "
            f"got memory_size={memory_size}; use score='general' or 'additive' for different sizes"
        )
    size = query_size if attention_size is None else attention_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"{fn}: `attention_size` must be a positive int or None, got {attention_size!r}")

    def init(key, input_size):
        k_cell, k_q, k_k, k_v, k_c = jax.random.split(key, 5)
        # "source": None is the slot `attach` fills (unroll's params check skips None slots)
        params = {"cell": cell.init(k_cell, input_size + (size if input_feeding else 0)), "source": None}
        dtype = jax.tree_util.tree_leaves(params["cell"])[0].dtype
        if score == "additive":
            params["attention"] = {
                "w_query": _dense(k_q, query_size, size, dtype),
                "w_key": _dense(k_k, memory_size, size, dtype),
                "v": jax.random.normal(k_v, (size,), dtype) / jnp.sqrt(jnp.asarray(size, dtype)),
            }
        elif score == "general":
            params["attention"] = {"w": _dense(k_k, memory_size, query_size, dtype)}
        else:
            params["attention"] = {}
        params["combine"] = {"w": _dense(k_c, memory_size + query_size, size, dtype)}
        return params

    def source(params):
        if params.get("source") is None:
            raise ValueError(
                f"rnnjax.seq2seq: the params of {name!r} carry no source; call "
                f"rnnjax.seq2seq.attach(decoder, params, memory, lengths) first"
            )
        return params["source"]

    def initial_carry(params, batch_shape=()):
        src = source(params)
        batch_shape = tuple(batch_shape)
        S = src["mask"].shape[-1]
        dtype = src["memory"].dtype
        return AttentionState(
            cell=cell.initial_carry(params["cell"], batch_shape),
            feed=jnp.zeros((*batch_shape, size), dtype),
            weights=jnp.zeros((*batch_shape, S), dtype),
        )

    def step(params, carry, x):
        src = source(params)
        inp = jnp.concatenate([x, carry.feed.astype(x.dtype)], axis=-1) if input_feeding else x
        cell_carry, q = cell.step(params["cell"], carry.cell, inp)
        att = params["attention"]
        keys = src["keys"]  # [*batch, S, K], projected once in `attach`
        if score == "additive":
            e = jnp.tanh(keys + (q @ att["w_query"])[..., None, :]) @ att["v"]
        else:
            e = jnp.einsum("...sk,...k->...s", keys, q)
        mask = src["mask"]
        e = jnp.where(mask, e, jnp.finfo(e.dtype).min)
        # times the mask: padding gets exactly 0 (and a source of length 0 gives c_t = 0, not NaN)
        alpha = jax.nn.softmax(e, axis=-1) * mask
        context = jnp.einsum("...s,...sm->...m", alpha, src["memory"])
        a = jnp.tanh(jnp.concatenate([context, q], axis=-1) @ params["combine"]["w"])
        return AttentionState(cell_carry, a, alpha), a

    def input_spec(params):
        n, dtype = cell.input_spec(params["cell"])
        return (n - size if input_feeding else n), dtype

    name = f"attention_{cell.name}"
    return Cell(
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_spec=input_spec,
        name=name,
        hidden_size=cell.hidden_size,
        output_size=size,
        config={
            "cell": cell.name,
            "memory_size": memory_size,
            "score": score,
            "attention_size": size,
            "input_feeding": input_feeding,
        },
    )


def attach(decoder: Cell, params: Params, memory: ArrayLike, lengths: ArrayLike | None = None) -> Params:
    """The decoder's params with a source to attend to.

    Args:
      decoder: a cell from `attention_decoder`.
      params: its params (from `decoder.init`).
      memory: encoder outputs `[S, *batch, M]`, time-major as `rnnjax.unroll` returns them.
      lengths: `[*batch]` valid source steps (right padding); None: all S are valid.

    Returns:
      `{**params, "source": {"memory" [*batch, S, M], "keys" [*batch, S, K], "mask" [*batch, S]}}`,
      with the keys projected once for the whole decode.
    """
    fn = "rnnjax.seq2seq.attach"
    config = decoder.config
    if "score" not in config or "memory_size" not in config:
        raise TypeError(f"{fn}: `decoder` must come from rnnjax.seq2seq.attention_decoder, got cell {decoder.name!r}")
    memory = jnp.asarray(memory)
    M = config["memory_size"]
    if memory.ndim < 2 or memory.shape[-1] != M:
        raise ValueError(
            f"{fn}: `memory` must be [S, *batch, {M}] (the decoder's memory_size is {M}), "
            f"got shape {tuple(memory.shape)}"
        )
    memory = jnp.moveaxis(memory, 0, -2)  # [*batch, S, M]
    batch_shape, S = memory.shape[:-2], memory.shape[-2]
    if lengths is None:
        mask = jnp.ones((*batch_shape, S), bool)
    else:
        lengths = jnp.asarray(lengths)
        if tuple(lengths.shape) != tuple(batch_shape) or not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise ValueError(
                f"{fn}: `lengths` must be integers of the memory's batch shape {tuple(batch_shape)}, "
                f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        mask = jnp.arange(S) < lengths[..., None]
    att = params["attention"]
    if config["score"] == "additive":
        keys = memory @ att["w_key"]
    elif config["score"] == "general":
        keys = memory @ att["w"]
    else:
        keys = memory
    return {**params, "source": {"memory": memory, "keys": keys, "mask": mask}}


# --- decoding --------------------------------------------------------------------------------

StepFn = Callable[[Carry, Array], tuple[Carry, Array]]


class Decoded(NamedTuple):
    """What `greedy_search` and `beam_search` return.

    Attributes:
      tokens: `[B, K, L]` int32, the generated tokens (BOS not included), EOS
        included where it was generated and repeated after it. K = 1 for greedy.
      lengths: `[B, K]` tokens up to and including the first EOS (L if none).
      scores: `[B, K]` the sum of the tokens' log-probabilities divided by
        `lengths ** length_penalty`; beams sorted best first.
      log_probs: `[B, K]` the unnormalised sum of log-probabilities.
      trace: `trace(carry)` after every step, `[B, K, L, ...]` (None without `trace`).
    """

    tokens: Array
    lengths: Array
    scores: Array
    log_probs: Array
    trace: Any


def _score_dtype(step_fn, carry):
    """float32, or float64 when the logits are (so float64 tests compare exactly)."""
    tokens = jax.ShapeDtypeStruct((jax.tree_util.tree_leaves(carry)[0].shape[0],), jnp.int32)
    _, logits = jax.eval_shape(step_fn, carry, tokens)
    return jnp.promote_types(logits.dtype, jnp.float32)


def _check_decode_args(fn, carry, bos, eos, max_len, beam_size) -> int:
    leaves = jax.tree_util.tree_leaves(carry)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError(f"{fn}: every leaf of `carry` needs a leading batch axis, got {carry!r}")
    sizes = {leaf.shape[0] for leaf in leaves}
    if len(sizes) != 1:
        raise ValueError(f"{fn}: the leaves of `carry` must share one leading batch size, got sizes {sorted(sizes)}")
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"{fn}: `max_len` must be a positive int, got {max_len!r}")
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"{fn}: `beam_size` must be a positive int, got {beam_size!r}")
    for name, tok in (("bos", bos), ("eos", eos)):
        if not isinstance(tok, int) or tok < 0:
            raise ValueError(f"{fn}: `{name}` must be a non-negative int token id, got {tok!r}")
    return sizes.pop()


def beam_search(
    step_fn: StepFn,
    carry: Carry,
    *,
    bos: int,
    eos: int,
    max_len: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
    trace: Callable[[Carry], Any] | None = None,
) -> Decoded:
    """Batched beam search for a fixed number of steps, under `lax.scan` (jit it from outside).

    Every sequence starts from `bos`. At each step every live beam is
    extended by every token and the `beam_size` best partial sequences by
    summed log-probability are kept per batch element; a beam that has
    emitted `eos` stays, extended by `eos` at no cost, so finished and live
    hypotheses compete on the same footing. At the end (after `max_len`
    tokens) the beams are ranked by `log_prob / length ** length_penalty`
    (0: the raw sum; 1: the mean per token), counting the EOS token.

    Args:
      step_fn: `(carry, tokens [N]) -> (carry, logits [N, V])`, N = B * beam_size.
      carry: the starting state, every leaf `[B, ...]` (it is repeated per beam).
      bos: the token id every sequence starts from.
      eos: the token id that ends a sequence.
      max_len: steps to run (the longest output).
      beam_size: K; 1 is greedy search.
      length_penalty: the exponent of the length normalisation.
      trace: optional `carry -> pytree` recorded after each step and reordered
        with the beams, e.g. `lambda c: c.weights` for an attention decoder's
        weights (then `trace` is `[B, K, L, S]`).
    """
    fn = "rnnjax.seq2seq.beam_search"
    B = _check_decode_args(fn, carry, bos, eos, max_len, beam_size)
    K = beam_size
    carry = jax.tree_util.tree_map(lambda c: jnp.repeat(c, K, axis=0), carry)  # [B*K, ...], beam-minor
    dtype = _score_dtype(step_fn, carry)

    def reorder(tree, flat_idx):
        return jax.tree_util.tree_map(lambda c: jnp.take(c, flat_idx, axis=0), tree)

    def body(state, t):
        carry, last, logp_sum, done, length, tokens, traces = state
        new_carry, logits = step_fn(carry, last.reshape(B * K))
        V = logits.shape[-1]
        logp = jax.nn.log_softmax(logits.astype(dtype), axis=-1).reshape(B, K, V)
        # a finished beam has one continuation, EOS at no cost
        only_eos = jnp.where(jnp.arange(V) == eos, 0.0, -jnp.inf)
        logp = jnp.where(done[..., None], only_eos, logp)
        cand = (logp_sum[..., None] + logp).reshape(B, K * V)
        best, idx = jax.lax.top_k(cand, K)  # [B, K]
        beam, tok = idx // V, (idx % V).astype(jnp.int32)
        flat = (jnp.arange(B)[:, None] * K + beam).reshape(B * K)
        was_done = jnp.take_along_axis(done, beam, axis=1)
        length = jnp.take_along_axis(length, beam, axis=1) + (~was_done).astype(jnp.int32)
        done = was_done | (tok == eos)
        tokens = jnp.take_along_axis(tokens, beam[..., None], axis=1).at[:, :, t].set(tok)
        new_carry = reorder(new_carry, flat)
        if trace is not None:
            traces = jax.tree_util.tree_map(
                lambda buf, now: (
                    jnp.take_along_axis(buf, beam.reshape(B, K, *([1] * (buf.ndim - 2))), axis=1)
                    .at[:, :, t]
                    .set(now.reshape(B, K, *now.shape[1:]))
                ),
                traces,
                trace(new_carry),
            )
        return (new_carry, tok, best, done, length, tokens, traces), None

    traces = None
    if trace is not None:
        shapes = jax.eval_shape(trace, carry)
        traces = jax.tree_util.tree_map(lambda s: jnp.zeros((B, K, max_len, *s.shape[1:]), s.dtype), shapes)
    state = (
        carry,
        jnp.full((B, K), bos, jnp.int32),
        jnp.tile(jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf).astype(dtype), (B, 1)),  # one live beam at the start
        jnp.zeros((B, K), bool),
        jnp.zeros((B, K), jnp.int32),
        jnp.zeros((B, K, max_len), jnp.int32),
        traces,
    )
    (_, _, logp_sum, _, length, tokens, traces), _ = jax.lax.scan(body, state, jnp.arange(max_len))
    scores = logp_sum / jnp.maximum(length, 1).astype(dtype) ** length_penalty
    order = jnp.argsort(-scores, axis=1, stable=True)
    take = lambda a: jnp.take_along_axis(a, order.reshape(*order.shape, *([1] * (a.ndim - 2))), axis=1)  # noqa: E731
    return Decoded(
        tokens=take(tokens),
        lengths=take(length),
        scores=take(scores),
        log_probs=take(logp_sum),
        trace=None if traces is None else jax.tree_util.tree_map(take, traces),
    )


def greedy_search(
    step_fn: StepFn,
    carry: Carry,
    *,
    bos: int,
    eos: int,
    max_len: int,
    length_penalty: float = 1.0,
    trace: Callable[[Carry], Any] | None = None,
) -> Decoded:
    """The most likely token at every step, for `max_len` steps; EOS repeats once generated.

    Written on its own (argmax, no beams), so that `beam_search(beam_size=1)`
    can be tested against it. Same arguments and result as `beam_search`, with K = 1.
    """
    fn = "rnnjax.seq2seq.greedy_search"
    B = _check_decode_args(fn, carry, bos, eos, max_len, 1)
    dtype = _score_dtype(step_fn, carry)

    def body(state, _):
        carry, last, logp_sum, done, length = state
        carry, logits = step_fn(carry, last)
        logp = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
        tok = jnp.where(done, eos, jnp.argmax(logp, axis=-1)).astype(jnp.int32)
        gain = jnp.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
        logp_sum = logp_sum + jnp.where(done, 0.0, gain)
        length = length + (~done).astype(jnp.int32)
        done = done | (tok == eos)
        out = (tok, None if trace is None else trace(carry))
        return (carry, tok, logp_sum, done, length), out

    state = (
        carry,
        jnp.full((B,), bos, jnp.int32),
        jnp.zeros((B,), dtype),
        jnp.zeros((B,), bool),
        jnp.zeros((B,), jnp.int32),
    )
    (_, _, logp_sum, _, length), (tokens, traces) = jax.lax.scan(body, state, None, length=max_len)
    scores = logp_sum / jnp.maximum(length, 1).astype(dtype) ** length_penalty
    if traces is not None:  # [L, B, ...] -> [B, 1, L, ...]
        traces = jax.tree_util.tree_map(lambda a: jnp.moveaxis(a, 0, 1)[:, None], traces)
    return Decoded(
        tokens=tokens.T[:, None],
        lengths=length[:, None],
        scores=scores[:, None],
        log_probs=logp_sum[:, None],
        trace=traces,
    )
