"""`unroll`: run a cell over a sequence with `jax.lax.scan`; `jax.grad` of it is BPTT.

`unroll` checks and normalises its data once (layout, lengths, resets,
padding, reverse: `_prepare`), for every method, and hands the normalised
data to the runner of its `method` (`RUNNERS`, one per type in
`rnnjax.methods`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from rnnjax import _checks as checks
from rnnjax import _chunkwise
from rnnjax._forms import Carry, Cell, MatrixState, Params
from rnnjax._sharding import across_devices, chunk_maps_across_devices
from rnnjax.methods import OLD_KEYWORDS, Chunkwise, LinearScan, Method, Scan, Sharded, TrainInfer, auto, check_method


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


def unroll(
    cell: Cell,
    params: Params,
    xs: ArrayLike,
    *,
    initial_carry: Carry | None = None,
    lengths: ArrayLike | None = None,
    resets: ArrayLike | None = None,
    reverse: bool = False,
    time_major: bool = True,
    method: Method | None = None,
    **removed: Any,
) -> tuple[Carry, jax.Array]:
    """Run `cell` over the time axis of `xs`; returns `(final_carry, ys)`.

    The data and its layout are the arguments; how to run it is one value,
    `method` (`rnnjax.methods`: `Scan`, `LinearScan`, `Chunkwise`, `Sharded`;
    None: `rnnjax.auto(cell)` picks, by a documented rule).

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
      resets: `[T, *batch]` booleans marking the first step of a new sequence
        inside a packed stream (RL rollouts, packed language-model batches):
        the carry is set back to `initial_carry` before that step is
        processed. The result equals running each segment alone. With
        `reverse=True` a segment is processed from its last step to its
        first, starting from `initial_carry`. Same layout as the time axis of `xs`.
      reverse: process each sequence from its last valid step back to its
        first (within its own length when `lengths` is given, as PyTorch's
        packed sequences do). Outputs stay aligned with the inputs: `ys[t]`
        is the output after consuming `xs[t]`.
      time_major: False for `[*batch, T, I]` inputs and outputs.
      method: how to run it, a value from `rnnjax.methods` (see there for
        each one's options), or None for `rnnjax.auto(cell, carry_size=...)`.
        The old keywords (`unroll`, `remat`, `truncation`, `kernel`,
        `chunk_size`, `time_axis_name`) and method strings raise a TypeError
        naming the new spelling.

    Returns:
      `(carry, ys)`: the final carry (leaves `[*batch, ...]`) and the outputs
      `[T, *batch, O]` (or `[*batch, T, O]` with `time_major=False`).

    Raises:
      TypeError: a wrong type or dtype, naming the argument, what was expected
        and what came, before anything is traced.
      ValueError: a wrong shape or value, or a method the cell cannot run
        (naming the cell, the method and the form it lacks).
    """
    fn = "rnnjax.unroll"
    if removed:
        name = sorted(removed)[0]
        if name in OLD_KEYWORDS:
            raise TypeError(f"{fn}: `{name}=` is now spelled {OLD_KEYWORDS[name]}")
        raise TypeError(f"{fn}() got an unexpected keyword argument {name!r}")
    method = check_method(method)
    checks.check_cell(fn, cell)
    if not hasattr(xs, "shape"):
        xs = jnp.asarray(xs)
    T, batch_shape = checks.check_inputs(fn, cell, params, xs, time_major)
    if initial_carry is None:
        initial_carry = cell.initial_carry(params, batch_shape)
    else:
        checks.check_carry(fn, cell, params, initial_carry, batch_shape, "initial_carry")
    if method is None:
        carry_size = sum(int(jnp.size(leaf)) for leaf in jax.tree_util.tree_leaves(initial_carry))
        method = auto(cell, carry_size=carry_size)
    method.check(cell)
    data = _prepare(fn, method, xs, initial_carry, lengths, resets, reverse, time_major, T, batch_shape)
    carry, ys = RUNNERS[type(method)](fn, method, cell, params, data)
    if data.mask is not None:
        ys = _where_valid(data.mask, ys, jnp.zeros_like(ys))  # padded steps output zeros, whatever ran
    if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
    return carry, ys


class _Data(NamedTuple):
    """The normalised data every runner gets: time-major, padding zeroed, resets placed for the direction."""

    xs: jax.Array  # [T, *batch, I]
    carry0: Carry
    mask: jax.Array | None  # [T, *batch], True at valid steps
    resets: jax.Array | None  # [T, *batch]
    reverse: bool
    batch_shape: tuple[int, ...]


def _prepare(fn, method, xs, carry0, lengths, resets, reverse, time_major, T, batch_shape) -> _Data:
    """The one preamble: the same checks and normalisation for every method, the sharded one included.

    With `Sharded`, `xs` is this device's slice of the time axis: `lengths`
    count steps of the whole sequence (range-checked against it), and with
    `reverse` a reset moves to the step before a segment's first, which may
    lie on the next device.
    """
    sharded = isinstance(method, Sharded)
    k, P = (jax.lax.axis_index(method.axis_name), jax.lax.axis_size(method.axis_name)) if sharded else (0, 1)
    if sharded and T == 0:
        raise ValueError(f"{fn}: method=Sharded(...) needs at least one step per device, got a slice of 0 steps")
    if lengths is not None:
        checks.check_lengths(fn, lengths, T * P, batch_shape)
    if resets is not None:
        resets = checks.check_resets(fn, resets, T, batch_shape, time_major)
    if not time_major:
        xs = jnp.moveaxis(xs, -2, 0)
        if resets is not None:
            resets = jnp.moveaxis(resets, -1, 0)
    mask = None
    if lengths is not None:
        mask = sequence_mask(jnp.asarray(lengths) - k * T, T)  # steps of the whole sequence
        # zero the padding once, outside any scan: a NaN there would otherwise turn the
        # zero cotangent of a masked step into NaN (0 * NaN) in the parameter gradients
        xs = jnp.where(mask[..., None], xs, jnp.zeros((), xs.dtype))
    if resets is not None and reverse:
        # a reverse scan enters segment [s, e) at its last step e - 1: reset there, i.e. where
        # the *next* step starts a segment (on the next device, for the slice's last step)
        if P > 1:
            following = jax.lax.ppermute(resets[:1], method.axis_name, [(j, j - 1) for j in range(1, P)])
        else:
            following = jnp.zeros_like(resets[:1])
        resets = jnp.concatenate([resets[1:], following], axis=0)
    return _Data(xs, carry0, mask, resets, reverse, batch_shape)


# where `Scan(kernel=None)` runs a cell's sequence kernel: measured faster than the scan on the CPU
# (docs/benchmarks.md). On a GPU the LSTM's kernel is cuDNN (rnnjax/_kernels/cudnn_lstm.py) and
# the GRU's the blocked one; the GPU check (python -m benchmarks.accelerator, "rnnjax-kernel"
# against "rnnjax-scan") times them, and "gpu" joins this list when they win there.
KERNEL_BACKENDS = ("cpu",)


def _run_scan(fn, method: Scan, cell, params, d: _Data):
    T = d.xs.shape[0]
    chunk = method.chunk(T)
    if _use_kernel(fn, cell, method, d.resets) and T > 0:
        return _kernel_unroll(cell, params, d.xs, d.carry0, d.mask, d.reverse, d.batch_shape)
    return _sequential_unroll(
        cell,
        params,
        d.xs,
        d.carry0,
        d.mask,
        d.resets,
        d.reverse,
        method.unroll,
        chunk,
        checkpoint=bool(method.remat),
        truncate=method.truncation is not None,
    )


def _use_kernel(fn, cell, method: Scan, resets) -> bool:
    """Whether `Scan` runs `cell.sequence` (see `Scan.kernel`)."""
    if method.kernel is False or cell.sequence is None:
        return False
    if resets is not None:
        if method.kernel is True:
            raise ValueError(f"{fn}: Scan(kernel=True), but the sequence kernel takes no `resets`")
        return False
    if method.kernel is True:
        return True
    simple = method.unroll in (1, False) and not method.remat and method.truncation is None
    return simple and jax.default_backend() in KERNEL_BACKENDS


def _run_linear(fn, method: LinearScan, cell, params, d: _Data):
    if d.xs.shape[0] == 0:
        return _run_scan(fn, Scan(kernel=False), cell, params, d)
    return _parallel_unroll(
        cell, params, d.xs, d.carry0, d.mask, d.resets, d.reverse, pallas=method.implementation == "pallas"
    )


def _run_chunkwise(fn, method: Chunkwise, cell, params, d: _Data, axis_name=None):
    T = d.xs.shape[0]
    if T == 0:
        return _run_scan(fn, Scan(kernel=False), cell, params, d)
    if method.implementation == "pallas" and d.resets is not None:
        raise ValueError(f"{fn}: method={method!r} takes no `resets` (use implementation='xla')")
    return chunkwise_unroll(
        cell,
        params,
        d.xs,
        d.carry0,
        d.mask,
        d.resets,
        d.reverse,
        method.size(cell, T),
        pallas=method.implementation == "pallas",
        axis_name=axis_name,
    )


def _run_sharded(fn, method: Sharded, cell, params, d: _Data):
    """The time axis split over devices (see `Sharded`); a linear cell's slices are summarised by
    `_sharded_linear`, a matrix cell's by its chunks' maps of the state (`chunkwise_unroll`)."""
    inner = method.inner_for(cell)
    if isinstance(inner, Chunkwise):
        return _run_chunkwise(fn, inner, cell, params, d, axis_name=method.axis_name)
    return _sharded_linear(cell, params, d.xs, d.carry0, d.mask, d.resets, d.reverse, method.axis_name)


def _run_train_infer(fn, method: TrainInfer, cell, params, d: _Data):
    """`method.infer` when nothing differentiates the call, `method.train` when something does: a custom VJP
    whose primal is the inference method and whose forward pass is the training method's, its VJP kept."""

    def run(m, params, xs, carry0, mask, resets):
        return RUNNERS[type(m)](fn, m, cell, params, d._replace(xs=xs, carry0=carry0, mask=mask, resets=resets))

    @jax.custom_vjp
    def train_infer(params, xs, carry0, mask, resets):
        return run(method.infer, params, xs, carry0, mask, resets)

    def forward(params, xs, carry0, mask, resets):
        train = lambda p, x, c: run(method.train, p, x, c, mask, resets)  # noqa: E731
        out, vjp = jax.vjp(train, params, xs, carry0)
        return out, vjp  # the VJP is a pytree (a `Partial`): a residual like any other

    def backward(vjp, cotangent):
        return (*vjp(cotangent), None, None)  # masks and resets get no gradient

    train_infer.defvjp(forward, backward)
    return train_infer(params, d.xs, d.carry0, d.mask, d.resets)


RUNNERS = {
    Scan: _run_scan,
    LinearScan: _run_linear,
    Chunkwise: _run_chunkwise,
    Sharded: _run_sharded,
    TrainInfer: _run_train_infer,
}


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
    # a kernel may put anything at padded steps: `unroll` zeroes them, as for every method
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
        # padded steps keep the old carry (their outputs are zeroed once, after the scan, by `unroll`);
        # the reverse scan meets a sequence's padding first, so it starts on its last valid step
        # with the initial carry
        return _where_valid(valid, new_c, c), y

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
    (or, `pallas=True`, the sequential Pallas kernel of rnnjax/_kernels/pallas_scan.py)."""
    a, b = _step_maps(cell, params, xs, h0, mask, resets)
    # fold the initial carry into the first step processed: b_1 <- a_1 h_0 + b_1
    first = a.shape[0] - 1 if reverse else 0
    b = b.at[first].add(a[first] * h0)

    if pallas:
        from rnnjax._kernels.pallas_scan import linear_scan

        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(
                f"rnnjax.unroll: LinearScan(implementation='pallas') takes real floating states; cell {cell.name!r} "
                f"has a {a.dtype} state (use LinearScan())"
            )
        hs = linear_scan(a, b, jnp.zeros_like(a[0]), reverse=reverse)
    else:
        _, hs = jax.lax.associative_scan(_compose, (a, b), reverse=reverse, axis=0)
    return hs[0] if reverse else hs[-1], cell.linear.readout(params, hs, xs)  # `unroll` zeroes padded outputs


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


def _sharded_linear(cell, params, xs, h0, mask, resets, reverse, axis_name):
    """The linear cell's part of `sharded_unroll`: local scans, gathered summaries, local correction."""
    a, b = _step_maps(cell, params, xs, h0, mask, resets)
    A, B = jax.lax.associative_scan(_compose, (a, b), reverse=reverse, axis=0)
    end = 0 if reverse else -1  # the slice's summary: its steps' maps composed, h -> A h + B
    h_in, h = across_devices((A[end], B[end]), h0, lambda f, h: f[0] * h + f[1], axis_name, reverse)
    hs = A * h_in + B
    return h, cell.linear.readout(params, hs, xs)


# --- the chunkwise form of the matrix-memory cells (its mathematics: rnnjax/_chunkwise.py) -------


def chunkwise_unroll(
    cell: Cell,
    params: Params,
    xs,
    carry0: MatrixState,
    mask,
    resets,
    reverse: bool,
    chunk: int,
    axis_name: str | None = None,
    pallas: bool = False,
):
    """`(carry, ys)` of the matrix recurrence over `xs [T, *batch, I]`, chunk by chunk (see the module docstring).

    `mask [T, *batch]` marks valid steps (None: all), `resets [T, *batch]`
    (already shifted for `reverse` by `unroll`). Same contract as `unroll`'s
    sequential path: equal outputs and carry; outputs at padded steps are
    zeroed by `unroll`.

    The algorithm follows from the form's fields (`rnnjax.cells.MatrixInputs`):
    decay and write, stabilised or not (`_chunkwise.decay_write`); the delta
    rule with a scalar decay per head (`_chunkwise.delta`, the UT transform);
    the delta rule with a decay per key dimension, or a low-rank term
    (`_chunkwise.general`). A cell with substeps (`MatrixRecurrence.substeps`
    n > 1) runs them as n steps of their own per token, the decay on the first
    and the query on the last, in chunks of `chunk` tokens.

    `axis_name`: the time axis is sharded over this mesh axis (inside
    `jax.shard_map`; `unroll(..., method=Sharded(axis_name))`), `xs` being this
    device's slice. Each device composes its chunks' maps of the state into
    one map for its slice; the maps are gathered over the axis, each device
    applies those of the slices before its own to `carry0` to get the state
    entering its slice, and runs its chunks from there. Returns the device's
    outputs and the global final carry.

    `pallas`: run the chunks with the Pallas kernels of
    rnnjax/_kernels/pallas_chunkwise.py (calls without resets; decay and write,
    stabilised, and the delta rule with a scalar decay).
    """
    rec = cell.matrix
    T, batch_shape = xs.shape[0], xs.shape[1:-1]
    B = math.prod(batch_shape)
    inp = rec.inputs(params, xs)
    dt = carry0.S.dtype  # the state's precision (float32 under bfloat16 params)
    n = rec.substeps

    def flat(a):
        return None if a is None else a.astype(dt).reshape(T, B, *a.shape[1 + len(batch_shape) :])

    q, k, v, log_decay, beta, log_w, lr_a, lr_b = map(flat, inp[:8])
    general = lr_a is not None or (beta is not None and log_decay.shape[-1] > 1)
    S_star = carry0.S.reshape(B, *carry0.S.shape[len(batch_shape) :])
    m_star = None if carry0.m is None else carry0.m.reshape(B, -1)
    r = None if resets is None else resets.reshape(T, B)
    if mask is not None:  # padded steps are the identity: no decay, no erase, no write
        valid = mask.reshape(T, B)
        zero = lambda a: None if a is None else jnp.where(valid.reshape(T, B, *(1,) * (a.ndim - 2)), a, 0.0)  # noqa: E731
        q, k, v, log_decay, beta, lr_a, lr_b = map(zero, (q, k, v, log_decay, beta, lr_a, lr_b))
        log_w = None if log_w is None else jnp.where(valid[..., None], log_w, _chunkwise.NEG)
        # a reset at a padded step still resets (as on the sequential path); identity dynamics keep S*

    steps = [q, k, v, log_decay, beta, log_w, lr_a, lr_b, r]
    if reverse:
        steps = [None if a is None else a[::-1] for a in steps]
    if n > 1:  # each token's substeps as steps of their own, in order (also when the tokens run reversed)
        steps = _substeps(n, *steps)
    Tn = T * n
    pad = (-Tn) % (chunk * n)
    if pad:  # whole chunks, filled with identity steps (log_write NEG: no write)
        fills = [0.0, 0.0, 0.0, 0.0, 0.0, _chunkwise.NEG, 0.0, 0.0, False]
        steps = [
            None if a is None else jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), f, a.dtype)])
            for a, f in zip(steps, fills, strict=True)
        ]
    C = chunk * n
    N = (Tn + pad) // C
    q, k, v, log_decay, beta, log_w, lr_a, lr_b, r = [
        None if a is None else a.reshape(N, C, *a.shape[1:]) for a in steps
    ]

    if pallas:
        if r is not None or axis_name is not None:
            raise ValueError(
                "rnnjax.unroll: Chunkwise(implementation='pallas') runs without resets or time sharding "
                "(use implementation='xla')"
            )
        if general:
            raise ValueError(
                f"rnnjax.unroll: Chunkwise(implementation='pallas') has no kernel for cell {cell.name!r}'s "
                "form (a decay per key dimension with the delta rule, or a low-rank term); use implementation='xla'"
            )
        from rnnjax._kernels.pallas_chunkwise import chunkwise as pallas_chunkwise

        o, m_t, S_final, m_final = pallas_chunkwise(q, k, v, log_decay, S_star, beta=beta, log_write=log_w, m0=m_star)
        return _chunkwise_result(rec, params, xs, o, m_t, S_final, m_final, T, N, C, batch_shape, reverse)
    if general:
        if lr_a is None:  # the delta rule as the general form: decay first, then (I - beta k k^T), write beta k v^T
            lr_a, lr_b, k = -beta[..., None] * k, jnp.exp(log_decay) * k, beta[..., None] * k
        finish, maps = _chunkwise.general(q, k, v, log_decay, lr_a, lr_b, r, S_star)
    elif beta is not None:
        finish, maps = _chunkwise.delta(q, k, v, log_decay, beta, r, S_star)
    else:
        finish, maps = _chunkwise.decay_write(q, k, v, log_decay, log_w, r, S_star, m_star)
    if axis_name is None:
        (o, m_t), (S_final, m_final) = finish(S_star, m_star)
    else:
        (S_in, m_in), (S_final, m_final) = chunk_maps_across_devices(maps(), (S_star, m_star), axis_name, reverse)
        (o, m_t), _ = finish(S_in, m_in)

    return _chunkwise_result(rec, params, xs, o, m_t, S_final, m_final, T, N, C, batch_shape, reverse)


def _substeps(n, q, k, v, log_decay, beta, log_w, lr_a, lr_b, r):
    """A token's n substeps (`k, v [T, B, H, n, d]`, `beta [T, B, H, n]`) as n steps each, `[T * n, ...]`:
    the token's decay and reset at its first, its query at its last, nothing else where a field is per token."""
    T = k.shape[0]

    def spread(a, at):  # a per-token field at substep `at`, zeros (False) at the others
        if a is None:
            return None
        out = jnp.zeros((T, n, *a.shape[1:]), a.dtype).at[:, at].set(a)
        return out.reshape(T * n, *a.shape[1:])

    def interleave(a, axis):  # the substep axis of a per-substep field moved next to time, then merged
        return jnp.moveaxis(a, axis, 1).reshape(T * n, *a.shape[1:axis], *a.shape[axis + 1 :])

    return [
        spread(q, n - 1),
        interleave(k, 3),
        interleave(v, 3),
        spread(log_decay, 0),
        interleave(beta, 3),
        log_w,
        lr_a,
        lr_b,
        spread(r, 0),
    ]


def _chunkwise_result(rec, params, xs, o, m_t, S_final, m_final, T, N, chunk, batch_shape, reverse):
    """`(carry, ys)` from the chunked outputs `o [N, C, B, H, dv]` and the final state."""
    n = rec.substeps

    def unchunk(a):
        a = a.reshape(N * chunk, *a.shape[2:])[: T * n]
        if n > 1:  # a token's output is its last substep's
            a = a.reshape(T, n, *a.shape[1:])[:, -1]
        a = a[::-1] if reverse else a
        return a.reshape(T, *batch_shape, *a.shape[2:])

    ys = rec.readout(params, unchunk(o), None if m_t is None else unchunk(m_t), xs)
    carry = MatrixState(
        S_final.reshape(*batch_shape, *S_final.shape[1:]),
        None if m_final is None else m_final.reshape(*batch_shape, *m_final.shape[1:]),
    )
    return carry, ys
