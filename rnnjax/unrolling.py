"""`unroll`: run a cell over a sequence with `jax.lax.scan`; `jax.grad` of it is BPTT."""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rnnjax import checks
from rnnjax.cells.cell import Carry, Cell, Params
from rnnjax.chunkwise import across_devices, chunkwise_unroll

Method = Literal["sequential", "parallel", "chunkwise", "pallas", "auto"]
METHODS = ("sequential", "parallel", "chunkwise", "pallas", "auto")


def forms(cell: Cell) -> list[str]:
    """The unroll methods `cell` supports (besides "auto")."""
    out = ["sequential"]
    if cell.linear is not None or cell.matrix is not None:
        out.append("parallel")
    if cell.matrix is not None:
        out.append("chunkwise")
    return out


def sequence_mask(lengths: ArrayLike, T: int) -> jax.Array:
    """`[T, *batch]` booleans, True at the valid steps `t < lengths` of right-padded sequences."""
    lengths = jnp.asarray(lengths)
    steps = jnp.arange(T).reshape((T,) + (1,) * lengths.ndim)
    return steps < lengths


def _where_valid(valid: jax.Array, new: Any, old: Any) -> Any:
    """Leaf-wise `where(valid, new, old)`, with `valid [*batch]` broadcast over feature axes."""

    def select(n, o):
        v = valid.reshape(valid.shape + (1,) * (jnp.ndim(n) - valid.ndim))
        return jnp.where(v, n, o)

    return jax.tree_util.tree_map(select, new, old)


# on the CPU, `auto` runs a linear cell's parallel scan up to this many carry elements per step
PARALLEL_CPU_MAX_CARRY = 4096


def resolve_method(cell: Cell, method: str, *, needs_scan: bool = False, carry_size: int | None = None) -> str:
    """The unroll method `auto` stands for, for this cell on the default backend.

    Rule (the measurements are in docs/benchmarks.md and docs/modern.md):
    matrix-memory cells take the chunkwise form (faster than their sequential
    scan in training from T = 256 on, on the 2-core CPU, and it stores one state per
    chunk), unless `needs_scan` (the call asks for remat, truncation or an
    unroll factor). Cells with a linear form take the parallel associative scan
    (O(T log T) work in O(log T) depth) on a non-CPU backend, where many cores
    wait for work (not yet measured on one), and on the CPU when a step's carry
    is small, `carry_size <= PARALLEL_CPU_MAX_CARRY` elements over the batch:
    there the sequential scan's per-step cost is overhead, not arithmetic. On
    the 2-core CPU the parallel scan trained 1.2-3.3x faster with 1,024
    elements per step (RG-LRU, LRU, S5 at batch 4) and the sequential scan
    1.4-2.1x faster with 8,192 (LRU, minGRU at batch 32) and 16,384 (S6 at
    batch 4); the threshold lies between. Without `carry_size`, CPU picks the
    sequential scan.
    """
    if method not in METHODS:
        raise ValueError(f"rnnjax.unroll: `method` must be one of {list(METHODS)}, got {method!r}")
    if method == "parallel" and cell.linear is None and cell.matrix is None:
        raise ValueError(
            f"rnnjax.unroll: method='parallel' needs a cell with a linear recurrence "
            f"(h_t = a_t * h_(t-1) + b_t) or a matrix memory, and cell {cell.name!r} has neither; "
            f"its forms are {forms(cell)}"
        )
    if method == "pallas" and cell.linear is None and cell.matrix is None:
        raise ValueError(
            f"rnnjax.unroll: method='pallas' runs the Pallas kernel of the diagonal linear scan or of the chunkwise "
            f"form, which needs a cell with a linear recurrence (h_t = a_t * h_(t-1) + b_t) or a matrix memory, and "
            f"cell {cell.name!r} has neither; its forms are {forms(cell)}"
        )
    if method == "chunkwise" and cell.matrix is None:
        raise ValueError(
            f"rnnjax.unroll: method='chunkwise' needs a cell with a matrix-memory form (MatrixRecurrence), "
            f"and cell {cell.name!r} has none; its forms are {forms(cell)}"
        )
    if method == "auto":
        if cell.matrix is not None and not needs_scan:
            return "chunkwise"
        if cell.linear is None or needs_scan:
            return "sequential"
        if jax.default_backend() != "cpu":
            return "parallel"
        small = carry_size is not None and carry_size <= PARALLEL_CPU_MAX_CARRY
        return "parallel" if small else "sequential"
    return method


def unroll(
    cell: Cell,
    params: Params,
    xs: ArrayLike,
    *,
    initial_carry: Carry | None = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    time_major: bool = True,
    method: Method = "auto",
    resets: ArrayLike | None = None,
    remat: bool | int = False,
    truncation: int | None = None,
    kernel: bool | None = None,
    chunk_size: int | None = None,
    time_axis_name: str | None = None,
) -> tuple[Carry, jax.Array]:
    """Run `cell` over the time axis of `xs`; returns `(final_carry, ys)`.

    Args:
      cell: an `rnnjax.cells.Cell`.
      params: the cell's params, from `cell.init(key, input_size)`.
      xs: inputs `[T, *batch, I]` (time-major), or `[*batch, T, I]` with
        `time_major=False` for batch-major data such as `[B, T, I]`.
      initial_carry: the starting state; default `cell.initial_carry(params, batch_shape)`.
      lengths: `[*batch]` integers in [0, T] for right-padded batches. Steps
        `t >= lengths` are padding: their outputs are exactly zero, they leave
        the carry unchanged (so the returned carry is each sequence's carry at
        its last valid step, or `initial_carry` for length 0), and they get
        exactly zero gradient. Padding values, NaN included, never reach valid
        outputs or gradients. Values are checked when concrete; under `jit`
        they are not, and act as if clipped to [0, T].
      reverse: process each sequence from its last valid step back to its
        first (within its own length when `lengths` is given, as PyTorch's
        packed sequences do). Outputs stay aligned with the inputs: `ys[t]`
        is the output after consuming `xs[t]`.
      unroll: the `jax.lax.scan` unroll factor (steps per loop iteration).
      time_major: False for `[*batch, T, I]` inputs and outputs.
      method: "sequential" (`lax.scan`), "pallas" (cells with a linear form: the
        Pallas kernel of the linear scan, rnnjax/kernels/pallas_scan.py;
        matrix-memory cells: the Pallas kernels of the chunkwise form,
        rnnjax/kernels/pallas_chunkwise.py; in interpret mode off a GPU), "parallel" (`lax.associative_scan`
        for cells with a `LinearRecurrence` form; for matrix-memory cells the
        quadratic form, i.e. one chunk of T steps), "chunkwise" (matrix-memory
        cells: masked matrix products inside chunks of `chunk_size` steps, a
        scan across chunks; rnnjax/chunkwise.py), or "auto" (see `resolve_method`).
      resets: `[T, *batch]` booleans marking the first step of a new sequence
        inside a packed stream (RL rollouts, packed language-model batches):
        the carry is set back to `initial_carry` before that step is
        processed. The result equals running each segment alone. With
        `reverse=True` a segment is processed from its last step to its
        first, starting from `initial_carry`. Same layout as the time axis of `xs`.
      remat: rematerialise over time (sequential method only): `True` for
        chunks of about sqrt(T) steps, or an int chunk length K. Only the
        carry at chunk boundaries is kept for the backward pass and each
        chunk's forward is recomputed there (`jax.checkpoint`), so training
        memory grows like T/K + K instead of T, for about one extra forward.
      truncation: truncated BPTT with chunks of K steps (sequential method
        only). The forward pass is unchanged; the carry's gradient is stopped
        at every chunk boundary, so a loss on chunk k trains through chunk k's
        steps only. Use it when sequences are too long to backpropagate
        through whole and the dependencies that matter are shorter than K
        (e.g. language models on long streams); it cannot learn longer ones.
        For exact gradients in less memory use `remat` instead. Combined with
        `remat`, the chunks are the same (`remat=True` then means K).
      kernel: whether to run the cell's sequence kernel (`cell.sequence`, e.g.
        the LSTM's, rnnjax/kernels/lstm.py) instead of `lax.scan` over
        `cell.step`. Same function, same gradients, faster where it was
        measured to be; on a GPU the LSTM's kernel is cuDNN for float32
        (rnnjax/kernels/cudnn_lstm.py). None (default): where the cell has
        one, the backend is in `KERNEL_BACKENDS` (the CPU; not yet timed on a
        GPU) and the call needs nothing the kernel lacks (the sequential
        method, `unroll=1`, no `resets`, `remat` or `truncation`). False: always
        the plain scan. True: the kernel, or a ValueError saying why not. The
        kernels' VJPs are hand-written, so use False for forward-mode autodiff
        (`jax.jvp`, `jax.jacfwd`).
      chunk_size: steps per chunk for method="chunkwise" (default: the
        cell's `matrix.chunk_size`, chosen by measurement); any T works (the
        last chunk is padded with identity steps).
      time_axis_name: the time axis is sharded over this mesh axis: call
        `unroll` inside `jax.shard_map`, with `xs` (and `resets`) the device's
        contiguous slice of the time axis, device k holding steps
        `[k * T_local, (k + 1) * T_local)`; `lengths` count steps of the whole
        sequence, and `initial_carry` is replicated. Each device scans its
        slice from a zero state, the slices' summaries are gathered over the
        axis, and each device corrects its states with the state entering its
        slice. Returns the device's outputs and the global final carry (the
        same on every device). For cells with a `LinearRecurrence` form
        (the parallel scan) or a `MatrixRecurrence` form (the chunkwise
        form, each device's slice summarised by a map of the state); see
        `sharded_unroll`.

    Returns:
      `(carry, ys)`: the final carry (leaves `[*batch, ...]`) and the outputs
      `[T, *batch, O]` (or `[*batch, T, O]` with `time_major=False`).

    Raises:
      TypeError: a wrong type or dtype, naming the argument, what was expected
        and what came, before anything is traced.
      ValueError: a wrong shape or value, named the same way.
    """
    fn = "rnnjax.unroll"
    checks.check_cell(fn, cell)
    if not hasattr(xs, "shape"):
        xs = jnp.asarray(xs)
    if time_axis_name is not None:
        return sharded_unroll(
            cell,
            params,
            xs,
            time_axis_name,
            initial_carry=initial_carry,
            lengths=lengths,
            reverse=reverse,
            resets=resets,
            time_major=time_major,
            method=method,
            chunk_size=chunk_size,
            unsupported={"remat": remat, "truncation": truncation, "unroll": unroll != 1, "kernel": kernel},
        )
    T, batch_shape = checks.check_inputs(fn, cell, params, xs, time_major)
    if initial_carry is None:
        initial_carry = cell.initial_carry(params, batch_shape)
    else:
        checks.check_carry(fn, cell, params, initial_carry, batch_shape, "initial_carry")
    if lengths is not None:
        checks.check_lengths(fn, lengths, T, batch_shape)
    if resets is not None:
        resets = checks.check_resets(fn, resets, T, batch_shape, time_major)
    chunk = checks.chunk_length(fn, remat, truncation, T)
    # auto: options only the scan has (an unroll factor, remat, truncation) keep the scan
    carry_size = sum(int(jnp.size(leaf)) for leaf in jax.tree_util.tree_leaves(initial_carry))
    method = resolve_method(cell, method, needs_scan=bool(chunk) or unroll not in (1, False), carry_size=carry_size)
    if chunk and method != "sequential":
        raise ValueError(f"{fn}: `remat` and `truncation` apply to method='sequential' only, got method={method!r}")
    chunk_size = checks.chunk_size(fn, chunk_size, method, None if cell.matrix is None else cell.matrix.chunk_size)
    if method == "parallel" and cell.matrix is not None:
        method, chunk_size = "chunkwise", max(T, 1)  # the quadratic form: one chunk
    use_kernel = _use_kernel(fn, cell, kernel, method, unroll, resets, chunk)

    if not time_major:
        xs = jnp.moveaxis(xs, -2, 0)
        if resets is not None:
            resets = jnp.moveaxis(resets, -1, 0)
    mask = None
    if lengths is not None:
        mask = sequence_mask(lengths, T)
        # zero the padding once, outside the scan: a NaN there would otherwise turn the
        # zero cotangent of a masked step into NaN (0 * NaN) in the parameter gradients
        xs = jnp.where(mask[..., None], xs, jnp.zeros((), xs.dtype))
    if resets is not None and reverse:
        # a reverse scan enters segment [s, e) at its last step e - 1: reset there, i.e. where
        # the *next* step starts a segment
        resets = jnp.concatenate([resets[1:], jnp.zeros_like(resets[:1])], axis=0)

    if use_kernel and T > 0:
        carry, ys = _kernel_unroll(cell, params, xs, initial_carry, mask, reverse, batch_shape)
    elif (method == "chunkwise" or (method == "pallas" and cell.matrix is not None)) and T > 0:
        if method == "pallas" and resets is not None:
            raise ValueError(f"{fn}: method='pallas' on a matrix-memory cell takes no `resets` (use 'chunkwise')")
        carry, ys = chunkwise_unroll(
            cell, params, xs, initial_carry, mask, resets, reverse, chunk_size, pallas=method == "pallas"
        )
        if mask is not None:
            ys = _where_valid(mask, ys, jnp.zeros_like(ys))
    elif method in ("parallel", "pallas") and T > 0:
        carry, ys = _parallel_unroll(cell, params, xs, initial_carry, mask, resets, reverse, pallas=method == "pallas")
    else:
        carry, ys = _sequential_unroll(
            cell,
            params,
            xs,
            initial_carry,
            mask,
            resets,
            reverse,
            unroll,
            chunk,
            checkpoint=bool(remat),
            truncate=truncation is not None,
        )

    if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
    return carry, ys


# where `kernel=None` runs a cell's sequence kernel: measured faster than the scan on the CPU
# (docs/benchmarks.md). On a GPU the LSTM's kernel is cuDNN (rnnjax/kernels/cudnn_lstm.py) and
# the GRU's the blocked one; the GPU check (python -m benchmarks.accelerator, "rnnjax-kernel"
# against "rnnjax-scan") times them, and "gpu" joins this list when they win there.
KERNEL_BACKENDS = ("cpu",)


def _use_kernel(fn, cell, kernel, method, unroll, resets, chunk) -> bool:
    """Whether `unroll` runs `cell.sequence` (see the `kernel` argument)."""
    if kernel is False:
        return False
    if kernel not in (None, True):
        raise TypeError(f"{fn}: `kernel` must be None, True or False, got {kernel!r}")
    blockers = [
        (cell.sequence is None, f"cell {cell.name!r} has no sequence kernel"),
        (method != "sequential", f"method={method!r} (the kernels are sequential)"),
        (unroll not in (1, False), f"unroll={unroll!r} (the kernels choose their own)"),
        (resets is not None, "`resets` is given"),
        (bool(chunk), "`remat` or `truncation` is given"),
    ]
    reasons = [why for blocked, why in blockers if blocked]
    if kernel is True:
        if reasons:
            raise ValueError(f"{fn}: kernel=True, but the sequence kernel does not apply: {'; '.join(reasons)}")
        return True
    return not reasons and jax.default_backend() in KERNEL_BACKENDS


def _kernel_unroll(cell, params, xs, carry0, mask, reverse, batch_shape):
    """`cell.sequence` on `[T, N, I]`, with the batch axes flattened to N and restored."""
    T, n = xs.shape[0], int(math.prod(batch_shape))
    flat = lambda a: a.reshape(n, *a.shape[len(batch_shape) :])  # noqa: E731
    carry, ys = cell.sequence(
        params,
        xs.reshape(T, n, xs.shape[-1]),
        jax.tree_util.tree_map(flat, carry0),
        None if mask is None else mask.reshape(T, n),
        reverse,
    )
    if mask is not None:  # padded steps output zeros as on the scan path (a kernel may put anything there)
        ys = jnp.where(mask.reshape(T, n)[..., None], ys, jnp.zeros((), ys.dtype))
    carry = jax.tree_util.tree_map(lambda a: a.reshape(*batch_shape, *a.shape[1:]), carry)
    return carry, ys.reshape(T, *batch_shape, ys.shape[-1])


def _sequential_unroll(
    cell, params, xs, carry0, mask, resets, reverse, unroll, chunk, checkpoint=False, truncate=False
):
    """`lax.scan` over time; with `chunk`, a scan over chunks of `chunk` steps, each
    checkpointed (`checkpoint`) and/or cut off from the previous chunk's gradient (`truncate`)."""
    T = xs.shape[0]
    if chunk and T % chunk:
        # pad to whole chunks with masked steps, which leave the carry alone and are sliced off
        pad = chunk - T % chunk
        valid = jnp.ones(xs.shape[:-1], bool) if mask is None else mask
        mask = jnp.concatenate([valid, jnp.zeros((pad, *valid.shape[1:]), bool)])
        xs = jnp.concatenate([xs, jnp.zeros((pad, *xs.shape[1:]), xs.dtype)])
        if resets is not None:
            resets = jnp.concatenate([resets, jnp.zeros((pad, *resets.shape[1:]), bool)])

    def body(c, inputs):
        x, valid, reset = inputs
        if reset is not None:
            c = _where_valid(reset, carry0, c)  # a new segment starts from the initial carry
        new_c, y = cell.step(params, c, x)
        if valid is None:
            return new_c, y
        # padded steps keep the old carry and emit zeros; the reverse scan meets a sequence's
        # padding first, so it starts on its last valid step with the initial carry
        return _where_valid(valid, new_c, c), _where_valid(valid, y, jnp.zeros_like(y))

    inputs = (xs, mask, resets)
    if not chunk:
        return jax.lax.scan(body, carry0, inputs, reverse=reverse, unroll=unroll)

    def run_chunk(c, chunk_inputs):
        first, chunk_inputs = chunk_inputs
        if truncate:
            # cut the gradient at every boundary between chunks; the first chunk still
            # trains the initial carry
            c = jax.tree_util.tree_map(lambda a: jnp.where(first, a, jax.lax.stop_gradient(a)), c)
        return jax.lax.scan(body, c, chunk_inputs, reverse=reverse, unroll=unroll)

    n = xs.shape[0] // chunk
    chunks = jax.tree_util.tree_map(lambda a: a.reshape(n, chunk, *a.shape[1:]), inputs)
    first = jnp.arange(n) == (n - 1 if reverse else 0)
    carry, ys = jax.lax.scan(
        jax.checkpoint(run_chunk) if checkpoint else run_chunk, carry0, (first, chunks), reverse=reverse
    )
    ys = jax.tree_util.tree_map(lambda y: y.reshape(n * chunk, *y.shape[2:])[:T], ys)
    return carry, ys


def _parallel_unroll(cell, params, xs, h0, mask, resets, reverse, pallas=False):
    """`h_t = a_t * h_{t-1} + b_t` for all t at once with `jax.lax.associative_scan`
    (or, `pallas=True`, the sequential Pallas kernel of rnnjax/kernels/pallas_scan.py)."""
    a, b = _step_maps(cell, params, xs, h0, mask, resets)
    # fold the initial carry into the first step processed: b_1 <- a_1 h_0 + b_1
    first = a.shape[0] - 1 if reverse else 0
    b = b.at[first].add(a[first] * h0)

    if pallas:
        from rnnjax.kernels.pallas_scan import linear_scan

        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(
                f"rnnjax.unroll: method='pallas' takes real floating states; cell {cell.name!r} has a "
                f"{a.dtype} state (use method='parallel')"
            )
        hs = linear_scan(a, b, jnp.zeros_like(a[0]), reverse=reverse)
    else:
        _, hs = jax.lax.associative_scan(_compose, (a, b), reverse=reverse, axis=0)
    ys = cell.linear.readout(params, hs, xs)
    if mask is not None:
        ys = _where_valid(mask, ys, jnp.zeros_like(ys))
    return hs[0] if reverse else hs[-1], ys


# --- the time axis sharded over devices ----------------------------------------------------


def _step_maps(cell, params, xs, h0, mask, resets):
    """Each step's map `h -> a_t h + b_t`, with resets (start from h0) and padding (identity) applied."""
    a, b = cell.linear.coefficients(params, xs)
    expand = lambda m: m.reshape(m.shape + (1,) * (a.ndim - m.ndim))  # noqa: E731
    if resets is not None:
        # a reset step starts from h0 whatever came before: h_t = 0 * h_{t-1} + (a_t h0 + b_t)
        r = expand(resets)
        b = jnp.where(r, a * h0 + b, b)
        a = jnp.where(r, jnp.zeros((), a.dtype), a)
    if mask is not None:
        # a padded step is the identity map h -> 1 * h + 0
        valid = expand(mask)
        a = jnp.where(valid, a, jnp.ones((), a.dtype))
        b = jnp.where(valid, b, jnp.zeros((), b.dtype))
    return a, b


def _compose(earlier, later):
    """The map `h -> a2 (a1 h + b1) + b2` of two steps `h -> a h + b`, in order."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def sharded_unroll(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    axis_name: str,
    *,
    initial_carry: Carry | None = None,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    resets: ArrayLike | None = None,
    time_major: bool = True,
    method: str = "auto",
    chunk_size: int | None = None,
    unsupported: dict[str, Any] | None = None,
) -> tuple[Carry, jax.Array]:
    """`unroll(..., time_axis_name=axis_name)`: a cell over a time axis split across devices.

    Inside `jax.shard_map` over a mesh axis `axis_name` of P devices, device k
    holds steps `[k T_l, (k + 1) T_l)` of every sequence. For a linear cell,
    `h_t = a_t * h_{t-1} + b_t`:

    1. each device computes its `a_t, b_t` and scans them (associative scan)
       from a zero state: `h_t = A_t * h_in + B_t` for the state `h_in` that
       enters its slice, and `(A, B)` at the slice's end summarises it;
    2. the P summaries are gathered over the axis (`lax.all_gather`), and each
       device composes those of the slices before its own, starting from
       `initial_carry`, to get its `h_in` (and all P, the global final carry);
    3. it corrects its states, `h_t = A_t * h_in + B_t`, and reads out.

    A matrix-memory cell does the same with its chunkwise form
    (`rnnjax.chunkwise.chunkwise_unroll` with `axis_name`): a slice's summary
    is the composition of its chunks' maps of the state (a decay and a write
    for GLA and SSD, a `[dk, dk]` transition for the delta rule, a stabilised
    decay and write for the mLSTM), and step 3 runs the slice's chunks from
    the state that enters it.

    Exact: the same maps composed in another order. Gradients by autodiff
    (the transpose of the gather is a reduce-scatter). Padded steps
    (`lengths`) are identity maps; a reset step starts from `initial_carry`
    (`a = 0`); with `reverse` the slices are composed from the last device to
    the first, and a reset moves to the step before the segment's first, which
    may lie on the next device (fetched with `lax.ppermute`).
    """
    fn = "rnnjax.unroll"
    if cell.linear is None and cell.matrix is None:
        raise ValueError(
            f"{fn}: time_axis_name needs a cell with a linear recurrence (h_t = a_t * h_(t-1) + b_t) or a "
            f"matrix memory, and cell {cell.name!r} has neither; its forms are {forms(cell)}"
        )
    allowed = ("auto", "parallel", "chunkwise") if cell.matrix is not None else ("auto", "parallel")
    if method not in allowed:
        raise ValueError(
            f"{fn}: time_axis_name runs the {'chunkwise' if cell.matrix is not None else 'parallel'} form; "
            f"method must be one of {list(allowed)}, got {method!r}"
        )
    if cell.matrix is None and chunk_size is not None:
        raise ValueError(f"{fn}: `chunk_size` applies to matrix-memory cells, and cell {cell.name!r} is not one")
    for name, value in (unsupported or {}).items():
        if value not in (None, False, 0):
            raise ValueError(f"{fn}: `{name}` does not apply with time_axis_name (the parallel form has no scan)")
    T, batch_shape = checks.check_inputs(fn, cell, params, xs, time_major)
    if not time_major:
        xs = jnp.moveaxis(xs, -2, 0)
    P = jax.lax.axis_size(axis_name)
    k = jax.lax.axis_index(axis_name)
    if initial_carry is None:
        initial_carry = cell.initial_carry(params, batch_shape)
    else:
        checks.check_carry(fn, cell, params, initial_carry, batch_shape, "initial_carry")
    h0 = initial_carry
    if resets is not None:
        resets = checks.check_resets(fn, resets, T, batch_shape, time_major)
        if not time_major:
            resets = jnp.moveaxis(resets, -1, 0)
        if reverse:  # as in `unroll`: reset where the next step starts a segment, across devices too
            pairs = [(j, j - 1) for j in range(1, P)]
            first_of_next = jax.lax.ppermute(resets[:1], axis_name, pairs) if P > 1 else jnp.zeros_like(resets[:1])
            resets = jnp.concatenate([resets[1:], first_of_next], axis=0)
    mask = None
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if tuple(lengths.shape) != tuple(batch_shape) or not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise ValueError(
                f"{fn}: `lengths` must be integers of the batch shape {batch_shape}, "
                f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
            )
        mask = sequence_mask(lengths - k * T, T)  # steps of the whole sequence
    if cell.matrix is not None:
        if T == 0:
            raise ValueError(f"{fn}: time_axis_name needs at least one step per device, got a slice of 0 steps")
        chunk = checks.chunk_size(fn, chunk_size, "chunkwise", cell.matrix.chunk_size)
        if method == "parallel":
            chunk = T  # the quadratic form: one chunk per device
        h, ys = chunkwise_unroll(cell, params, xs, h0, mask, resets, reverse, chunk, axis_name=axis_name)
    else:
        h, ys = _sharded_linear(cell, params, xs, h0, mask, resets, reverse, axis_name)
    if mask is not None:
        ys = _where_valid(mask, ys, jnp.zeros_like(ys))
    if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
    return h, ys


def _sharded_linear(cell, params, xs, h0, mask, resets, reverse, axis_name):
    """The linear cell's part of `sharded_unroll`: local scans, gathered summaries, local correction."""
    a, b = _step_maps(cell, params, xs, h0, mask, resets)
    A, B = jax.lax.associative_scan(_compose, (a, b), reverse=reverse, axis=0)
    end = 0 if reverse else -1  # the slice's summary: its steps' maps composed, h -> A h + B
    h_in, h = across_devices((A[end], B[end]), h0, lambda f, h: f[0] * h + f[1], axis_name, reverse)
    hs = A * h_in + B
    return h, cell.linear.readout(params, hs, xs)
