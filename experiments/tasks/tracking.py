"""State-tracking tasks: follow a composition of group elements token by token, and do it on sequences
longer than any seen in training (Merrill, Petty & Sabharwal 2024, "The Illusion of State in
State-Space Models"; Grazzi et al., ICLR 2025, "Unlocking State-Tracking in Linear RNNs Through
Negative Eigenvalues"). Generated from the seed; nothing downloads.

Every task is a word problem: the tokens are group elements `g_1, g_2, ...` and the target at
step t is the running product `g_1 g_2 ... g_t`, a class among the group's elements; the loss
and the training accuracy count every step. Train on `seq_len` steps, then `report` measures the
accuracy at the longer test lengths: at the last step (the state after L steps, the word problem's
answer) and over all steps.

- `parity`: bits; the running parity (the group Z2). A linear recurrence whose transitions have only
  positive eigenvalues cannot flip a sign per 1 at every length (Grazzi et al.), one with -1 can.
- `mod3`: bits; the running count of ones mod 3 (Z3 counted by its generator), a rotation by 120
  degrees per 1: eigenvalues off the real line, which a real diagonal transition does not have.
- `s3`: the symmetric group on 3 letters (6 elements, non-abelian, solvable).
- `s5`: the symmetric group on 5 letters (120 elements, not solvable: the word problem is
  NC1-complete, Barrington 1989, which Merrill et al. argue no fixed-depth linear RNN of the diagonal
  kind solves at every length).

Chance: 1 / (number of classes).
"""

from __future__ import annotations

import itertools

import numpy as np

from experiments.tasks import Batch, Task, rng_for

KINDS = ("parity", "mod3", "s3", "s5")


def _permutation_group(n: int) -> tuple[np.ndarray, int]:
    """The multiplication table of S_n, `table[a, b] = index of (a then b)`, and the identity's index."""
    perms = list(itertools.permutations(range(n)))
    index = {p: i for i, p in enumerate(perms)}
    table = np.zeros((len(perms), len(perms)), np.int32)
    for i, a in enumerate(perms):
        for j, b in enumerate(perms):
            table[i, j] = index[tuple(b[a[k]] for k in range(n))]  # apply a, then b
    return table, index[tuple(range(n))]


def _cyclic_counter(n: int) -> tuple[np.ndarray, int]:
    """Counting ones mod n: tokens are bits, states 0..n-1, `table[state, bit] = (state + bit) mod n`."""
    table = np.array([[(s + b) % n for b in range(2)] for s in range(n)], np.int32)
    return table, 0


GROUPS = {
    "parity": lambda: _cyclic_counter(2),
    "mod3": lambda: _cyclic_counter(3),
    "s3": lambda: _permutation_group(3),
    "s5": lambda: _permutation_group(5),
}


class WordProblem:
    """Tokens and running products of one task: `tokens` input symbols, `classes` states."""

    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"tracking task: `kind` must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.table, self.identity = GROUPS[kind]()
        self.classes = self.table.shape[0]
        self.tokens = self.table.shape[1]

    def batch(self, rng: np.random.Generator, seq_len: int, batch_size: int) -> Batch:
        xs = rng.integers(0, self.tokens, size=(seq_len, batch_size)).astype(np.int32)
        ys = np.zeros_like(xs)
        state = np.full(batch_size, self.identity, np.int32)
        for t in range(seq_len):
            state = self.table[state, xs[t]]
            ys[t] = state
        weights = np.ones((seq_len, batch_size), np.float32)
        return {"xs": xs, "ys": ys, "weights": weights, "metric_weights": weights}


def length_generalisation(model, params, problem: WordProblem, lengths, seed: int, batch_size: int = 256):
    """Accuracy at each test length: at the last step, and over all steps, on fresh sequences."""
    import jax
    import jax.numpy as jnp

    apply = jax.jit(model.apply)
    out = {}
    for L in lengths:
        batch = problem.batch(rng_for(seed, L, stream=2), L, batch_size)
        pred = np.asarray(jnp.argmax(apply(params, jnp.asarray(batch["xs"])), axis=-1))
        correct = pred == batch["ys"]
        out[str(L)] = {"last": float(correct[-1].mean()), "all": float(correct.mean())}
    return out


def make(config) -> Task:
    problem = WordProblem(config.kind)
    if config.seq_len < 1:
        raise ValueError(f"tracking task: `seq_len` must be >= 1, got {config.seq_len}")
    test_lengths = tuple(config.test_lengths)
    if not test_lengths or min(test_lengths) < 1:
        raise ValueError(f"tracking task: `test_lengths` must be positive lengths, got {test_lengths}")

    def report(model, params, workdir):
        return {"length_generalisation": length_generalisation(model, params, problem, test_lengths, config.seed)}

    return Task(
        name="tracking",
        input_size=0,
        vocab_size=problem.tokens,
        output_size=problem.classes,
        loss="xent",
        readout="all",
        train_batch=lambda step: problem.batch(rng_for(config.seed, step), config.seq_len, config.batch_size),
        eval_batches=[problem.batch(rng_for(config.seed, i, stream=1), config.seq_len, 256) for i in range(2)],
        baselines={"accuracy": 1.0 / problem.classes},
        report=report,
    )
