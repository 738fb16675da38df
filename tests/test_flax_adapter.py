"""The flax adapters round-trip with the pure-function path: same outputs, same gradients."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

import rnnjax
from rnnjax.adapters.flax import RNN, LinenRNN
from rnnjax.layers import stack

T, B, I, H = 7, 3, 4, 6


@pytest.fixture
def data():
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    return xs, jnp.array([7, 2, 5])


@pytest.mark.parametrize("cell", ["lstm", "lru", "stack"])
def test_nnx_module_equals_pure_path_outputs_and_gradients(data, cell):
    xs, lengths = data
    if cell == "stack":
        module = RNN(stack([rnnjax.cells.gru(H), rnnjax.cells.lstm(H)]), I, rngs=nnx.Rngs(0))
    else:
        module = RNN(cell, I, hidden_size=H, rngs=nnx.Rngs(0))
    params = module.pure_params()

    def pure_loss(params):
        return jnp.sum(rnnjax.unroll(module.cell, params, xs, lengths=lengths, reverse=True)[1] ** 2)

    def module_loss(module):
        return jnp.sum(module(xs, lengths=lengths, reverse=True) ** 2)

    chex.assert_trees_all_close(
        module(xs, lengths=lengths, reverse=True),
        rnnjax.unroll(module.cell, params, xs, lengths=lengths, reverse=True)[1],
    )
    g_module = nnx.grad(module_loss)(module)
    g_pure = jax.grad(pure_loss)(params)
    # nnx.grad returns an nnx.State; its leaves come in the params pytree's key order
    leaves = lambda tree: jax.tree_util.tree_leaves(tree)  # noqa: E731
    assert len(leaves(g_module["params"])) == len(leaves(g_pure))
    chex.assert_trees_all_close(leaves(g_module["params"]), leaves(g_pure), rtol=1e-6, atol=1e-6)


def test_nnx_round_trip_of_params_and_streaming(data):
    xs, _ = data
    cell = rnnjax.cells.gru(H)
    params = cell.init(jax.random.key(5), I)
    module = RNN.from_params(cell, params)
    chex.assert_trees_all_equal(module.pure_params(), params)
    carry, ys = module.initial_carry((B,)), []
    for t in range(T):
        carry, y = module.step(carry, xs[t])
        ys.append(y)
    chex.assert_trees_all_close(jnp.stack(ys), rnnjax.unroll(cell, params, xs)[1], rtol=1e-6)


def test_nnx_model_trains_with_nnx_optimizer(data):
    xs, lengths = data

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.rnn = RNN("lstm", I, hidden_size=H, rngs=rngs)
            self.head = nnx.Linear(H, 1, rngs=rngs)

        def __call__(self, xs):
            return self.head(self.rnn(xs)[-1])

    model = Model(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    target = jnp.ones((B, 1))

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(xs) - target) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer)) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


def test_linen_module_equals_pure_path(data):
    xs, lengths = data
    cell = rnnjax.cells.lstm(H)
    module = LinenRNN(cell)
    variables = module.init(jax.random.key(0), xs, lengths=lengths)
    params = variables["params"]["cell"]
    chex.assert_trees_all_close(
        module.apply(variables, xs, lengths=lengths), rnnjax.unroll(cell, params, xs, lengths=lengths)[1]
    )
    g = jax.grad(lambda v: jnp.sum(module.apply(v, xs, lengths=lengths) ** 2))(variables)["params"]["cell"]
    g_pure = jax.grad(lambda p: jnp.sum(rnnjax.unroll(cell, p, xs, lengths=lengths)[1] ** 2))(params)
    chex.assert_trees_all_close(g, g_pure, rtol=1e-6)


def test_cell_kwargs_with_a_cell_object_is_an_error():
    with pytest.raises(TypeError, match="are for building a cell by name"):
        RNN(rnnjax.cells.gru(H), I, hidden_size=H, rngs=nnx.Rngs(0))
