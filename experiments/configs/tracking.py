"""State tracking (parity, counting mod 3, the word problems of S3 and S5) with the residual backbone;
the tracking study's runs. Trained on `seq_len` steps, tested at `test_lengths` (experiments/tasks/tracking.py).

Run one:
    python -m experiments train tracking --set cell=deltanet kind=parity cell_options=negative_eigenvalues=True
The study over mixers and tasks: `python -m experiments tracking` (docs/tracking.md).

`cell` is the token mixer (any registered cell, or `attention`); `cell_options` the cell factory's
keyword arguments, `key=value` pairs separated by commas.
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "tracking"
    backbone: bool = True
    kind: str = "parity"
    cell: str = "deltanet"
    cell_options: str = ""
    attention_layers: str = ""
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    conv: int = 0
    window: int = 32
    seq_len: int = 40
    test_lengths: tuple[int, ...] = (40, 64, 128, 256)
    batch_size: int = 64
    steps: int = 2000
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    eval_every: int = 2000
    eval_batches: int = 2
    checkpoint_every: int = 1000
    log_every: int = 100


SMOKE = {
    "hidden_size": 16,
    "seq_len": 8,
    "test_lengths": (8, 16),
    "batch_size": 8,
    "steps": 4,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "eval_batches": 1,
    "warmup_steps": 1,
}
