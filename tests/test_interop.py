"""PyTorch nn.LSTM / nn.GRU weights in rnnjax, held to outputs saved from PyTorch.

The fixture (tests/fixtures/torch_rnn.npz) was written by
tests/fixtures/make_torch_rnn.py with PyTorch 2.13.0 in float64: packed,
right-padded sequences through 1- and 2-layer, uni- and bidirectional modules.
PyTorch is not a test dependency; the one live round trip below runs only
where it is installed.
"""

from __future__ import annotations

from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.contract import TOLERANCES
from rnnjax.interop import TorchRNN, from_torch, to_torch

FIXTURE = Path(__file__).parent / "fixtures" / "torch_rnn.npz"
CASES = [f"{k}-l{n}-{d}" for k in ("lstm", "gru") for n in (1, 2) for d in ("uni", "bi")]


def _case(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k.removeprefix(f"{name}/"): data[k] for k in data.files if k.startswith(f"{name}/")}


def _state_dict(case):
    return {k.removeprefix("state_dict/"): v for k, v in case.items() if k.startswith("state_dict/")}


@pytest.mark.parametrize("time_major", [True, False], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("name", CASES)
def test_matches_pytorch_outputs_and_final_state(x64, name, time_major):
    case = _case(name)
    kind = name.split("-")[0]
    model = from_torch(_state_dict(case), kind)
    assert model.num_layers == int(name.split("-")[1][1:])
    assert model.bidirectional == name.endswith("-bi")
    carry0 = model.carry_from_torch(case["h0"], case.get("c0"))
    xs = case["xs"] if time_major else case["xs"].transpose(1, 0, 2)
    carries, ys = jax.jit(model.unroll, static_argnames="time_major")(
        jnp.asarray(xs), initial_carry=carry0, lengths=jnp.asarray(case["lengths"]), time_major=time_major
    )
    if not time_major:
        ys = ys.transpose(1, 0, 2)
    assert ys.dtype == jnp.float64
    np.testing.assert_allclose(ys, case["ys"], rtol=1e-10, atol=1e-10)
    final = model.carry_to_torch(carries)
    if kind == "lstm":
        np.testing.assert_allclose(final[0], case["h_n"], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(final[1], case["c_n"], rtol=1e-10, atol=1e-10)
    else:
        np.testing.assert_allclose(final, case["h_n"], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", CASES)
def test_export_gives_pytorch_keys_and_round_trips_exactly(x64, name):
    case = _case(name)
    sd = _state_dict(case)
    model = from_torch(sd, name.split("-")[0])
    exported = to_torch(model)
    assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in sd.items()}
    again = from_torch(exported, model.kind)
    chex.assert_trees_all_equal(again.params, model.params)


def test_prefix_dtype_and_missing_biases():
    sd = _state_dict(_case("gru-l1-uni"))
    nested = {f"encoder.rnn.{k}": v for k, v in sd.items()} | {"decoder.weight": np.zeros(3)}
    model = from_torch(nested, "gru", prefix="encoder.rnn.", dtype=jnp.float32)
    assert model.params[0][0]["w_x"].dtype == jnp.float32
    no_bias = from_torch({k: v for k, v in sd.items() if k.startswith("weight")}, "gru", dtype=jnp.float32)
    assert not np.any(np.asarray(no_bias.params[0][0]["b"])) and not np.any(np.asarray(no_bias.params[0][0]["b_hn"]))


def test_errors_name_the_problem():
    sd = _state_dict(_case("lstm-l2-bi"))
    with pytest.raises(ValueError, match=r"`kind` must be one of \['gru', 'lstm'\], got 'rnn'"):
        from_torch(sd, "rnn")
    with pytest.raises(ValueError, match="unexpected key 'weight_hr_l0'.*proj_size are not supported"):
        from_torch(sd | {"weight_hr_l0": np.zeros((3, 3))}, "lstm", dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"lacks layer/direction \(1, 1\) \(of 2 layers, 2 directions\)"):
        from_torch({k: v for k, v in sd.items() if not k.endswith("l1_reverse")}, "lstm", dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"expected weight_hh \[9, 3\].*nn.GRU with hidden_size 3"):
        from_torch(sd, "gru", dtype=jnp.float32)  # LSTM weights read as a GRU's
    with pytest.raises(ValueError, match="no `weight_ih_l0`-style keys with prefix 'rnn.'"):
        from_torch(sd, "lstm", prefix="rnn.")
    model = from_torch(sd, "lstm", dtype=jnp.float32)
    with pytest.raises(
        ValueError, match=r"`h0` must be \[num_layers \* directions = 4, B, H = 3\], got shape \(2, 4, 3\)"
    ):
        model.carry_from_torch(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="`c0` is required for kind 'lstm'"):
        model.carry_from_torch(np.zeros((4, 4, 3)))


def test_stacked_unroll_bidirectional_is_each_layer_by_hand(x64):
    """The PyTorch layout helper against two explicit `bidirectional` calls."""
    cell = rnnjax.cells.gru(3, dtype=jnp.float64)
    keys = jax.random.split(jax.random.key(0), 4)
    params = ((cell.init(keys[0], 5), cell.init(keys[1], 5)), (cell.init(keys[2], 6), cell.init(keys[3], 6)))
    xs = jax.random.normal(jax.random.key(1), (7, 2, 5), jnp.float64)
    lengths = jnp.array([7, 4])
    carries, ys = rnnjax.layers.stacked_unroll([cell, cell], params, xs, lengths=lengths, bidirectional=True)
    c1, y1 = rnnjax.layers.bidirectional(cell, cell, params[0], xs, lengths=lengths)
    c2, y2 = rnnjax.layers.bidirectional(cell, cell, params[1], y1, lengths=lengths)
    chex.assert_trees_all_close((carries, ys), ((c1, c2), y2), **TOLERANCES["float64"])
    with pytest.raises(ValueError, match="`reverse` does not apply with bidirectional=True"):
        rnnjax.layers.stacked_unroll([cell], params[:1], xs, bidirectional=True, reverse=True)


def test_live_round_trip_through_pytorch(x64):
    """Where PyTorch is installed: rnnjax params exported, loaded into nn.LSTM, same outputs."""
    torch = pytest.importorskip("torch")
    cell = rnnjax.cells.lstm(4, dtype=jnp.float64)
    keys = jax.random.split(jax.random.key(2), 4)
    params = ((cell.init(keys[0], 3), cell.init(keys[1], 3)), (cell.init(keys[2], 8), cell.init(keys[3], 8)))
    model = TorchRNN("lstm", cell, params, num_layers=2, bidirectional=True)
    module = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).double()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch(model).items()})
    xs = np.random.default_rng(0).standard_normal((6, 2, 3))
    with torch.no_grad():
        want, _ = module(torch.from_numpy(xs))
    _, ys = model.unroll(jnp.asarray(xs))
    np.testing.assert_allclose(ys, want.numpy(), rtol=1e-10, atol=1e-10)
