"""The time axis sharded over devices: each device's slice summarised by a map of the state,
the maps gathered over the mesh axis and applied in device order (`rnnjax.Sharded`).

Shared by the linear cells' sharded unroll (a slice's map is `h -> A h + B`) and the
matrix-memory cells' (the composition of its chunks' maps, rnnjax/_chunkwise.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax._chunkwise import apply_map, compose_maps


def across_devices(summary, state0, apply, axis_name: str, reverse: bool):
    """`(state entering this device's slice, global final state)` for the time axis sharded over `axis_name`.

    `summary` is this device's slice as a map of the state (a pytree of arrays);
    `apply(f, state)` applies one. The summaries are gathered over the axis
    and applied from `state0` in device order (last to first with `reverse`);
    the entering state stops before this device's own. Shared by the linear
    cells' and the matrix-memory cells' sharded unrolls.
    """
    P = jax.lax.axis_size(axis_name)
    k = jax.lax.axis_index(axis_name)
    if P == 1:  # no collective on a one-device axis (XLA's CPU compiler crashed on the complex LRU's there)
        every = jax.tree_util.tree_map(lambda a: a[None], summary)
    else:
        every = jax.lax.all_gather(summary, axis_name)  # [P, ...]
    entering, state = state0, state0
    for j in range(P - 1, -1, -1) if reverse else range(P):  # P is static: a short loop over the devices
        before = (j > k) if reverse else (j < k)
        f_j = jax.tree_util.tree_map(lambda a, j=j: a[j], every)
        applied = apply(f_j, entering)
        entering = jax.tree_util.tree_map(lambda new, old, b=before: jnp.where(b, new, old), applied, entering)
        state = apply(f_j, state)
    return entering, state


def chunk_maps_across_devices(chunk_maps, state0, axis_name: str, reverse: bool):
    """`across_devices` for the chunks' maps `[N, ...]`: composed into this device's slice map first."""
    kind, f = chunk_maps

    def fold(acc, g):
        return compose_maps(kind, acc, g), None

    first = jax.tree_util.tree_map(lambda a: a[0], f)
    rest = jax.tree_util.tree_map(lambda a: a[1:], f)
    slice_map, _ = jax.lax.scan(fold, first, rest)  # this device's slice, its chunks in order
    return across_devices(slice_map, state0, lambda g, state: apply_map(kind, g, state), axis_name, reverse)
