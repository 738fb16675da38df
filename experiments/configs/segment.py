"""Word segmentation of Shakespeare without spaces: a bidirectional LSTM tagger, a label per letter.

Run:
    python -m experiments train segment
    python -m experiments predict runs/segment "thefoodisbad" "tobeornottobethatisthequestion"
The baselines (docs/segment.md has the table): the unidirectional tagger,
    python -m experiments train segment --set bidirectional=false --workdir runs/segment-unidirectional
and the character n-gram boundary model, scored in every run's report.

Split by play (experiments/tasks/segment.py); the report gives boundary precision,
recall and F1 on the test plays for the tagger and the n-gram model.
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "segment"
    cell: str = "lstm"
    bidirectional: bool = True
    hidden_size: int = 128
    num_layers: int = 1
    embed_size: int = 32
    seq_len: int = 128
    batch_size: int = 32
    steps: int = 2000
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 50
    test_plays: int = 4
    val_plays: int = 2
    ngram_left: int = 4  # letters up to and including t
    ngram_right: int = 3  # letters after t
    max_letters: int = 0  # read only this many letters per split (0: all); the smoke size reads a prefix


SMOKE = {
    "hidden_size": 8,
    "embed_size": 8,
    "seq_len": 16,
    "batch_size": 4,
    "steps": 4,
    "max_letters": 4000,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "warmup_steps": 1,
}
