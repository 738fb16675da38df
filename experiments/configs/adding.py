"""Adding problem (Hochreiter & Schmidhuber 1997): sum the two marked values of a long sequence.

Run:
    python -m experiments train adding --set cell=lstm seq_len=100

The trivial predictor scores MSE 0.167. Measured by the vanishing-gradient
study (`python -m experiments study`: H=32, 1200 steps at lr 1e-2, seeds 0
and 1, 2-core CPU, 2-17 s per run), median held-out MSE:

    cell, T         10       50       150
    elman_sigmoid   0.0054   0.1702   0.1677
    elman (tanh)    0.0013   0.1656   0.1667
    lstm            0.0002   0.0008   0.0017
    gru             0.0002   0.0002   0.0003
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "adding"
    cell: str = "lstm"
    seq_len: int = 100
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 2000
    learning_rate: float = 3e-3


SMOKE = {
    "seq_len": 12,
    "hidden_size": 8,
    "batch_size": 8,
    "steps": 6,
    "eval_every": 3,
    "checkpoint_every": 2,
    "log_every": 1,
    "eval_batches": 1,
    "warmup_steps": 2,
}
