"""English number words into German (num2words): a GRU encoder-decoder with attention, beam search.

Run:
    python -m experiments train translate
    python -m experiments predict runs/translate "nine hundred and ninety-nine" "twenty-seven"
The baselines, one change each (docs/translate.md has the table):
    python -m experiments train translate --set attention=none --workdir runs/translate-noattention
    python -m experiments train translate --set bidirectional=false --workdir runs/translate-unidirectional
    python -m experiments train translate --set attention=none bidirectional=false --workdir runs/translate-plain

English words in, German characters out; numbers 0..max_number, the test numbers never
seen in training (experiments/tasks/translate.py). The report scores greedy and beam
search on the test numbers: exact match, chrF and character BLEU (sacrebleu), and draws
the attention weights of four test numbers (attention.png).
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "translate"
    seq2seq: bool = True
    cell: str = "gru"
    hidden_size: int = 128
    embed_size: int = 64
    attention: str = "additive"  # "none" | "additive" | "dot" | "general"
    bidirectional: bool = True
    max_number: int = 999_999
    pool_size: int = 30_000  # training numbers (the 1-3 digit ones, plus the larger bands sampled)
    test_size: int = 1000
    val_size: int = 500
    beam_size: int = 5
    batch_size: int = 64
    steps: int = 1000
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    eval_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 50


SMOKE = {
    "hidden_size": 8,
    "embed_size": 8,
    "max_number": 99,
    "pool_size": 100,
    "test_size": 30,
    "val_size": 20,
    "beam_size": 2,
    "batch_size": 8,
    "steps": 4,
    "eval_every": 2,
    "checkpoint_every": 2,
    "log_every": 1,
    "warmup_steps": 1,
}
