"""Hand-written backpropagation through time, in plain NumPy float64.

These are the oracles that `jax.grad` of `rnnjax.unroll` is checked against.
Each cell's reference is a forward loop that caches what it needs and a
backward loop over `reversed(range(T))` with one comment per chain-rule step.
They import nothing from JAX and share no code with the cells, so an error in
the cells cannot be repeated here.

Single-sequence signature (unbatched)::

    reference(params, xs [T, I], carry0, dys [T, O], d_carry_final, **config) -> BPTTResult

`bptt(reference, ...)` runs one over a batch with `lengths` and `reverse`.
"""

from rnnjax.reference.batch import bptt
from rnnjax.reference.deltanet import deltanet, gated_deltaproduct
from rnnjax.reference.elman import elman
from rnnjax.reference.gla import gla
from rnnjax.reference.gru import gru
from rnnjax.reference.indrnn import indrnn
from rnnjax.reference.kda import kda
from rnnjax.reference.lru import lru
from rnnjax.reference.lstm import lstm
from rnnjax.reference.lstm_layernorm import lstm_layernorm
from rnnjax.reference.mgu import mgu
from rnnjax.reference.mingru import mingru
from rnnjax.reference.minlstm import minlstm
from rnnjax.reference.mlstm import mlstm
from rnnjax.reference.result import BPTTResult
from rnnjax.reference.rglru import rglru
from rnnjax.reference.rwkv7 import rwkv7
from rnnjax.reference.s5 import s5
from rnnjax.reference.s6 import s6
from rnnjax.reference.slstm import slstm
from rnnjax.reference.ssd import ssd

__all__ = [
    "BPTTResult",
    "bptt",
    "deltanet",
    "elman",
    "gated_deltaproduct",
    "gla",
    "gru",
    "lstm",
    "lstm_layernorm",
    "indrnn",
    "kda",
    "lru",
    "mgu",
    "mingru",
    "minlstm",
    "mlstm",
    "rglru",
    "rwkv7",
    "s5",
    "s6",
    "slstm",
    "ssd",
]
