"""The copy (memory) task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

Input: `n_symbols` symbols drawn from {1..n_classes}, then `delay` blanks (0)
of which the last is replaced by a delimiter (n_classes + 1), then
`n_symbols` more blanks. Target: blanks until the delimiter, then the symbols
in order. The loss is the per-step cross-entropy over the whole sequence. A
memoryless model predicts blanks and then guesses uniformly, which scores
`n_symbols * log(n_classes) / (delay + 2 * n_symbols)` nats per step (the
baseline reported beside the result).
"""

from __future__ import annotations

import numpy as np

from experiments.tasks import Batch, Task, rng_for


def batch(rng: np.random.Generator, n_symbols: int, n_classes: int, delay: int, batch_size: int) -> Batch:
    T = delay + 2 * n_symbols
    symbols = rng.integers(1, n_classes + 1, size=(n_symbols, batch_size))
    xs = np.zeros((T, batch_size), np.int32)
    xs[:n_symbols] = symbols
    xs[n_symbols + delay - 1] = n_classes + 1  # the delimiter: "now recall"
    ys = np.zeros((T, batch_size), np.int32)
    ys[-n_symbols:] = symbols
    recall = np.zeros((T, batch_size), np.float32)
    recall[-n_symbols:] = 1.0  # accuracy is reported on the recall steps only
    return {"xs": xs, "ys": ys, "weights": np.ones((T, batch_size), np.float32), "metric_weights": recall}


def memoryless_xent(n_symbols: int, n_classes: int, delay: int) -> float:
    return n_symbols * np.log(n_classes) / (delay + 2 * n_symbols)


def make(config) -> Task:
    args = (config.n_symbols, config.n_classes, config.delay)
    return Task(
        name="copy",
        input_size=0,
        vocab_size=config.n_classes + 2,
        output_size=config.n_classes + 1,
        loss="xent",
        readout="all",
        train_batch=lambda step: batch(rng_for(config.seed, step), *args, config.batch_size),
        eval_batches=[batch(rng_for(config.seed, i, stream=1), *args, 256) for i in range(config.eval_batches)],
        baselines={"loss": float(memoryless_xent(*args))},
    )
