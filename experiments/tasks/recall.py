"""Recall tasks: what a fixed-size state can remember (Zoology's MQAR; Mamba's selective
copying and induction heads). Generated from the seed; nothing downloads.

Token 0 is the filler. Every task predicts at the positions that test recall only
(`weights` and `metric_weights`), and reports its chance level beside the accuracy.

- `mqar` (Arora et al. 2023, multi-query associative recall): `num_pairs` key-value
  pairs `k1 v1 k2 v2 ...` (distinct keys from the lower half of the vocabulary, values
  from the upper half), then filler in which every key is asked once, in random
  order, at random positions; at a query the target is the key's value. Zoology draws
  the query positions from a power law that favours short gaps; here they are uniform
  over the query region. Chance: 1/num_pairs for a model that picks one of the
  context's values.
- `selective_copy` (Gu & Dao 2023): `num_pairs` data tokens scattered at random
  positions among filler in the first `seq_len - num_pairs` steps, then `num_pairs`
  go tokens; at each go token the target is the next data token in order.
  Chance: 1/(vocab_size - 2).
- `induction` (Olsson et al. 2022; Gu & Dao 2023): random tokens with a trigger token
  once at a random position followed by the answer token; the last token is the
  trigger again and the target there is the answer. Chance: 1/(vocab_size - 2).
"""

from __future__ import annotations

import numpy as np

from experiments.tasks import Batch, Task, rng_for

KINDS = ("mqar", "selective_copy", "induction")


def mqar(rng: np.random.Generator, seq_len: int, num_pairs: int, vocab_size: int, batch_size: int) -> Batch:
    half = vocab_size // 2
    keys = np.stack([rng.choice(np.arange(1, half), num_pairs, replace=False) for _ in range(batch_size)], 1)
    values = rng.integers(half, vocab_size, size=(num_pairs, batch_size))
    xs = np.zeros((seq_len, batch_size), np.int32)
    ys = np.zeros((seq_len, batch_size), np.int32)
    asked = np.zeros((seq_len, batch_size), np.float32)
    xs[0 : 2 * num_pairs : 2], xs[1 : 2 * num_pairs : 2] = keys, values
    for b in range(batch_size):
        where = 2 * num_pairs + np.sort(rng.choice(seq_len - 2 * num_pairs, num_pairs, replace=False))
        order = rng.permutation(num_pairs)
        xs[where, b], ys[where, b], asked[where, b] = keys[order, b], values[order, b], 1.0
    return {"xs": xs, "ys": ys, "weights": asked, "metric_weights": asked}


def selective_copy(rng: np.random.Generator, seq_len: int, num_pairs: int, vocab_size: int, batch_size: int) -> Batch:
    go = vocab_size - 1  # data tokens are 1 .. vocab_size - 2
    data = rng.integers(1, go, size=(num_pairs, batch_size))
    xs = np.zeros((seq_len, batch_size), np.int32)
    ys = np.zeros((seq_len, batch_size), np.int32)
    for b in range(batch_size):
        where = np.sort(rng.choice(seq_len - num_pairs, num_pairs, replace=False))
        xs[where, b] = data[:, b]
    xs[-num_pairs:], ys[-num_pairs:] = go, data
    recall = np.zeros((seq_len, batch_size), np.float32)
    recall[-num_pairs:] = 1.0
    return {"xs": xs, "ys": ys, "weights": recall, "metric_weights": recall}


def induction(rng: np.random.Generator, seq_len: int, num_pairs: int, vocab_size: int, batch_size: int) -> Batch:
    del num_pairs  # one trigger per sequence
    trigger = vocab_size - 1
    xs = rng.integers(1, trigger, size=(seq_len, batch_size)).astype(np.int32)
    where = rng.integers(0, seq_len - 2, size=batch_size)
    answer = xs[where + 1, np.arange(batch_size)]
    xs[where, np.arange(batch_size)] = trigger
    xs[-1] = trigger
    ys = np.zeros((seq_len, batch_size), np.int32)
    ys[-1] = answer
    last = np.zeros((seq_len, batch_size), np.float32)
    last[-1] = 1.0
    return {"xs": xs, "ys": ys, "weights": last, "metric_weights": last}


GENERATORS = {"mqar": mqar, "selective_copy": selective_copy, "induction": induction}


def chance(kind: str, num_pairs: int, vocab_size: int) -> float:
    return 1.0 / num_pairs if kind == "mqar" else 1.0 / (vocab_size - 2)


def check(kind: str, seq_len: int, num_pairs: int, vocab_size: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"recall task: `kind` must be one of {KINDS}, got {kind!r}")
    if kind == "mqar" and (num_pairs > vocab_size // 2 - 1 or 3 * num_pairs > seq_len):
        raise ValueError(
            f"mqar: num_pairs={num_pairs} needs seq_len >= 3 * num_pairs and vocab_size >= 2 * (num_pairs + 1); "
            f"got seq_len={seq_len}, vocab_size={vocab_size}"
        )
    if kind == "selective_copy" and 2 * num_pairs > seq_len:
        raise ValueError(f"selective_copy: num_pairs={num_pairs} needs seq_len >= 2 * num_pairs, got {seq_len}")
    if kind == "induction" and seq_len < 4:
        raise ValueError(f"induction: seq_len must be >= 4, got {seq_len}")
    if vocab_size < 4:
        raise ValueError(f"recall task: vocab_size must be >= 4, got {vocab_size}")


# the generator streams of `rng_for`: training batches, the test batches, the validation batches
EVAL_STREAMS = {"test": 1, "validation": 3}


def make(config) -> Task:
    check(config.kind, config.seq_len, config.num_pairs, config.vocab_size)
    split = getattr(config, "eval_split", "test")
    if split not in EVAL_STREAMS:
        raise ValueError(f"recall task: eval_split must be one of {sorted(EVAL_STREAMS)}, got {split!r}")
    gen = GENERATORS[config.kind]
    args = (config.seq_len, config.num_pairs, config.vocab_size)
    return Task(
        name="recall",
        input_size=0,
        vocab_size=config.vocab_size,
        output_size=config.vocab_size,
        loss="xent",
        readout="all",
        train_batch=lambda step: gen(rng_for(config.seed, step), *args, config.batch_size),
        eval_batches=[
            gen(rng_for(config.seed, i, stream=EVAL_STREAMS[split]), *args, 256) for i in range(config.eval_batches)
        ],
        baselines={"accuracy": chance(config.kind, config.num_pairs, config.vocab_size)},
    )
