"""Adding problem (Hochreiter & Schmidhuber 1997): sum the two marked values of a long sequence.

Run:
    python -m experiments train adding --set cell=lstm seq_len=100

Expected result: see README ("Experiments") for the measured table. The
trivial predictor scores MSE 0.167; a model has solved the task when its
held-out MSE is below 0.01 (success threshold used by the vanishing-gradient
study).
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


SMOKE = {"seq_len": 12, "hidden_size": 8, "batch_size": 8, "steps": 6, "eval_every": 3, "checkpoint_every": 2,
         "log_every": 1, "eval_batches": 1, "warmup_steps": 2}
