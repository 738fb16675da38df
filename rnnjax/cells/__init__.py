"""Recurrent cells as pure functions, and the registry that tests and benchmarks them.

Every cell is a `Cell` (a NamedTuple of `init`, `initial_carry`, `step` and a
few facts), built by a factory in its own file. Importing this package
registers all of them; `names()` lists them and `get(name, **kwargs)` builds one.
"""

from rnnjax.cells.cell import Carry, Cell, LinearRecurrence, Params
from rnnjax.cells.registry import CellSpec, Tolerance, get, names, register, spec, specs, unregister

# Each import registers its cells.
from rnnjax.cells.elman import elman
from rnnjax.cells.gru import gru
from rnnjax.cells.indrnn import indrnn
from rnnjax.cells.lru import lru
from rnnjax.cells.lstm import LSTMState, lstm
from rnnjax.cells.mgu import mgu
from rnnjax.cells.mingru import mingru
from rnnjax.cells.minlstm import minlstm

__all__ = [
    "Carry",
    "Cell",
    "CellSpec",
    "LSTMState",
    "LinearRecurrence",
    "Params",
    "Tolerance",
    "elman",
    "get",
    "gru",
    "indrnn",
    "lru",
    "lstm",
    "mgu",
    "mingru",
    "minlstm",
    "names",
    "register",
    "spec",
    "specs",
    "unregister",
]
