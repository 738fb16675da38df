"""Recurrent cells as pure functions, and the registry that tests and benchmarks them.

Every cell is a `Cell` (a NamedTuple of `init`, `initial_carry`, `step` and a
few facts), built by a factory in its own file. Importing this package
registers all of them; `names()` lists them and `get(name, **kwargs)` builds one.
"""

from rnnjax.cells.cell import (
    Carry,
    Cell,
    LinearRecurrence,
    MatrixInputs,
    MatrixRecurrence,
    MatrixState,
    Params,
    wrap,
)

# Each import registers its cells.
from rnnjax.cells.deltanet import deltanet
from rnnjax.cells.elman import elman
from rnnjax.cells.gated_deltaproduct import gated_deltaproduct
from rnnjax.cells.gla import gla
from rnnjax.cells.gru import gru
from rnnjax.cells.indrnn import indrnn
from rnnjax.cells.kda import kda
from rnnjax.cells.lru import lru
from rnnjax.cells.lstm import LSTMState, lstm
from rnnjax.cells.mgu import mgu
from rnnjax.cells.mingru import mingru
from rnnjax.cells.minlstm import minlstm
from rnnjax.cells.mlstm import mlstm
from rnnjax.cells.registry import CellSpec, Tolerance, get, names, register, spec, specs, unregister
from rnnjax.cells.rglru import rglru
from rnnjax.cells.rwkv7 import rwkv7
from rnnjax.cells.s5 import s5
from rnnjax.cells.s6 import s6
from rnnjax.cells.slstm import SLSTMState, slstm
from rnnjax.cells.ssd import ssd

__all__ = [
    "wrap",
    "Carry",
    "Cell",
    "CellSpec",
    "LSTMState",
    "LinearRecurrence",
    "MatrixInputs",
    "MatrixRecurrence",
    "MatrixState",
    "SLSTMState",
    "Params",
    "Tolerance",
    "deltanet",
    "elman",
    "gated_deltaproduct",
    "get",
    "gla",
    "gru",
    "indrnn",
    "kda",
    "lru",
    "lstm",
    "mgu",
    "mingru",
    "minlstm",
    "mlstm",
    "names",
    "register",
    "rglru",
    "rwkv7",
    "s5",
    "s6",
    "slstm",
    "spec",
    "specs",
    "ssd",
    "unregister",
]
