"""Copy / memory task (Arjovsky et al. 2016): recall a symbol string after a blank delay.

Run:
    python -m experiments train copy --set cell=gru delay=50

Expected result: see README ("Experiments"). The memoryless baseline
(blanks, then uniform guesses) scores n_symbols*log(n_classes)/(delay+2*n_symbols)
nats per step; `summary.json` reports it beside the model's loss, and
`accuracy` is measured on the recall steps only (chance: 1/n_classes).
"""

from __future__ import annotations

import dataclasses

from experiments.config import TrainConfig


@dataclasses.dataclass(frozen=True)
class Config(TrainConfig):
    task: str = "copy"
    cell: str = "lstm"
    n_symbols: int = 5
    n_classes: int = 8
    delay: int = 20
    embed_size: int = 16
    hidden_size: int = 64
    batch_size: int = 64
    steps: int = 3000
    learning_rate: float = 3e-3


SMOKE = {"delay": 6, "n_symbols": 3, "hidden_size": 8, "batch_size": 8, "steps": 6, "eval_every": 3,
         "checkpoint_every": 2, "log_every": 1, "eval_batches": 1, "warmup_steps": 2}
