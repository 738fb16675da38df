"""Character-level language model with long contexts: the time axis split over devices.

The `charlm` task (Shakespeare, bits per character against n-gram models) with
windows of 4,096 characters and two layers of the LRU (a linear recurrence:
the parallel scan), the config for sequence parallelism: each window's time axis can be split over
devices with `--seq-devices` (experiments/distributed.py), and the run equals
the one-device run to float32 rounding.

Run (4 forced CPU devices: 2 along the batch, 2 along time):
    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python -m experiments train charlm_long --devices 4 --seq-devices 2

Measured: see docs/scaling.md ("Training with the time axis split").
"""

from __future__ import annotations

import dataclasses

from experiments.configs.charlm import Config as CharLM


@dataclasses.dataclass(frozen=True)
class Config(CharLM):
    cell: str = "lru"
    num_layers: int = 2
    seq_len: int = 4096
    eval_chars: int = 65_536
    embed_size: int = 32
    hidden_size: int = 128
    batch_size: int = 4
    steps: int = 500
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    eval_every: int = 100
    checkpoint_every: int = 100
    log_every: int = 10
    sample_chars: int = 200


SMOKE = {
    "steps": 3,
    "max_chars": 20_000,
    "eval_chars": 2_000,
    "seq_len": 64,
    "embed_size": 8,
    "hidden_size": 8,
    "batch_size": 4,
    "eval_every": 3,
    "checkpoint_every": 3,
    "log_every": 1,
    "warmup_steps": 1,
    "sample_chars": 10,
}
