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

Sequences longer than one device holds: `--seq-devices S` (with `--devices N`)
makes the mesh 2-D, `N / S` devices along `data` times `S` along `seq`. Each
time-major array is split along time over `seq` and along the batch over
`data`; the loss runs inside `jax.shard_map`, each device unrolling its slice
of the time axis (`rnnjax.unroll(..., method=rnnjax.Sharded("seq"))`), and the loss's
sums are reduced over both axes (`lax.psum`). For models whose cells have a
parallel or chunkwise form and a per-step loss (`readout="all"`):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python -m experiments train charlm_long --devices 4 --seq-devices 2

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
SEQ_AXIS = "seq"


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
    """Places train state (replicated) and batches (sharded on the batch axis, and on the time axis
    over `seq` when `seq_size > 1`) on a mesh `data` (x `seq`)."""

    def __init__(self, devices: list[jax.Device], seq_size: int = 1):
        if seq_size == 1:
            self.mesh = Mesh(np.asarray(devices), (DATA_AXIS,))
        else:
            self.mesh = Mesh(np.asarray(devices).reshape(-1, seq_size), (DATA_AXIS, SEQ_AXIS))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.size = len(devices) // seq_size  # along the batch
        self.seq_size = seq_size

    @classmethod
    def create(cls, devices: int | None, seq_devices: int | None = None) -> DataParallel | None:
        """`devices`: None or 1 for one device (no mesh), -1 for all, or a count; `seq_devices`: how
        many of them split the time axis (None or 1: none; it must divide the device count)."""
        available = jax.devices()
        seq = 1 if seq_devices is None else seq_devices
        if devices in (None, 1) and jax.process_count() == 1 and seq == 1:
            return None
        n = len(available) if devices in (None, -1) else devices
        if not 1 <= n <= len(available):
            raise ValueError(
                f"--devices {devices}: this run sees {len(available)} devices ({jax.default_backend()}); "
                "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N makes N"
            )
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1 or n % seq:
            raise ValueError(
                f"--seq-devices {seq_devices}: must be a positive divisor of the device count {n} "
                "(--devices N gives the mesh N devices: N / S along the batch, S along time)"
            )
        return cls(available[:n], seq)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices {self.size}")

    def place_state(self, state: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda a: jax.make_array_from_callback(np.shape(a), self.replicated, lambda idx: np.asarray(a)[idx]), state
        )

    def check_seq_len(self, batch: dict[str, np.ndarray], batch_axes: dict[str, int]) -> None:
        for key, value in batch.items():
            if batch_axes[key] == 1 and value.shape[0] % self.seq_size:
                raise ValueError(
                    f"--seq-devices {self.seq_size}: the time axis of the batch's {key!r} has {value.shape[0]} "
                    f"steps, not divisible by {self.seq_size}; choose seq_len or --seq-devices to divide"
                )

    def specs(self, batch_axes: dict[str, int], split_batch: bool = True) -> dict[str, PartitionSpec]:
        """Each batch array's `PartitionSpec`: the batch axis over `data` (unless not `split_batch`), a
        time axis (axis 0 of a time-major array) over `seq` when the time axis is sharded."""
        out = {}
        for key, axis in batch_axes.items():
            spec: list[str | None] = [None] * (axis + 1)
            spec[axis] = DATA_AXIS if split_batch else None
            if axis == 1 and self.seq_size > 1:
                spec[0] = SEQ_AXIS
            out[key] = PartitionSpec(*spec)
        return out

    def place_batch(self, batch: dict[str, np.ndarray], batch_axes: dict[str, int]) -> dict[str, jax.Array]:
        out = {}
        for key, spec in self.specs(batch_axes).items():
            value = batch[key]
            sharding = NamedSharding(self.mesh, spec)
            out[key] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
        return out

    def sharded_loss(self, loss_fn, batch_axes_of):
        """`loss_fn(params, batch, axes)` run per device inside `jax.shard_map` over the 2-D mesh,
        params replicated and the batch split as `specs` says; `loss_fn` reduces its sums over `axes`."""

        def loss(params, batch):
            axes = batch_axes_of(batch)
            key = next(iter(axes))
            # a batch the data axis does not divide (an evaluation set's last batch) is split over time only
            split = np.shape(batch[key])[axes[key]] % self.size == 0
            specs = self.specs(axes, split)
            body = lambda p, b: loss_fn(p, b, (DATA_AXIS, SEQ_AXIS) if split else (SEQ_AXIS,))  # noqa: E731
            # check_vma=False: the loss and metrics are reduced by psum inside, so they are replicated
            mapped = jax.shard_map(
                body, mesh=self.mesh, in_specs=(PartitionSpec(), specs), out_specs=PartitionSpec(), check_vma=False
            )
            return mapped(params, batch)

        return loss

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
