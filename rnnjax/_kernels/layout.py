"""What the sequence kernels share: the hidden-unit block layout and the scan settings.

Each kernel splits its hidden units into `blocks` independent chains (each block
with its own columns of every gate), so that XLA's runtime runs them on
different cores; see rnnjax/_kernels/lstm.py for why and for the measurements.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

STEPS_PER_ITERATION = 4
"""Scan steps per loop iteration (`lax.scan(unroll=...)`) in the kernels' forward and backward scans."""

BLOCKED_FROM = 256
"""The smallest hidden size that gets two blocks by default. Measured on a 2-core
x86 CPU (benchmarks/kernel_blocks.py; benchmarks/results/kernel-blocks-cpu-2026-11-26.md):
for the LSTM at B = 32 two blocks made inference 1.9x faster at H = 256 and
1.04x at H = 512, but 0.9x at H <= 128 (training 0.83-0.87x there, level from
256 on); one block also compiles 0.4 s faster. For the GRU, measured at H = 256
only: inference 1.3x faster with two blocks, training level."""


def blocks_for(hidden_size: int, blocks: int | None = None) -> int:
    """The number of hidden-unit blocks: `blocks` if given, else 2 from
    `BLOCKED_FROM` hidden units on and 1 below on the CPU (the two chains are
    for two cores; off the CPU one block until a GPU run shows otherwise);
    always 1 when it does not divide H."""
    if blocks is None:
        blocks = 2 if hidden_size >= BLOCKED_FROM and jax.default_backend() == "cpu" else 1
    return blocks if hidden_size % blocks == 0 else 1


def to_blocks(w: jax.Array, hidden_size: int, blocks: int, gates: int) -> list[jax.Array]:
    """`[rows, gates * H]` (gate after gate) -> `blocks` arrays `[rows, gates * H/blocks]`,
    each every gate's columns for one block of hidden units, in the same gate order."""
    per = hidden_size // blocks
    wg = w.reshape(w.shape[0], gates, hidden_size)
    return [wg[:, :, k * per : (k + 1) * per].reshape(w.shape[0], gates * per) for k in range(blocks)]


def previous(first: jax.Array, stacked: jax.Array, reverse: bool) -> jax.Array:
    """Each step's incoming carry: the stacked carries shifted by one step in scan order."""
    if reverse:
        return jnp.concatenate([stacked[1:], first[None]])
    return jnp.concatenate([first[None], stacked[:-1]])
