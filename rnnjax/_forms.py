"""The form types: `Cell` and the forms a cell may declare besides its step.

The bottom layer of rnnjax: it imports nothing of the package, and every
other module may import it (the layers are written down as an
import-linter contract in pyproject.toml and checked by `make test`).

- `Cell`: a recurrent cell as a small bundle of pure functions and the facts the unroll needs.
- `LinearRecurrence`: `h_t = a_t * h_(t-1) + b_t` (the parallel scan's form).
- `MatrixRecurrence`, `MatrixInputs`, `MatrixState`: a matrix memory written with outer products (the chunkwise form's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Carry = Any  # a pytree of arrays with leading batch dimensions


class LinearRecurrence(NamedTuple):
    """The form `h_t = a_t * h_{t-1} + b_t` of a cell whose carry update is linear in h.

    Cells that expose it can be unrolled with `jax.lax.associative_scan`
    (`rnnjax.unroll(..., method=rnnjax.LinearScan())`), in O(log T) depth.

    Attributes:
      coefficients: `(params, xs) -> (a, b)`, with `xs: [T, *batch, I]` and
        `a, b: [T, *batch, H]` (same shape and dtype as the carry, which is a
        single array). Computed for every step at once, outside any scan.
      readout: `(params, hs, xs) -> ys`, with `hs: [T, *batch, H]` the carries
        after each step; gives the outputs `ys: [T, *batch, O]`.
    """

    coefficients: Callable[[Params, Array], tuple[Array, Array]]
    readout: Callable[[Params, Array, Array], Array]


class MatrixInputs(NamedTuple):
    """What a matrix-memory cell computes from its inputs, for every step at once.

    Leading axes `[...]` are those of the inputs (`[T, *batch]` for a
    sequence, `[*batch]` for one step); H heads, key size `dk`, value size `dv`.
    Which fields are set says which member of the family the cell is (see
    `MatrixRecurrence` for the equations): only the decay (`log_decay`) and
    the write (`k v^T`): decay and write; `beta`: the delta rule; `a` and
    `b`: a diagonal-plus-low-rank transition; `log_write`: an exponential
    input gate, stabilised. `beta` and `a, b` and `log_write` exclude each other.

    Attributes:
      q: queries `[..., H, dk]`.
      k: keys `[..., H, dk]`; with the delta rule's substeps (`MatrixRecurrence.substeps`
        n > 1, DeltaProduct) `[..., H, n, dk]`, one key per substep.
      v: values `[..., H, dv]` (`[..., H, n, dv]` with substeps).
      log_decay: log of the state's decay, `<= 0`: `[..., H, 1]` (one scalar
        per head, e.g. Mamba-2, mLSTM, Gated DeltaNet) or `[..., H, dk]` (one
        per key dimension, GLA, KDA, RWKV-7). Kept in log space so that products over many
        steps are sums, which neither underflow nor lose precision in float32.
      beta: `[..., H]` (`[..., H, n]` with substeps) delta-rule strength, in
        [0, 1], or [0, 2] for negative eigenvalues (Grazzi et al. 2025: the
        transition `I - beta k k^T` of a unit key has eigenvalues 1 and
        1 - beta); or None.
      log_write: `[..., H]` log of an exponential input gate (mLSTM), or
        None. Its values are unbounded, so the state is carried divided by
        `exp(m)` with the stabiliser `m_t = max(log_decay_t + m_{t-1}, log_write_t)`.
      a: `[..., H, dk]`, the column of a low-rank term `a_t b_t^T` of the
        transition (the direction it writes along), or None.
      b: `[..., H, dk]`, its row (the direction it reads the state with), or None.
    """

    q: Array
    k: Array
    v: Array
    log_decay: Array
    beta: Array | None = None
    log_write: Array | None = None
    a: Array | None = None
    b: Array | None = None


class MatrixState(NamedTuple):
    """The carry of a matrix-memory cell.

    Attributes:
      S: the memory `[*batch, H, dk, dv]` (key-major: `o_t = S_t^T q_t`),
        divided by `exp(m)` when the cell is stabilised.
      m: the stabiliser `[*batch, H]` (mLSTM), or None.
    """

    S: Array
    m: Array | None = None


class MatrixRecurrence(NamedTuple):
    """The form of a cell whose state is a matrix written with outer products, per head (key-major `S [dk, dv]`).

    One general form, `D_t = Diag(exp(log_decay_t))` (a scalar per head or a
    decay per key dimension), of which each cell sets the parts it has
    (`MatrixInputs`):

        decay and write (GLA, SSD):       S_t = D_t S_{t-1} + k_t v_t^T
        low rank (RWKV-7):                S_t = (D_t + a_t b_t^T) S_{t-1} + k_t v_t^T
        delta rule (DeltaNet, Gated       S_t = (I - beta_t k_t k_t^T) D_t S_{t-1} + beta_t k_t v_t^T
          DeltaNet, KDA):
        substeps (DeltaProduct, n > 1):   S_t = H_n ... H_1 D_t S_{t-1} + (the n writes), each
                                          H_j (.) = (I - beta_j k_j k_j^T)(.) + beta_j k_j v_j^T
        stabilised (mLSTM):               S_t = D_t S_{t-1} + exp(log_write_t) k_t v_t^T, carried
                                          divided by exp(m_t) (see `MatrixInputs.log_write`)

        o_t = S_t^T q_t,        y_t = readout(o_t, ...)

    The delta rule decays first and then erases and writes (KDA's order; for a
    scalar decay the order does not matter). Cells that give the form get
    their step (`matrix_step`) and the chunkwise-parallel unroll
    (`rnnjax.unroll(..., method=rnnjax.Chunkwise())`, `rnnjax/_chunkwise.py`)
    from the same equations, so the forms cannot drift apart; the chunkwise
    form picks its algorithm from what is set (decay and write; the delta rule
    with a scalar decay by the UT transform; the general algorithm for a decay
    per key with the delta rule or a low-rank term).

    Attributes:
      inputs: `(params, xs) -> MatrixInputs`, for `xs [..., I]` with any leading axes.
      readout: `(params, o, m, xs) -> ys`: `o [..., H, dv]` is `S_t^T q_t`
        (in the stabilised state's units, i.e. divided by `exp(m_t)`),
        `m [..., H]` the stabiliser after the step (None when not stabilised).
      num_heads: H.
      key_size: dk.
      value_size: dv (the state's columns; the mLSTM's carry one more for its normaliser).
      stabilised: whether the carry has a stabiliser `m`.
      chunk_size: the chunk length `rnnjax.Chunkwise()` uses by default for
        this cell (chosen by measurement; docs/modern.md says which numbers decided).
      substeps: delta-rule steps per token (DeltaProduct's n_h); with n > 1,
        `k`, `v` and `beta` carry an axis of length n after the heads' axis.
        The chunkwise form runs the n substeps as steps of their own (the
        decay on the first, the query on the last), so its chunks hold
        `chunk_size` tokens of n steps each.
    """

    inputs: Callable[[Params, Array], MatrixInputs]
    readout: Callable[[Params, Array, Array | None, Array], Array]
    num_heads: int
    key_size: int
    value_size: int
    stabilised: bool = False
    chunk_size: int = 32
    substeps: int = 1


class Cell(NamedTuple):
    """A recurrent cell: pure functions and the facts the unroll needs.

    Attributes:
      init: `(key, input_size) -> params`.
      initial_carry: `(params, batch_shape) -> carry`; zeros in the cell's dtype.
      step: `(params, carry, x_t) -> (carry, y_t)`, with `x_t: [*batch, I]` and
        `y_t: [*batch, output_size]`. The signature of a `jax.lax.scan` body.
      input_spec: `params -> (input_size, dtype)`: what `x_t` must look like
        for these params (used to check inputs before tracing).
      name: the registry name of the cell family (e.g. `"lstm"`).
      hidden_size: size of the recurrent state.
      output_size: size of `y_t`.
      config: the hyperparameters the cell was built with (the factory's
        keyword arguments), e.g. `{"hidden_size": 64, "activation": "tanh"}`.
      linear: the cell's `LinearRecurrence` form, or None when its carry
        update is not linear in the carry.
      matrix: the cell's `MatrixRecurrence` form (matrix-memory cells), or
        None; it gives the chunkwise-parallel unroll.
      sequence: optional kernel for a whole sequence, `(params, xs [T, B, I],
        carry, mask [T, B] | None, reverse) -> (carry, ys)`, computing exactly
        what `lax.scan` of `step` computes (masked steps keep the carry and get
        zero gradient; their outputs may be anything, `unroll` zeroes them),
        laid out for speed; `rnnjax.unroll` uses it on CPU (see its `kernel` argument).
    """

    init: Callable[[PRNGKey, int], Params]
    initial_carry: Callable[[Params, tuple[int, ...]], Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    input_spec: Callable[[Params], tuple[int, np.dtype]]
    name: str
    hidden_size: int
    output_size: int
    config: Mapping[str, Any]
    linear: LinearRecurrence | None = None
    sequence: Callable[..., tuple[Carry, Array]] | None = None
    matrix: MatrixRecurrence | None = None


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a config value: mappings and lists become sorted tuples."""
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _cell_hash(self: Cell) -> int:
    fields = zip(self._fields, self, strict=True)
    return hash(tuple(_frozen(field) if name == "config" else field for name, field in fields))


# a Cell hashes (its config, a dict, by value), so a cell is a static argument of `jax.jit` and a cache key
Cell.__hash__ = _cell_hash
