"""A cell defined outside the package registers and runs through the whole contract.

This file is the "Adding a cell" how-to in executable form: the cell below is
what a user writes in their own code (one function, one decorator), and the
loop at the bottom is how they test it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import contract
from rnnjax.cells import Cell, register, registry
from rnnjax.cells.cell import check_dtype, check_hidden_size, input_kernel, recurrent_kernel, spec_from_weight
from rnnjax.reference import BPTTResult


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


def delta_rnn_reference(params, xs, h0, dys, dh_final, **_config) -> BPTTResult:
    """Its manual BPTT in NumPy float64, which the contract requires of every cell."""
    w_x, w_h, b, leak = (np.asarray(params[k], np.float64) for k in ("w_x", "w_h", "b", "leak"))
    s = 1.0 / (1.0 + np.exp(-leak))
    hs, cands = [np.asarray(h0, np.float64)], []
    for x in np.asarray(xs, np.float64):
        cands.append(np.tanh(x @ w_x + hs[-1] @ w_h + b))
        hs.append((1 - s) * hs[-1] + s * cands[-1])
    d = {k: np.zeros_like(v) for k, v in (("w_x", w_x), ("w_h", w_h), ("b", b), ("leak", leak))}
    d_xs, dh_next = np.zeros_like(np.asarray(xs, np.float64)), np.asarray(dh_final, np.float64)
    for t in reversed(range(len(cands))):
        dh = dys[t] + dh_next
        # h_t = (1 - s) h_{t-1} + s * tanh(a)
        d["leak"] += dh * (cands[t] - hs[t]) * s * (1 - s)
        da = dh * s * (1 - cands[t] ** 2)
        d["w_x"] += np.outer(xs[t], da)
        d["w_h"] += np.outer(hs[t], da)
        d["b"] += da
        d_xs[t] = da @ w_x.T
        dh_next = dh * (1 - s) + da @ w_h.T
    ys = np.stack(hs[1:]) if cands else np.zeros((0, w_h.shape[0]))
    return BPTTResult(ys=ys, carry=hs[-1], d_params=d, d_carry=dh_next, d_xs=d_xs)


@pytest.fixture(scope="module")
def registered():
    register("delta_rnn_external", example={"hidden_size": 5}, reference=delta_rnn_reference)(delta_rnn)
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
    reason = contract.not_applicable(check, registered)
    if reason:
        pytest.skip(reason)
    check(registered)


def test_registering_a_taken_name_for_another_factory_is_refused(registered):
    with pytest.raises(ValueError, match="'lstm' is already registered to rnnjax.cells.lstm.lstm"):
        register("lstm")(delta_rnn)
