"""Flax adapters: any rnnjax cell (registered, stacked, wrapped) as a flax module.

`RNN` is a flax NNX module, the API flax recommends for new code: its params
are `nnx.Param` variables holding exactly the cell's params pytree, so
`nnx.Optimizer`, `nnx.jit`, `nnx.grad` and flax checkpoints see them like any
other layer's, and `module.pure_params()` / `RNN.from_params` convert to and
from the pure-function form without copying weights by hand::

    from flax import nnx
    from rnnjax.adapters.flax import RNN

    class Classifier(nnx.Module):
        def __init__(self, rngs):
            self.rnn = RNN("lstm", input_size=16, hidden_size=64, rngs=rngs)
            self.head = nnx.Linear(64, 2, rngs=rngs)

        def __call__(self, xs, lengths):
            ys = self.rnn(xs, lengths=lengths)                       # [T, B, 64]
            return self.head(ys[lengths - 1, jnp.arange(xs.shape[1])])

`LinenRNN` is the same for flax.linen models (still the majority of existing
flax code): the cell's params live in one `"cell"` param collection entry.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from rnnjax._unrolling import unroll
from rnnjax.cells import Cell, get
from rnnjax.methods import Method


def _as_cell(cell: Cell | str, cell_kwargs: dict[str, Any]) -> Cell:
    if isinstance(cell, str):
        return get(cell, **cell_kwargs)
    if cell_kwargs:
        raise TypeError(f"RNN: keyword arguments {sorted(cell_kwargs)} are for building a cell by name; got a Cell")
    return cell


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


class RNN(nnx.Module):
    """An rnnjax cell unrolled over time, as a flax NNX module.

    Args:
      cell: a `Cell`, or a registered cell name built with `**cell_kwargs`
        (e.g. `RNN("gru", input_size=8, hidden_size=32, rngs=rngs)`).
      input_size: size of the inputs' last axis.
      rngs: `nnx.Rngs`; the `params` stream initialises the cell.
      params: existing params for the cell (instead of `input_size` and `rngs`).
      method: how `rnnjax.unroll` runs the cell (`rnnjax.Scan(...)`,
        `rnnjax.Chunkwise(...)`, ...; None: `rnnjax.auto` picks). The
        configuration lives in the module, the data in the call.
    """

    def __init__(
        self,
        cell: Cell | str,
        input_size: int | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        params: Any = None,
        method: Method | None = None,
        **cell_kwargs: Any,
    ):
        self.cell = _as_cell(cell, cell_kwargs)
        self.method = method
        if params is None:
            if input_size is None or rngs is None:
                raise TypeError("RNN: pass `input_size` and `rngs` to initialise the cell, or `params`")
            params = self.cell.init(rngs.params(), input_size)
        self.params = nnx.data(jax.tree_util.tree_map(nnx.Param, params))

    @classmethod
    def from_params(cls, cell: Cell, params: Any, method: Method | None = None) -> RNN:
        """A module holding `params` (e.g. trained with the pure functions)."""
        return cls(cell, params=params, method=method)

    def pure_params(self) -> Any:
        """The cell's params as the plain pytree `cell.step` takes."""
        return jax.tree_util.tree_map(lambda v: v[...], self.params, is_leaf=_is_variable)

    def initial_carry(self, batch_shape: tuple[int, ...] = ()) -> Any:
        return self.cell.initial_carry(self.pure_params(), batch_shape)

    def step(self, carry: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
        """One time step (streaming inference)."""
        return self.cell.step(self.pure_params(), carry, x_t)

    def __call__(self, xs: jax.Array, *, return_carry: bool = False, **data: Any):
        """`ys` (or `(carry, ys)` with `return_carry=True`); `data` are `rnnjax.unroll`'s data arguments
        (`lengths`, `initial_carry`, `resets`, `reverse`, `time_major`); the method is the module's."""
        carry, ys = unroll(self.cell, self.pure_params(), xs, method=self.method, **data)
        return (carry, ys) if return_carry else ys


class LinenRNN(nn.Module):
    """An rnnjax cell unrolled over time, as a flax.linen module.

    The cell's params pytree is the single param `"cell"`, created from the
    inputs' last axis on first call. Call with `rnnjax.unroll`'s data
    arguments (`lengths`, `reverse`, `initial_carry`, ...); `method` is a field.
    """

    cell: Cell
    return_carry: bool = False
    method: Method | None = None

    @nn.compact
    def __call__(self, xs: jax.Array, **data: Any):
        params = self.param("cell", lambda key: self.cell.init(key, xs.shape[-1]))
        carry, ys = unroll(self.cell, params, xs, method=self.method, **data)
        return (carry, ys) if self.return_carry else ys
