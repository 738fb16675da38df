"""The LSTM's sequence kernel on a GPU: cuDNN, through `jax.experimental.rnn`.

`rnnjax.unroll(lstm, ..., method=rnnjax.Scan(kernel=True))` runs this on a GPU for float32
params (`cell.sequence` chooses; elsewhere it runs the CPU kernel of
rnnjax/kernels/lstm.py). It is the same function as the scan over
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
- **Precision**: `jax.lax.Precision.HIGHEST` by default, i.e. no TF32, so the
  kernel computes the float32 function the scan computes; pass
  `precision=None` to let cuDNN use TF32 tensor cores.
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


def lstm_sequence(
    params: dict[str, jax.Array],
    xs: jax.Array,
    h0: jax.Array,
    c0: jax.Array,
    mask: jax.Array | None = None,
    reverse: bool = False,
    *,
    precision: jax.lax.PrecisionLike = jax.lax.Precision.HIGHEST,
    reference: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The LSTM over `xs [T, N, I]` from `(h0, c0) [N, H]`; returns `(hs [T, N, H], h, c)`.

    `mask [T, N]`: valid steps of right-padded sequences (`t < lengths`), or None.
    Outputs at padded steps are zero; the final carry is each sequence's carry
    at its last valid step.
    """
    from jax.experimental import rnn as jrnn

    T, N, I = xs.shape
    H = h0.shape[-1]
    lengths = jnp.full((N,), T, jnp.int32) if mask is None else jnp.sum(mask, axis=0).astype(jnp.int32)
    run_lengths = jnp.maximum(lengths, 1)  # cuDNN fails on length 0: run one step, discard it below
    if reverse:
        xs = _reverse_within(xs, run_lengths)
    weights = pack(params)
    x = jnp.swapaxes(xs, 0, 1)  # cuDNN's binding is batch-major
    if reference:
        W_ih, W_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(weights, I, H, 1, False)
        ys, h, c = jrnn.lstm_ref(x, h0[None], c0[None], W_ih, W_hh, b_ih, b_hh, run_lengths, I, H, 1, 0.0, False)
    else:
        ys, h, c = jrnn.lstm(x, h0[None], c0[None], weights, run_lengths, I, H, 1, 0.0, False, precision)
    hs = jnp.swapaxes(ys, 0, 1)
    if reverse:
        hs = _reverse_within(hs, run_lengths)
    empty = lengths == 0
    h = jnp.where(empty[:, None], h0, h[0])
    c = jnp.where(empty[:, None], c0, c[0])
    valid = jnp.arange(T)[:, None] < lengths[None, :]
    return jnp.where(valid[..., None], hs, jnp.zeros((), hs.dtype)), h, c
