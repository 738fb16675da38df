"""Sequential digits: classify 8x8 handwritten digits fed one row (or one pixel) per step.

Data: scikit-learn's `load_digits` (1,797 images). A seeded 80/20 split; 10%
of the training part held out for evaluation during training. The baseline is
logistic regression on all 64 pixels at once, which sees the whole image and
needs no memory: the RNN must carry what it saw in earlier rows.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.tasks import Task, epoch_indices, split_indices
from experiments.tasks import data as data_lib


def make(config) -> Task:
    images, labels = data_lib.digits()
    if config.mode == "rows":
        seqs = np.transpose(images, (1, 0, 2))  # [8 steps, N, 8 pixels]
    elif config.mode == "pixels":
        seqs = images.reshape(len(images), 64).T[..., None]  # [64 steps, N, 1]
    else:
        raise data_lib.DataError(f"digits: mode must be 'rows' or 'pixels', got {config.mode!r}")
    train, test = split_indices(len(labels), 0.2, config.seed)
    rest, held = split_indices(len(train), 0.1, config.seed + 1)
    fit, val = train[rest], train[held]
    batch = lambda idx: {"xs": seqs[:, idx], "ys": labels[idx]}  # noqa: E731

    def report(model, params, workdir) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression

        pred = np.asarray(model.apply(params, jnp.asarray(seqs[:, test]))).argmax(-1)
        flat = images.reshape(len(images), -1)
        clf = LogisticRegression(max_iter=5000).fit(flat[fit], labels[fit])
        return {
            "test_examples": len(test),
            "rnn_accuracy": float(np.mean(pred == labels[test])),
            "logreg_on_pixels_accuracy": float(clf.score(flat[test], labels[test])),
        }

    return Task(
        name="digits",
        input_size=seqs.shape[-1],
        vocab_size=None,
        output_size=10,
        loss="xent",
        readout="last",
        train_batch=lambda step: batch(fit[epoch_indices(len(fit), config.batch_size, config.seed, step)]),
        eval_batches=[batch(val)],
        baselines={"accuracy": 0.1},
        report=report,
    )
