"""Sequence layers built from cells: stacks, learnable initial carries, bidirectional
layers and streaming. (Truncated BPTT and rematerialisation are options of
the scan: `rnnjax.unroll(..., method=rnnjax.Scan(truncation=K, remat=True))`.)

Stacks and learnable initial carries are themselves `Cell`s, so everything
`rnnjax.unroll` does (lengths, reverse, resets, remat, streaming with
`cell.step`) applies to them unchanged, and the flax adapter wraps them too::

    cell = rnnjax.layers.stack([rnnjax.cells.lstm(128), rnnjax.cells.gru(128)], residual=True)
    params = cell.init(key, input_size=64)
    carry, ys = rnnjax.unroll(cell, params, xs, lengths=lengths)

`stacked_unroll` runs the same stack layer by layer over the whole sequence
(as PyTorch's `nn.LSTM(num_layers=...)` does), with dropout between layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rnnjax._unrolling import unroll
from rnnjax.cells.cell import Carry, Cell, Params, wrap
from rnnjax.methods import Method

# --- stacks ------------------------------------------------------------------------------


def _check_residual(cells: Sequence[Cell]) -> None:
    sizes = [c.output_size for c in cells]
    for k in range(1, len(cells)):
        if sizes[k] != sizes[k - 1]:
            raise ValueError(
                f"rnnjax.layers.stack: residual=True needs equal output sizes from layer 1 on, "
                f"got layer {k} output {sizes[k]} after layer {k - 1} output {sizes[k - 1]}"
            )


def stack(cells: Sequence[Cell], *, residual: bool = False) -> Cell:
    """Stack cells (same or mixed kinds) into one cell whose carry is the tuple of theirs.

    At each step the input goes through layer 0, its output through layer 1,
    and so on; `y_t` is the top layer's output. With `residual=True` each
    layer after the first adds its input to its output (He et al. 2016; sizes
    must match). Params: a tuple, one entry per layer. The whole stack runs in
    one scan over time (depth inside time), which is what streaming needs.
    """
    cells = tuple(cells)
    if not cells or not all(isinstance(c, Cell) for c in cells):
        raise TypeError(f"rnnjax.layers.stack: `cells` must be a non-empty sequence of Cells, got {cells!r}")
    if residual:
        _check_residual(cells)

    def init(key, input_size):
        params, size = [], input_size
        for cell, k in zip(cells, jax.random.split(key, len(cells)), strict=True):
            params.append(cell.init(k, size))
            size = cell.output_size
        return tuple(params)

    def initial_carry(params, batch_shape=()):
        return tuple(cell.initial_carry(p, batch_shape) for cell, p in zip(cells, params, strict=True))

    def step(params, carry, x):
        new_carry = []
        for k, (cell, p, c) in enumerate(zip(cells, params, carry, strict=True)):
            c, y = cell.step(p, c, x)
            x = x + y if residual and k > 0 else y
            new_carry.append(c)
        return tuple(new_carry), x

    def input_spec(params):
        return cells[0].input_spec(params[0])

    return Cell(
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_spec=input_spec,
        name="stack",
        hidden_size=cells[-1].hidden_size,
        output_size=cells[-1].output_size,
        config={"cells": tuple(c.name for c in cells), "residual": residual},
    )


def stacked_unroll(
    cells: Sequence[Cell],
    params: Sequence[Params],
    xs: ArrayLike,
    *,
    initial_carry: Sequence[Carry] | None = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    residual: bool = False,
    dropout: float = 0.0,
    key: jax.Array | None = None,
    deterministic: bool = True,
    bidirectional: bool = False,
    time_major: bool = True,
    method: Method | None = None,
) -> tuple[tuple[Carry, ...], jax.Array]:
    """Run a stack layer by layer, each over the whole sequence; dropout between layers.

    Equal to `unroll(stack(cells), ...)` when no dropout is applied (tested).
    Dropout (rate `dropout`) is applied to each layer's outputs before the next
    layer, never after the last, only when `deterministic=False`, with the
    explicit PRNG `key` (required then). Pass `deterministic=True` at evaluation.

    With `bidirectional=True` every layer is a `bidirectional` pair of passes
    with `cells[k]` in both directions: `params[k]` and `initial_carry[k]` are
    `(forward, backward)` pairs, and each layer reads the concatenated outputs
    of both directions of the layer below. This is the layout of PyTorch's
    `nn.LSTM(num_layers=L, bidirectional=True)` (see `rnnjax.interop.from_torch`).

    `time_major=False` for `[*batch, T, I]` data; `method` runs every layer
    (None: `rnnjax.auto` picks per layer).

    Returns `(carries, ys)`: a tuple with each layer's final carry (a
    `(forward, backward)` pair when bidirectional), and the top outputs.
    """
    fn = "rnnjax.layers.stacked_unroll"
    cells = tuple(cells)
    if len(params) != len(cells):
        raise ValueError(f"{fn}: `params` must have one entry per cell ({len(cells)}), got {len(params)}")
    if bidirectional and reverse:
        raise ValueError(f"{fn}: `reverse` does not apply with bidirectional=True (each layer runs both ways)")
    if residual:
        _check_residual(cells)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"rnnjax.layers.stacked_unroll: `dropout` must be in [0, 1), got {dropout}")
    use_dropout = dropout > 0.0 and not deterministic
    if use_dropout and key is None:
        raise ValueError("rnnjax.layers.stacked_unroll: `key` is required when dropout > 0 and deterministic=False")
    keys = jax.random.split(key, len(cells)) if use_dropout else [None] * len(cells)
    carries = []
    for k, (cell, p) in enumerate(zip(cells, params, strict=True)):
        c0 = None if initial_carry is None else initial_carry[k]
        carry, ys = _one_layer(cell, p, xs, c0, lengths, reverse, bidirectional, time_major, method)
        carries.append(carry)
        if residual and k > 0:
            ys = ys + xs
        if use_dropout and k < len(cells) - 1:
            keep = jax.random.bernoulli(keys[k], 1.0 - dropout, ys.shape)
            ys = jnp.where(keep, ys / (1.0 - dropout), jnp.zeros((), ys.dtype))
        xs = ys
    return tuple(carries), xs


# --- learnable initial carry ---------------------------------------------------------------


def learnable_initial_carry(cell: Cell) -> Cell:
    """Wrap `cell` so that its initial carry is a trained parameter.

    Params become `{"cell": cell_params, "carry": one carry without batch axes}`
    (initialised to the cell's zeros); `initial_carry(params, batch_shape)`
    broadcasts the learned carry over the batch, so gradients reach it through
    every sequence in the batch.
    """

    def init(key, input_size):
        params = cell.init(key, input_size)
        return {"cell": params, "carry": cell.initial_carry(params, ())}

    def initial_carry(params, batch_shape=()):
        return jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (*tuple(batch_shape), *c.shape)), params["carry"])

    return wrap(
        cell,
        name=f"{cell.name}+learned_carry",
        config={**cell.config, "learnable_initial_carry": True},
        params=lambda params: params["cell"],
        init=init,
        initial_carry=initial_carry,
    )


# --- bidirectional -----------------------------------------------------------------------

MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda fw, bw: jnp.concatenate([fw, bw], axis=-1),
    "sum": lambda fw, bw: fw + bw,
    "mean": lambda fw, bw: 0.5 * (fw + bw),
}


def bidirectional(
    forward_cell: Cell,
    backward_cell: Cell,
    params: tuple[Params, Params],
    xs: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
    initial_carry: tuple[Carry, Carry] | None = None,
    merge: str | Callable[[jax.Array, jax.Array], jax.Array] = "concat",
    time_major: bool = True,
    method: Method | None = None,
) -> tuple[tuple[Carry, Carry], jax.Array]:
    """A forward and a backward pass over `xs`, outputs merged per step.

    The backward pass reverses each sequence within its own length (so with
    `lengths` it starts at each sequence's last valid step, as PyTorch's
    packed sequences do). `merge` is "concat" (default), "sum", "mean", or a
    function `(y_fw, y_bw) -> y`. Padded steps of both directions are zero
    before merging. `time_major=False` for `[*batch, T, I]` data; `method`
    runs both passes (None: `rnnjax.auto` picks).

    Returns `((carry_fw, carry_bw), ys)`; `carry_bw` is the backward pass's
    carry after the first step of each sequence.
    """
    merge_fn = MERGES.get(merge) if isinstance(merge, str) else merge
    if merge_fn is None:
        raise ValueError(
            f"rnnjax.layers.bidirectional: `merge` must be one of {sorted(MERGES)} or a function, got {merge!r}"
        )
    c_fw, c_bw = (None, None) if initial_carry is None else initial_carry
    data = dict(lengths=lengths, time_major=time_major, method=method)
    carry_fw, ys_fw = unroll(forward_cell, params[0], xs, initial_carry=c_fw, **data)
    carry_bw, ys_bw = unroll(backward_cell, params[1], xs, initial_carry=c_bw, reverse=True, **data)
    return (carry_fw, carry_bw), merge_fn(ys_fw, ys_bw)


def _one_layer(cell, params, xs, carry0, lengths, reverse, both_ways, time_major, method):
    """One layer of `stacked_unroll`: a plain unroll, or a bidirectional pair with concatenated outputs."""
    data = dict(initial_carry=carry0, lengths=lengths, time_major=time_major, method=method)
    if both_ways:
        return bidirectional(cell, cell, params, xs, **data)
    return unroll(cell, params, xs, reverse=reverse, **data)


# --- streaming -----------------------------------------------------------------------------


def streaming_step(cell: Cell) -> Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]:
    """A jitted `cell.step` for stepping a trained model one input at a time.

    For sampling from a language model or online forecasting: keep the carry
    between calls; the outputs equal those of one `unroll` over the whole
    sequence (tested). Compiles once per input shape.
    """
    return jax.jit(cell.step)
