"""rnnjax's LSTM and GRU against flax.linen's LSTMCell and GRUCell, weights mapped across.

flax is an independent implementation: equal outputs and equal gradients (with
respect to the same weights, mapped back) show that the cells compute the
standard equations, with the mapping documented in rnnjax.interop.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import rnnjax
from rnnjax.cells import LSTMState
from rnnjax.contract import TOLERANCES
from rnnjax.interop import gru_params_from_flax, lstm_params_from_flax

T, B, I, H = 9, 3, 5, 6


def _random_variables(module, carry, x, seed):
    """flax init, then every leaf perturbed so that biases are non-zero too."""
    variables = module.init(jax.random.key(seed), carry, x)
    leaves, tree = jax.tree_util.tree_flatten(variables)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [v + 0.2 * jax.random.normal(k, v.shape, v.dtype) for v, k in zip(leaves, keys, strict=True)]
    )


CASES = {
    "lstm": (nn.LSTMCell, rnnjax.cells.lstm, lstm_params_from_flax),
    "gru": (nn.GRUCell, rnnjax.cells.gru, gru_params_from_flax),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_flax_outputs_and_gradients(x64, name):
    flax_cls, factory, mapping = CASES[name]
    module = flax_cls(features=H, param_dtype=jnp.float64, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(0), (T, B, I), jnp.float64)
    flax_carry = module.initialize_carry(jax.random.key(1), (B, I))
    flax_carry = jax.tree_util.tree_map(lambda c: c + 0.3, flax_carry)  # a non-zero start
    variables = _random_variables(module, flax_carry, xs[0], seed=2)
    cell = factory(H, dtype=jnp.float64)
    # flax's LSTM carry is (c, h); rnnjax's is LSTMState(h, c)
    to_rnnjax_carry = (lambda c: LSTMState(h=c[1], c=c[0])) if name == "lstm" else (lambda c: c)

    def flax_loss(variables):
        _, ys = jax.lax.scan(lambda c, x: module.apply(variables, c, x), flax_carry, xs)
        return jnp.sum(jnp.sin(ys)), ys

    def rnnjax_loss(params):
        _, ys = rnnjax.unroll(cell, params, xs, initial_carry=to_rnnjax_carry(flax_carry))
        return jnp.sum(jnp.sin(ys)), ys

    (loss_f, ys_f), grads_f = jax.value_and_grad(flax_loss, has_aux=True)(variables)
    (loss_r, ys_r), grads_r = jax.value_and_grad(rnnjax_loss, has_aux=True)(mapping(variables))
    chex.assert_trees_all_close(ys_r, ys_f, **TOLERANCES["float64"])
    # map flax's gradient through the same re-arrangement: it is linear
    chex.assert_trees_all_close(grads_r, mapping(grads_f), **TOLERANCES["float64 algorithm"])
