"""Sentiment of Amazon fine-food reviews (5 stars or not): an LSTM over words vs bag-of-words logistic regression.

Run:
    python -m experiments train sentiment
    python -m experiments predict runs/sentiment "The food is bad" "Absolutely delicious, will buy again"

Your own data: --set data_path=reviews.csv (columns text,label).

Measured: see README ("Experiments II").
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "sentiment"
    cell: str = "lstm"
    data_path: str = ""
    vocab_size: int = 8000
    min_count: int = 2
    max_len: int = 150
    embed_size: int = 64
    hidden_size: int = 64
    batch_size: int = 32
    steps: int = 1500
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 250
    checkpoint_every: int = 250


SMOKE = {"steps": 4, "max_len": 12, "vocab_size": 200, "embed_size": 8, "hidden_size": 8, "batch_size": 8,
         "eval_every": 2, "checkpoint_every": 2, "log_every": 1, "warmup_steps": 1}
