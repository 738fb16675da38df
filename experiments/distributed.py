"""Data parallelism on JAX's own engine: a device mesh, `NamedSharding`, and `jax.distributed`.

The batch is sharded over the mesh's `data` axis; params, optimiser state and
the PRNG key are replicated; `jax.jit` partitions the update step and XLA
inserts the gradient all-reduce. Nothing here communicates by itself.

One host, all its devices:

    python -m experiments train adding --devices -1          # every local device
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments train adding --devices 8   # 8 CPU devices

Several hosts (or processes): the same command on each, with its own id:

    python -m experiments train adding --devices -1 \\
        --coordinator HOST0:12345 --num-processes 2 --process-id 0      # on host 0
    ... --process-id 1                                                    # on host 1

Under SLURM, `jax.distributed.initialize()` reads the job's environment, so
`--coordinator auto` is enough (one task per host: `srun python -m experiments ...`).

Each process builds only the shards of the global batch that live on its own
devices (`jax.make_array_from_callback`), so a host reads its own slice of
the data; batches are a function of (seed, step), so every host agrees on
what the global batch is without talking.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Start `jax.distributed` (before any other JAX call). `coordinator="auto"`: let JAX detect SLURM etc."""
    if coordinator is None:
        return
    # CPU processes need a collectives implementation to all-reduce across processes
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


class DataParallel:
    """Places train state (replicated) and batches (sharded on the batch axis) on a 1-D mesh."""

    def __init__(self, devices: list[jax.Device]):
        self.mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.size = len(devices)

    @classmethod
    def create(cls, devices: int | None) -> DataParallel | None:
        """`devices`: None or 1 for one device (no mesh), -1 for all, or a count."""
        available = jax.devices()
        if devices in (None, 1) and jax.process_count() == 1:
            return None
        n = len(available) if devices in (None, -1) else devices
        if not 1 <= n <= len(available):
            raise ValueError(
                f"--devices {devices}: this run sees {len(available)} devices ({jax.default_backend()}); "
                "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N"
            )
        return cls(available[:n])

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices {self.size}")

    def place_state(self, state: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_callback(np.shape(a), self.replicated, lambda idx: np.asarray(a)[idx]), state
        )

    def place_batch(self, batch: dict[str, np.ndarray], batch_axes: dict[str, int]) -> dict[str, jax.Array]:
        out = {}
        for key, value in batch.items():
            spec = [None] * value.ndim
            spec[batch_axes[key]] = DATA_AXIS
            sharding = NamedSharding(self.mesh, PartitionSpec(*spec))
            out[key] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
        return out

    def place_replicated(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        return {
            k: jax.make_array_from_callback(v.shape, self.replicated, lambda idx, v=v: v[idx]) for k, v in batch.items()
        }


def batch_axes(task, batch: dict[str, np.ndarray]) -> dict[str, int]:
    """The batch axis of each array of a task's batch: time-major arrays have it at 1, per-sequence
    arrays (`lengths`, `target_lengths`, one label per sequence) at 0."""
    axes = {}
    for key in batch:
        if key == "lengths" or (key == "ys" and task.readout == "last") or np.ndim(batch[key]) == 1:
            axes[key] = 0
        else:
            axes[key] = 1
    return axes
