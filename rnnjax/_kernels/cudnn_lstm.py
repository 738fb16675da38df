"""The LSTM's sequence kernel on a GPU: cuDNN, through `jax.experimental.rnn`.

`rnnjax.unroll(lstm, ..., method=rnnjax.Scan(kernel=True))` runs this on a GPU for float32
params (`cell.sequence` chooses; elsewhere it runs the CPU kernel of
rnnjax/_kernels/lstm.py). It is the same function as the scan over
`lstm.step`, in cuDNN's layout:

- **Weights**: cuDNN packs, per layer, `W_ih [4H, I]`, `W_hh [4H, H]`,
  `b_ih [4H]`, `b_hh [4H]` into one flat vector, gates in the order i, f, g,
  o, which is rnnjax's order: `W_ih = w_x^T`, `W_hh = w_h^T`, `b_ih = b`,
  `b_hh = 0` (`pack`). The gradient flows back through the packing.
- **Padding**: cuDNN takes per-sequence lengths of right-padded batches;
  `unroll`'s mask is `t < lengths`, so the lengths are its column sums. A
  sequence of length 0 fails in cuDNN: it runs one step, whose carry and
  output are then replaced by the initial carry and zero (so its gradient is
  zero, as on the scan path). Each call copies the lengths to the host (a
  limit of JAX's cuDNN binding).
- **Reverse**: each sequence is reversed within its own length (padding stays
  at the end), run forward, and its outputs reversed back.
- **Precision**: None by default, JAX's own default for this call (cuDNN may
  use TF32). On an H200 (2026-12-04, benchmarks/results/h200-2026-12-04.md)
  that call's loss equalled the float64 loss to 1e-6 at every T, while
  `jax.lax.Precision.HIGHEST` (cuDNN without TF32, this kernel's earlier
  default) was off by up to 4e-3 and failed the GPU test against the scan.
- **Long sequences**: cuDNN refused 65,536 steps on the H200
  (`CUDNN_STATUS_NOT_SUPPORTED` from its data descriptor) and ran 16,384, so
  longer sequences run as consecutive calls of at most `MAX_STEPS` steps,
  the carry passed from one to the next.
- **Not covered** (the scan runs instead): bfloat16 (not implemented in JAX's
  binding), `resets`, the peephole and layer-norm variants.

`reference=True` runs `jax.experimental.rnn.lstm_ref`, JAX's pure-JAX model of
the cuDNN call, on the same packed weights: that is how the CPU test suite
holds the packing, the lengths and the reversal to the scan, and the GPU
check (`python -m benchmarks.accelerator`) runs the same tests against cuDNN itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def applies(xs: jax.Array) -> bool:
    """Whether `lstm_sequence` can run cuDNN for these inputs on this backend."""
    return jax.default_backend() == "gpu" and xs.dtype == jnp.float32


def pack(params: dict[str, jax.Array]) -> jax.Array:
    """rnnjax's LSTM params as cuDNN's flat weight vector (one layer, one direction)."""
    b = params["b"]
    return jnp.concatenate([params["w_x"].T.ravel(), params["w_h"].T.ravel(), b, jnp.zeros_like(b)])


def _reverse_within(xs: jax.Array, lengths: jax.Array) -> jax.Array:
    """`xs [T, N, ...]` with each sequence's first `lengths[n]` steps reversed (an involution)."""
    T = xs.shape[0]
    t = jnp.arange(T)[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # [T, N]
    return jnp.take_along_axis(xs, idx.reshape(idx.shape + (1,) * (xs.ndim - 2)), axis=0)


# steps per cuDNN call: the H200 ran 16,384 and refused 65,536 (CUDNN_STATUS_NOT_SUPPORTED)
MAX_STEPS = 16_384


def _call(x, h, c, lengths, weights, precision, reference):
    """One cuDNN call over `x [N, L, I]` (batch-major) from `h, c [N, H]`; a sequence with no step
    here keeps its carry (cuDNN fails on length 0: it runs one step, which is discarded)."""
    from jax.experimental import rnn as jrnn

    I, H = x.shape[-1], h.shape[-1]
    run_lengths = jnp.maximum(lengths, 1)
    if reference:
        W_ih, W_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, I, H, 1, False)
        ys, h1, c1 = jrnn.lstm_ref(x, h[None], c[None], W_ih, W_hh, b_ih, b_hh, run_lengths, I, H, 1, 0.0, False)
    else:
        ys, h1, c1 = jrnn.lstm(x, h[None], c[None], weights, run_lengths, I, H, 1, 0.0, False, precision)
    empty = (lengths == 0)[:, None]
    return ys, jnp.where(empty, h, h1[0]), jnp.where(empty, c, c1[0])


def lstm_sequence(
    params: dict[str, jax.Array],
    xs: jax.Array,
    h0: jax.Array,
    c0: jax.Array,
    mask: jax.Array | None = None,
    reverse: bool = False,
    *,
    precision: jax.lax.PrecisionLike = None,
    reference: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The LSTM over `xs [T, N, I]` from `(h0, c0) [N, H]`; returns `(hs [T, N, H], h, c)`.

    `mask [T, N]`: valid steps of right-padded sequences (`t < lengths`), or None.
    Outputs at padded steps are zero; the final carry is each sequence's carry
    at its last valid step.
    """
    T, N, _ = xs.shape
    lengths = jnp.full((N,), T, jnp.int32) if mask is None else jnp.sum(mask, axis=0).astype(jnp.int32)
    if reverse:
        xs = _reverse_within(xs, lengths)
    weights = pack(params)
    x = jnp.swapaxes(xs, 0, 1)  # cuDNN's binding is batch-major
    h, c, pieces = h0, c0, []
    for start in range(0, T, MAX_STEPS):  # consecutive calls, the carry passed on
        piece = x[:, start : start + MAX_STEPS]
        piece_lengths = jnp.clip(lengths - start, 0, piece.shape[1])
        ys, h, c = _call(piece, h, c, piece_lengths, weights, precision, reference)
        pieces.append(ys)
    hs = jnp.swapaxes(jnp.concatenate(pieces, axis=1), 0, 1)
    if reverse:
        hs = _reverse_within(hs, lengths)
    valid = jnp.arange(T)[:, None] < lengths[None, :]
    return jnp.where(valid[..., None], hs, jnp.zeros((), hs.dtype)), h, c
