"""Sentiment of Amazon fine-food reviews (5 stars or not): an LSTM over words vs bag-of-words logistic regression.

Run:
    python -m experiments train sentiment
    python -m experiments predict runs/sentiment "The food is bad" "Absolutely delicious, will buy again"

Your own data: --set data_path=reviews.csv (columns text,label).

Measured (defaults, seed 0, 2-core CPU, 10 s): test accuracy 0.780, F1 0.837
(class 'great'); bag-of-words logistic regression 0.770 / 0.829; majority
class 0.658. Settings tried, by validation accuracy: lstm 400 steps 0.805
(chosen); gru 400 steps 0.760; gru H=32 wd 0.05 0.758; lstm 800 steps lr 1e-3
wd 0.05 0.778; lstm 1500 steps 0.730.
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
    steps: int = 400  # chosen by held-out (validation) accuracy: longer runs overfit 3,600 reviews
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 100
    checkpoint_every: int = 100


SMOKE = {
    "steps": 4,
    "max_len": 12,
    "vocab_size": 200,
    "embed_size": 8,
    "hidden_size": 8,
    "batch_size": 8,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "warmup_steps": 1,
}
