"""Mixed precision for a cell: low-precision params and inputs, the recurrent state in float32.

A recurrent state is a running sum over every step so far: in bfloat16 (8 bits
of mantissa) each step's update is rounded to about 3 significant digits, and
the errors add up over the sequence. `mixed_precision(cell)` keeps the state
in float32 while the params and inputs stay in the low precision the caller
chose::

    cell = rnnjax.mixed_precision(rnnjax.cells.lstm(128))
    params16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    carry, ys = rnnjax.unroll(cell, params16, xs.astype(jnp.bfloat16))
    # carry: float32; ys: bfloat16, the dtype of xs

Where the work runs in which precision follows JAX's type promotion, so no
cell has to say which of its arrays are state:

- products of the input with the params (`x @ W_x`, the matrix cells' q, k,
  v and gates) run in the params' precision (bfloat16);
- anything that touches the state (`h @ W_h`, the gates' elementwise update,
  the parallel and chunkwise scans) runs in float32, since bfloat16 times
  float32 is float32; the new state is cast back to `state_dtype` so the scan's
  carry keeps one dtype;
- the outputs are cast to the inputs' dtype, so the next layer's products run
  in bfloat16 again.

The matrix-memory cells already carry their state in at least float32; for
them only the outputs change. The cell's sequence kernel (the CPU LSTM and GRU
kernels, written for one dtype) is not used by the wrapped cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax.cells.cell import Cell, wrap


def mixed_precision(cell: Cell, state_dtype: DTypeLike = jnp.float32) -> Cell:
    """`cell` with its recurrent state carried in `state_dtype` whatever the params' dtype.

    Args:
      cell: any `rnnjax.cells.Cell`.
      state_dtype: a real floating dtype for the carry's real floating leaves
        (complex leaves, such as the LRU's state, keep their dtype).

    Returns:
      A `Cell` with the same params: `initial_carry` in `state_dtype`, `step`,
      the linear and matrix forms computing the state in `state_dtype`, outputs
      in the dtype of the inputs. With params and inputs already in
      `state_dtype` it computes exactly what `cell` does.
    """
    state_dtype = jnp.dtype(state_dtype)
    if not jnp.issubdtype(state_dtype, jnp.floating):
        raise TypeError(f"rnnjax.mixed_precision: `state_dtype` must be a real floating dtype, got {state_dtype}")

    def to_state(tree):
        def cast(a):
            return a.astype(state_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

        return jax.tree_util.tree_map(cast, tree)

    return wrap(
        cell,
        name=cell.name,
        config={**cell.config, "state_dtype": state_dtype.name},
        state=to_state,
        output=lambda y, x: y.astype(x.dtype),
    )
