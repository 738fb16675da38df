"""rnnjax: recurrent neural networks in JAX as pure functions.

    import jax, rnnjax
    cell = rnnjax.cells.lstm(hidden_size=128)
    params = cell.init(jax.random.key(0), input_size=16)
    carry, ys = rnnjax.unroll(cell, params, xs)      # xs: [T, *batch, 16]
    carry, ys = rnnjax.unroll(cell, params, xs, method=rnnjax.Scan(remat=True))   # how: one value

The core (`rnnjax.cells`, `rnnjax.unroll`, `rnnjax.reference`) imports only
JAX and NumPy; framework adapters live at the edge.
"""

from rnnjax import cells, layers, reference, seq2seq
from rnnjax._unrolling import sequence_mask, unroll
from rnnjax.methods import Chunkwise, LinearScan, Method, Scan, Sharded, TrainInfer, auto
from rnnjax.precision import mixed_precision

__version__ = "0.1.0"

__all__ = [
    "Chunkwise",
    "LinearScan",
    "Method",
    "Scan",
    "Sharded",
    "TrainInfer",
    "auto",
    "cells",
    "layers",
    "mixed_precision",
    "reference",
    "seq2seq",
    "sequence_mask",
    "unroll",
    "__version__",
]
