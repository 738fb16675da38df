"""The encoder-decoder of the `translate` experiment, from rnnjax cells and `rnnjax.seq2seq`.

    source ids [S, B] -> embedding -> encoder (one direction, or both: outputs concatenated)
                      -> memory [S, B, M] and the final carry (both directions' carries summed)
    target ids [T, B] -> embedding -> decoder (attention over the memory, or none: the
                      encoder's final carry alone, Sutskever et al. 2014) -> logits [T, B, V]

The decoder starts from the encoder's final carry in every variant, so the
baselines differ from the full model in one thing each: attention, or the
encoder's second direction.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import rnnjax
import rnnjax.layers
from rnnjax import seq2seq


class Translator(NamedTuple):
    cell: str
    hidden_size: int
    embed_size: int
    source_vocab: int
    target_vocab: int
    attention: str = "additive"  # "none" | "additive" | "dot" | "general"
    bidirectional: bool = True

    def encoder_cell(self) -> rnnjax.cells.Cell:
        return rnnjax.cells.get(self.cell, hidden_size=self.hidden_size)

    def decoder(self) -> rnnjax.cells.Cell:
        cell = rnnjax.cells.get(self.cell, hidden_size=self.hidden_size)
        if self.attention == "none":
            return cell
        memory = self.hidden_size * (2 if self.bidirectional else 1)
        return seq2seq.attention_decoder(cell, memory, score=self.attention)

    def init(self, key: jax.Array) -> dict[str, Any]:
        k_src, k_tgt, k_fw, k_bw, k_dec, k_out = jax.random.split(key, 6)
        enc, dec = self.encoder_cell(), self.decoder()
        encoder = enc.init(k_fw, self.embed_size)
        return {
            "embed_source": jax.random.normal(k_src, (self.source_vocab, self.embed_size)) / self.embed_size**0.5,
            "embed_target": jax.random.normal(k_tgt, (self.target_vocab, self.embed_size)) / self.embed_size**0.5,
            "encoder": (encoder, enc.init(k_bw, self.embed_size)) if self.bidirectional else encoder,
            "decoder": dec.init(k_dec, self.embed_size),
            "head": {
                "w": jax.nn.initializers.lecun_normal()(k_out, (dec.output_size, self.target_vocab)),
                "b": jnp.zeros(self.target_vocab),
            },
        }

    def encode(self, params, source: jax.Array, lengths: jax.Array):
        """`(decoder's first carry, memory [S, B, M])` for source ids `[S, B]`."""
        enc = self.encoder_cell()
        xs = params["embed_source"][source]
        if self.bidirectional:
            (fw, bw), memory = rnnjax.layers.bidirectional(enc, enc, params["encoder"], xs, lengths=lengths)
            carry = jax.tree_util.tree_map(jnp.add, fw, bw)
        else:
            carry, memory = rnnjax.unroll(enc, params["encoder"], xs, lengths=lengths)
        return carry, memory

    def start(self, params, source, lengths):
        """The decoder's params (with the source attached) and its first carry."""
        carry, memory = self.encode(params, source, lengths)
        dec = self.decoder()
        if self.attention == "none":
            return params["decoder"], carry
        bound = seq2seq.attach(dec, params["decoder"], memory, lengths)
        return bound, dec.initial_carry(bound, lengths.shape)._replace(cell=carry)

    def logits(self, params, batch) -> jax.Array:
        """Teacher forcing: logits `[T, B, V]` for `batch["targets_in"]` (BOS + target)."""
        dparams, carry = self.start(params, batch["xs"], batch["lengths"])
        ys = params["embed_target"][batch["targets_in"]]
        _, hs = rnnjax.unroll(self.decoder(), dparams, ys, initial_carry=carry, lengths=batch["target_lengths"])
        return hs @ params["head"]["w"] + params["head"]["b"]

    def translate(self, params, source, lengths, beam_size: int, max_len: int) -> seq2seq.Decoded:
        """Beam search (greedy for beam_size 1); `trace` holds the attention weights `[B, K, L, S]`."""
        return _translate(self, params, source, lengths, beam_size, max_len)


def _translate_impl(model: Translator, params, source, lengths, beam_size: int, max_len: int):
    from experiments.tasks.translate import BOS, EOS

    dparams, carry = model.start(params, source, lengths)
    dec = model.decoder()
    attends = model.attention != "none"
    # the source rides in the carry, so that the search repeats it per beam with the state
    state = (carry, dparams["source"]) if attends else (carry, None)

    def step_fn(state, tokens):
        c, src = state
        p = {**dparams, "source": src} if attends else dparams
        c, h = dec.step(p, c, params["embed_target"][tokens])
        return (c, src), h @ params["head"]["w"] + params["head"]["b"]

    trace = (lambda s: s[0].weights) if attends else None
    kw = dict(bos=BOS, eos=EOS, max_len=max_len, trace=trace)
    if beam_size == 1:
        return seq2seq.greedy_search(step_fn, state, **kw)
    return seq2seq.beam_search(step_fn, state, beam_size=beam_size, **kw)


_translate = jax.jit(_translate_impl, static_argnums=(0, 4, 5))
