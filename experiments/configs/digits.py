"""Sequential digits: scikit-learn's 8x8 digits fed one row per step to a GRU (or one pixel: mode=pixels).

Run:
    python -m experiments train digits
    python -m experiments train digits --set mode=pixels

Measured (defaults, seed 0, 2-core CPU, 11 s): test accuracy 0.986 on 359
digits; logistic regression on all 64 pixels 0.964.
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "digits"
    cell: str = "gru"
    mode: str = "rows"
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 1500
    learning_rate: float = 3e-3
    eval_every: int = 250
    checkpoint_every: int = 250


SMOKE = {
    "steps": 4,
    "hidden_size": 8,
    "batch_size": 8,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "warmup_steps": 1,
}
