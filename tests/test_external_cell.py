"""A cell defined outside the package registers and runs through the whole contract.

This file is the "Adding a cell" how-to in executable form: the cell below is
what a user writes in their own code (one function, one decorator), and the
loop at the bottom is how they test it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import rnnjax
from rnnjax import contract
from rnnjax.cells import Cell, register, registry
from rnnjax.cells.cell import check_dtype, check_hidden_size, input_kernel, recurrent_kernel, spec_from_weight


def delta_rnn(hidden_size: int, *, dtype=jnp.float32) -> Cell:
    """A leaky tanh RNN: h_t = (1 - s) * h_{t-1} + s * tanh(x_t W_x + h_{t-1} W_h + b), s = sigmoid(leak)."""
    H = check_hidden_size("delta_rnn", hidden_size)
    dtype = check_dtype("delta_rnn", dtype)

    def init(key, input_size):
        k_x, k_h = jax.random.split(key)
        return {
            "w_x": input_kernel(k_x, input_size, H, dtype),
            "w_h": recurrent_kernel(k_h, H, 1, dtype),
            "b": jnp.zeros(H, dtype),
            "leak": jnp.zeros(H, dtype),
        }

    def step(params, h, x):
        s = jax.nn.sigmoid(params["leak"])
        h = (1 - s) * h + s * jnp.tanh(x @ params["w_x"] + h @ params["w_h"] + params["b"])
        return h, h

    return Cell(
        init=init,
        initial_carry=lambda params, batch_shape=(): jnp.zeros((*batch_shape, H), params["w_x"].dtype),
        step=step,
        input_spec=spec_from_weight("w_x"),
        name="delta_rnn",
        hidden_size=H,
        output_size=H,
        config={"hidden_size": H, "dtype": dtype},
    )


@pytest.fixture(scope="module")
def registered():
    register("delta_rnn_external", example={"hidden_size": 5})(delta_rnn)
    yield registry.spec("delta_rnn_external")
    registry.unregister("delta_rnn_external")


def test_external_cell_is_listed_and_built_by_name(registered):
    assert "delta_rnn_external" in rnnjax.cells.names()
    cell = rnnjax.cells.get("delta_rnn_external", hidden_size=7)
    params = cell.init(jax.random.key(0), 3)
    _, ys = rnnjax.unroll(cell, params, jnp.ones((4, 2, 3)))
    assert ys.shape == (4, 2, 7)


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_external_cell_passes_the_contract(registered, check):
    check(registered)


def test_registering_a_taken_name_for_another_factory_is_refused(registered):
    with pytest.raises(ValueError, match="'lstm' is already registered to rnnjax.cells.lstm.lstm"):
        register("lstm")(delta_rnn)
