"""Weight mappings between rnnjax cells and other libraries' cells.

Pure dict re-arrangement (no framework is imported): load a flax checkpoint
into an rnnjax cell, or check one against the other.

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

PyTorch's `nn.LSTM` uses the same gate order with `weight_ih_l0 = w_x.T`,
`weight_hh_l0 = w_h.T` and `bias_ih_l0 + bias_hh_l0 = b`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp


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
