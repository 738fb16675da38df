"""Tasks: data and loss definitions the one trainer knows how to fit.

A task is built from a config (`make(name, config)`) and gives deterministic
batches: the batch for training step `s` depends only on `(config.seed, s)`,
so a resumed run sees exactly the data an uninterrupted run would have.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

Batch = dict[str, np.ndarray]


class Task(NamedTuple):
    """What the trainer needs to fit and evaluate a model on one task.

    Attributes:
      name: task name.
      input_size: features per step (ignored when `vocab_size` is set).
      vocab_size: inputs are int tokens `[T, B]` embedded by the model, or None
        for float inputs `[T, B, input_size]`.
      output_size: size of the model's prediction per step (classes for "xent").
      loss: "mse" (regression) or "xent" (classification with int labels).
      readout: "last" (one prediction per sequence, at its last valid step) or
        "all" (one per step, weighted by `batch["weights"]`).
      train_batch: `step -> batch` with keys `xs`, `ys`, optionally `lengths`
        and `weights`; deterministic in `step`.
      eval_batches: held-out batches, fixed for the run.
      baselines: reference scores to report beside the model's (e.g. the
        trivial predictor's MSE), by metric name.
      extra: task-specific objects (a vocabulary, an encoder for `predict`).
      report: `(model, params, workdir) -> dict`, run once after training: the
        task's own held-out evaluation against its baselines (and its plots).
    """

    name: str
    input_size: int
    vocab_size: int | None
    output_size: int
    loss: str
    readout: str
    train_batch: Callable[[int], Batch]
    eval_batches: list[Batch]
    baselines: dict[str, float]
    extra: dict[str, Any] = {}
    report: Callable[..., dict[str, Any]] | None = None


class InputError(ValueError):
    """Bad input to `predict` (empty, or a word the model cannot read); the message says which and why."""


def rng_for(seed: int, step: int, stream: int = 0) -> np.random.Generator:
    """A NumPy generator determined by `(seed, stream, step)`; stream 1 is held-out (test) data, 2 the epochs'
    permutations of `epoch_indices`, 3 a validation split."""
    return np.random.default_rng([seed, stream, step])


def epoch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Example indices of training step `step`: epochs of a seeded permutation, last partial batch dropped."""
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, 2, epoch]).permutation(n)
    return order[k * batch_size : (k + 1) * batch_size] if n >= batch_size else order[np.arange(batch_size) % n]


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of range(n) into (rest, held out), `fraction` held out."""
    order = np.random.default_rng([seed, 3]).permutation(n)
    k = max(int(round(n * fraction)), 1)
    return np.sort(order[k:]), np.sort(order[:k])


def make(name: str, config: Any) -> Task:
    module = importlib.import_module(f"experiments.tasks.{name}")
    return module.make(config)
