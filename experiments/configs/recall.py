"""Recall (MQAR, selective copying, induction) with the residual backbone; the recall study's runs.

Run one:
    python -m experiments train recall --set cell=gated_deltanet kind=mqar seq_len=128 num_pairs=8
The study over cells, widths and difficulties: `python -m experiments recall` (docs/recall.md).

`cell` is the token mixer: any registered cell, or `attention` / `swa` (sliding-window
attention over `window` tokens), the non-recurrent baselines of experiments/backbone.py.
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "recall"
    backbone: bool = True
    kind: str = "mqar"
    cell: str = "gated_deltanet"
    cell_options: str = ""  # the cell factory's keyword arguments, e.g. "negative_eigenvalues=True"
    attention_layers: str = ""  # a hybrid: these layers (e.g. "1") use attention, the others the cell
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    conv: int = 4
    window: int = 32
    seq_len: int = 64
    num_pairs: int = 4
    vocab_size: int = 64
    batch_size: int = 32
    steps: int = 400
    learning_rate: float = 1e-2
    weight_decay: float = 0.1
    eval_every: int = 500
    eval_batches: int = 2
    eval_split: str = "test"  # "validation": held-out batches from a third stream, for choosing a learning rate
    checkpoint_every: int = 500
    log_every: int = 50


SMOKE = {
    "hidden_size": 16,
    "seq_len": 24,
    "num_pairs": 3,
    "vocab_size": 16,
    "batch_size": 8,
    "steps": 4,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "eval_batches": 1,
    "warmup_steps": 1,
}
