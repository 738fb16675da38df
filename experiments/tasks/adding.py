"""The adding problem (Hochreiter & Schmidhuber 1997).

Each step carries two channels: a value drawn from U(0, 1) and a marker. Two
steps are marked, one in each half of the sequence; the target, read at the
last step, is the sum of the two marked values. Predicting the mean (1.0)
without looking gives MSE = Var(u1 + u2) = 2/12 = 0.167, the bar a model must
clear; solving it needs memory across up to T steps.
"""

from __future__ import annotations

import numpy as np

from experiments.tasks import Batch, Task, rng_for

TRIVIAL_MSE = 2.0 / 12.0


def batch(rng: np.random.Generator, seq_len: int, batch_size: int) -> Batch:
    values = rng.uniform(0.0, 1.0, size=(seq_len, batch_size)).astype(np.float32)
    half = max(seq_len // 2, 1)
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, seq_len, size=batch_size) if seq_len > 1 else first
    markers = np.zeros((seq_len, batch_size), np.float32)
    cols = np.arange(batch_size)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    target = values[first, cols] + np.where(second != first, values[second, cols], 0.0)
    return {"xs": np.stack([values, markers], axis=-1), "ys": target.astype(np.float32)[:, None]}


def make(config) -> Task:
    return Task(
        name="adding",
        input_size=2,
        vocab_size=None,
        output_size=1,
        loss="mse",
        readout="last",
        train_batch=lambda step: batch(rng_for(config.seed, step), config.seq_len, config.batch_size),
        eval_batches=[
            batch(rng_for(config.seed, i, stream=1), config.seq_len, 500) for i in range(config.eval_batches)
        ],
        baselines={"mse": TRIVIAL_MSE},
    )
