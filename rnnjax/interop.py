"""Weight mappings between rnnjax cells and other libraries' cells.

Pure re-arrangement of arrays (no framework is imported): load a flax or
PyTorch checkpoint into rnnjax cells, or write rnnjax params out for them.

flax.linen `LSTMCell` (gates i, f, g, o; input Dense layers have no bias,
hidden Dense layers do) maps to `rnnjax.cells.lstm` as::

    w_x = [ii.kernel | if.kernel | ig.kernel | io.kernel]      # [I, 4H]
    w_h = [hi.kernel | hf.kernel | hg.kernel | ho.kernel]      # [H, 4H]
    b   = [hi.bias   | hf.bias   | hg.bias   | ho.bias]        # [4H]

and its carry `(c, h)` is rnnjax's `LSTMState(h=h, c=c)`.

flax.linen `GRUCell` (gates r, z, n; `ir`, `iz`, `in` and `hn` have biases)
maps to `rnnjax.cells.gru` as::

    w_x  = [ir.kernel | iz.kernel | in.kernel]                  # [I, 3H]
    b    = [ir.bias   | iz.bias   | in.bias]                    # [3H]
    w_h  = [hr.kernel | hz.kernel | hn.kernel]                  # [H, 3H]
    b_hn = hn.bias                                              # [H]

PyTorch's `nn.LSTM` and `nn.GRU` (any `num_layers`, `bidirectional`) map
through `from_torch` / `to_torch`; the mapping is written once, in
`_TORCH_GATES` and the two bias functions below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from rnnjax import cells as _cells
from rnnjax.cells.cell import Carry, Cell, Params
from rnnjax.cells.lstm import LSTMState
from rnnjax.layers import stacked_unroll


def _params(tree: Mapping[str, Any]) -> Mapping[str, Any]:
    # accept both `variables` ({"params": {...}}) and the inner params dict
    return tree["params"] if "params" in tree else tree


def lstm_params_from_flax(variables: Mapping[str, Any]) -> dict[str, Any]:
    """rnnjax LSTM params from the variables of a flax.linen `LSTMCell`."""
    p = _params(variables)
    return {
        "w_x": jnp.concatenate([p[g]["kernel"] for g in ("ii", "if", "ig", "io")], axis=1),
        "w_h": jnp.concatenate([p[g]["kernel"] for g in ("hi", "hf", "hg", "ho")], axis=1),
        "b": jnp.concatenate([p[g]["bias"] for g in ("hi", "hf", "hg", "ho")]),
    }


def gru_params_from_flax(variables: Mapping[str, Any]) -> dict[str, Any]:
    """rnnjax GRU params from the variables of a flax.linen `GRUCell`."""
    p = _params(variables)
    return {
        "w_x": jnp.concatenate([p[g]["kernel"] for g in ("ir", "iz", "in")], axis=1),
        "w_h": jnp.concatenate([p[g]["kernel"] for g in ("hr", "hz", "hn")], axis=1),
        "b": jnp.concatenate([p[g]["bias"] for g in ("ir", "iz", "in")]),
        "b_hn": p["hn"]["bias"],
    }


# --- PyTorch nn.LSTM / nn.GRU -------------------------------------------------------------

TorchKind = Literal["lstm", "gru"]

# Both libraries order the gates alike (LSTM i, f, g, o; GRU r, z, n), so the
# weights are transposes: weight_ih_l{k} = w_x.T [G*H, I], weight_hh_l{k} = w_h.T [G*H, H].
_TORCH_GATES = {"lstm": 4, "gru": 3}


def _bias_from_torch(kind: TorchKind, b_ih: np.ndarray, b_hh: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's two bias vectors as rnnjax's.

    LSTM: both biases are added before the gates, so `b = b_ih + b_hh`.
    GRU: `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`: b_hn sits inside the
    reset gate's product and stays apart (rnnjax's `b_hn`); the r and z parts
    of `b_hh` add to `b_ih`.
    """
    if kind == "lstm":
        return {"b": b_ih + b_hh}
    H = b_ih.shape[0] // 3
    return {"b": b_ih + np.concatenate([b_hh[: 2 * H], np.zeros(H, b_hh.dtype)]), "b_hn": b_hh[2 * H :]}


def _bias_to_torch(kind: TorchKind, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """rnnjax's biases as PyTorch's `(b_ih, b_hh)`; the inverse of `_bias_from_torch` up to how a sum is split."""
    b = np.array(params["b"])  # a writable copy, as torch.from_numpy wants
    if kind == "lstm":
        return b, np.zeros_like(b)
    b_hn = np.array(params["b_hn"])
    return b, np.concatenate([np.zeros(2 * b_hn.shape[0], b_hn.dtype), b_hn])


class TorchRNN(NamedTuple):
    """rnnjax's form of a PyTorch `nn.LSTM` or `nn.GRU`: one cell, params per layer and direction.

    Attributes:
      kind: "lstm" or "gru".
      cell: the rnnjax cell (`rnnjax.cells.lstm(H)` or `gru(H)`), shared by every layer.
      params: `params[layer]` is `(forward,)`, or `(forward, backward)` when
        bidirectional; each entry is that cell's params dict.
      num_layers: as in PyTorch.
      bidirectional: as in PyTorch.

    `unroll` runs it as PyTorch does (each layer reads the concatenated
    directions of the one below). Build one with `from_torch`.
    """

    kind: TorchKind
    cell: Cell
    params: tuple[tuple[Params, ...], ...]
    num_layers: int
    bidirectional: bool

    def unroll(
        self,
        xs: ArrayLike,
        *,
        initial_carry: tuple[tuple[Carry, ...], ...] | None = None,
        lengths: ArrayLike | None = None,
        time_major: bool = True,
    ) -> tuple[tuple[tuple[Carry, ...], ...], jax.Array]:
        """`(carries, ys)` as PyTorch computes them (padded steps give zeros, as after `pad_packed_sequence`).

        Args:
          xs: `[T, B, I]` (PyTorch's default layout), or `[B, T, I]` with
            `time_major=False` (`batch_first=True`).
          initial_carry: `carries` in the same layout, e.g. from `carry_from_torch(h0, c0)`.
          lengths: `[B]` valid lengths of right-padded sequences (a packed sequence's lengths).

        Returns:
          `carries[layer][direction]` (an `LSTMState` or an array `[B, H]`;
          `carry_to_torch` turns them into `h_n` / `c_n`), and `ys [T, B, D*H]`.
        """
        params = tuple(p if self.bidirectional else p[0] for p in self.params)
        c0 = None
        if initial_carry is not None:
            c0 = tuple(c if self.bidirectional else c[0] for c in initial_carry)
        carries, ys = stacked_unroll(
            [self.cell] * self.num_layers,
            params,
            xs,
            initial_carry=c0,
            lengths=lengths,
            bidirectional=self.bidirectional,
            time_major=time_major,
        )
        return tuple(c if self.bidirectional else (c,) for c in carries), ys

    def carry_from_torch(self, h0: ArrayLike, c0: ArrayLike | None = None) -> tuple[tuple[Carry, ...], ...]:
        """PyTorch's `h_0 [L*D, B, H]` (and the LSTM's `c_0`) as `initial_carry` for `unroll`."""
        h0 = jnp.asarray(h0)
        D = 2 if self.bidirectional else 1
        if h0.ndim != 3 or h0.shape[0] != self.num_layers * D or h0.shape[2] != self.cell.hidden_size:
            raise ValueError(
                f"TorchRNN.carry_from_torch: `h0` must be [num_layers * directions = {self.num_layers * D}, "
                f"B, H = {self.cell.hidden_size}], got shape {tuple(h0.shape)}"
            )
        if (self.kind == "lstm") != (c0 is not None):
            raise ValueError(
                f"TorchRNN.carry_from_torch: `c0` is {'required' if self.kind == 'lstm' else 'not used'} "
                f"for kind {self.kind!r}"
            )
        if c0 is not None:
            c0 = jnp.asarray(c0)
            if c0.shape != h0.shape:
                raise ValueError(
                    f"TorchRNN.carry_from_torch: `c0` must have the shape of `h0` {tuple(h0.shape)}, "
                    f"got {tuple(c0.shape)}"
                )
        # PyTorch stacks the states layer-major: index layer * D + direction
        at = lambda layer, d: (  # noqa: E731
            LSTMState(h=h0[layer * D + d], c=c0[layer * D + d]) if c0 is not None else h0[layer * D + d]
        )
        return tuple(tuple(at(layer, d) for d in range(D)) for layer in range(self.num_layers))

    def carry_to_torch(self, carries: tuple[tuple[Carry, ...], ...]) -> jax.Array | tuple[jax.Array, jax.Array]:
        """`carries` from `unroll` as PyTorch's `h_n` (GRU) or `(h_n, c_n)` (LSTM), each `[L*D, B, H]`."""
        flat = [c for layer in carries for c in layer]
        if self.kind == "lstm":
            return jnp.stack([c.h for c in flat]), jnp.stack([c.c for c in flat])
        return jnp.stack(flat)


_TORCH_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")


def from_torch(
    state_dict: Mapping[str, ArrayLike],
    kind: TorchKind,
    *,
    prefix: str = "",
    dtype: Any = None,
) -> TorchRNN:
    """The rnnjax cell and params that compute what a PyTorch `nn.LSTM` / `nn.GRU` computes.

    rnnjax never imports torch: pass the state dict as NumPy arrays, e.g.
    `{k: v.numpy() for k, v in module.state_dict().items()}`. Any
    `num_layers` and `bidirectional` are read off the keys; `bias=False`
    modules (no bias keys) get zero biases. Outputs agree with PyTorch to
    1e-10 in float64, with padded lengths (tests/test_interop.py, against
    outputs saved from PyTorch).

    Args:
      state_dict: PyTorch's keys (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
        `bias_hh_l0`, and `..._l1`, `..._reverse` for more layers and the
        backward direction) mapped to arrays.
      kind: "lstm" or "gru".
      prefix: a prefix to strip from the keys, e.g. `"encoder.rnn."` for a
        sub-module of a bigger model's state dict; keys without it are ignored.
      dtype: the params' dtype (default: the arrays' own, e.g. float32).

    Returns:
      A `TorchRNN`; its `unroll` runs the model, `to_torch` writes it back.

    Raises:
      ValueError: an unknown kind, a key this mapping does not know (such as
        `weight_hr_l0` of an LSTM with `proj_size`), missing layers or
        directions, or shapes that do not fit together.
    """
    fn = "rnnjax.interop.from_torch"
    if kind not in _TORCH_GATES:
        raise ValueError(f"{fn}: `kind` must be one of {sorted(_TORCH_GATES)}, got {kind!r}")
    entries: dict[tuple[int, int], dict[str, np.ndarray]] = {}
    for full_key, value in state_dict.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        m = _TORCH_KEY.match(key)
        if m is None:
            hint = " (LSTMs with proj_size are not supported)" if key.startswith("weight_hr") else ""
            raise ValueError(f"{fn}: unexpected key {full_key!r} in `state_dict` for an nn.{kind.upper()}{hint}")
        name, layer, reverse = m.group(1), int(m.group(2)), m.group(3) is not None
        entries.setdefault((layer, int(reverse)), {})[name] = np.asarray(value)
    if not entries:
        raise ValueError(f"{fn}: no `weight_ih_l0`-style keys with prefix {prefix!r} in `state_dict`")
    num_layers = 1 + max(layer for layer, _ in entries)
    bidirectional = any(d == 1 for _, d in entries)
    D = 2 if bidirectional else 1
    missing = [(layer, d) for layer in range(num_layers) for d in range(D) if (layer, d) not in entries]
    if missing:
        raise ValueError(
            f"{fn}: `state_dict` lacks layer/direction {missing[0]} (of {num_layers} layers, {D} directions)"
        )

    G = _TORCH_GATES[kind]
    first = entries[(0, 0)]
    if "weight_hh" not in first:
        raise ValueError(f"{fn}: `state_dict` lacks {prefix}weight_hh_l0")
    H = first["weight_hh"].shape[1]
    dtype = first["weight_hh"].dtype if dtype is None else dtype
    cell = _cells.get(kind, hidden_size=H, dtype=dtype)
    params = []
    for layer in range(num_layers):
        per_direction = []
        for d in range(D):
            e = entries[(layer, d)]
            where = f"layer {layer}{' (reverse)' if d else ''}"
            for name in ("weight_ih", "weight_hh"):
                if name not in e:
                    raise ValueError(f"{fn}: `state_dict` lacks {name} for {where}")
            w_ih, w_hh = e["weight_ih"], e["weight_hh"]
            want_in = None if layer == 0 else D * H
            if w_hh.shape != (G * H, H) or w_ih.shape[0] != G * H or (want_in and w_ih.shape[1] != want_in):
                raise ValueError(
                    f"{fn}: {where}: expected weight_hh [{G * H}, {H}] and weight_ih [{G * H}, "
                    f"{'I' if want_in is None else want_in}] for an nn.{kind.upper()} with hidden_size {H}, "
                    f"got {w_hh.shape} and {w_ih.shape}"
                )
            zeros = np.zeros(G * H, w_hh.dtype)
            b_ih, b_hh = e.get("bias_ih", zeros), e.get("bias_hh", zeros)
            p = {"w_x": w_ih.T, "w_h": w_hh.T, **_bias_from_torch(kind, b_ih, b_hh)}
            per_direction.append({k: jnp.asarray(v, dtype) for k, v in p.items()})
        params.append(tuple(per_direction))
    return TorchRNN(kind, cell, tuple(params), num_layers, bidirectional)


def to_torch(model: TorchRNN, *, prefix: str = "") -> dict[str, np.ndarray]:
    """PyTorch's state dict (NumPy arrays, keys as `nn.LSTM`/`nn.GRU` name them) for `model`.

    Load it with `module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`
    into a module built with the same `hidden_size`, `num_layers` and
    `bidirectional`. `from_torch(to_torch(m), m.kind)` gives back `m`'s params exactly.
    """
    out = {}
    for layer, per_direction in enumerate(model.params):
        for d, p in enumerate(per_direction):
            suffix = f"_l{layer}{'_reverse' if d else ''}"
            b_ih, b_hh = _bias_to_torch(model.kind, p)
            out[f"{prefix}weight_ih{suffix}"] = np.array(p["w_x"]).T.copy()
            out[f"{prefix}weight_hh{suffix}"] = np.array(p["w_h"]).T.copy()
            out[f"{prefix}bias_ih{suffix}"] = b_ih
            out[f"{prefix}bias_hh{suffix}"] = b_hh
    return out
