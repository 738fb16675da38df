"""Word segmentation: restore the word boundaries of Shakespeare with the spaces taken out.

A label at every character: does a word end here? Text: the 38 plays of the
`data` extra, lower-cased, letters only (apostrophes dropped, other characters
split words), split *by play*: `test_plays` plays for the test, `val_plays` for
validation during training, the rest for training (the same plays for every
seed and model, so that runs compare). Training windows of `seq_len` letters
are drawn at random from the training plays.

Deciding that a word ends at character t needs the characters after t ("the|re"
vs "there|"), so a bidirectional tagger should beat a unidirectional one. The
baseline is a character n-gram boundary model: from the training plays, the
boundary frequency of every context (`ngram_left` characters up to t, `ngram_right`
after), backing off to shorter contexts when a context was never seen; it predicts
a boundary where that frequency exceeds one half.

The report scores boundary precision, recall and F1 on the test plays (each
test play cut into windows of `seq_len`, every position scored once).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks import InputError, Task, rng_for
from experiments.tasks import data as data_lib

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
EDGE = len(ALPHABET)  # the n-gram contexts' symbol beyond either end of the text


def play_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower().replace("'", "").replace("\u2019", ""))


def letters_and_labels(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Letter ids `[N]` and labels `[N]` (1 where a word ends) of the words run together."""
    text = "".join(words)
    ids = np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int32) - ord("a")
    labels = np.zeros(len(text), np.int32)
    labels[np.cumsum([len(w) for w in words]) - 1] = 1
    return ids, labels


def split_plays(num_plays: int, test_plays: int, val_plays: int) -> tuple[list[int], list[int], list[int]]:
    """Play indices (train, validation, test) from a fixed permutation (not the run's seed)."""
    order = np.random.default_rng(20261127).permutation(num_plays).tolist()
    test, val = sorted(order[:test_plays]), sorted(order[test_plays : test_plays + val_plays])
    return sorted(order[test_plays + val_plays :]), val, test


def _context_keys(ids: np.ndarray, left: int, right: int) -> np.ndarray:
    """For every position t, the context `ids[t-left+1 .. t+right]` as one base-27 integer."""
    pad = np.concatenate([np.full(left, EDGE), ids, np.full(right, EDGE)])
    keys = np.zeros(len(ids), np.int64)
    for j in range(left + right):  # offsets -left+1 .. right
        keys = keys * (EDGE + 1) + pad[j + 1 : j + 1 + len(ids)]
    return keys


class NgramBoundaries:
    """Boundary frequencies of character contexts, with back-off from long contexts to short."""

    def __init__(self, ids: np.ndarray, labels: np.ndarray, left: int, right: int):
        self.orders = [(l, r) for l in range(left, 0, -1) for r in range(right, -1, -1) if l >= r or r == 0]
        self.orders = sorted(set(self.orders), key=lambda o: -(o[0] + o[1]))
        self.tables = []
        for l, r in self.orders:
            keys, inverse = np.unique(_context_keys(ids, l, r), return_inverse=True)
            seen = np.bincount(inverse)
            ends = np.bincount(inverse, weights=labels)
            self.tables.append((keys, ends / seen))

    def predict_proba(self, ids: np.ndarray) -> np.ndarray:
        proba = np.full(len(ids), np.nan)
        for (l, r), (keys, freq) in zip(self.orders, self.tables, strict=True):
            want = _context_keys(ids, l, r)
            pos = np.clip(np.searchsorted(keys, want), 0, len(keys) - 1)
            found = (keys[pos] == want) & np.isnan(proba)
            proba[found] = freq[pos[found]]
        return np.nan_to_num(proba, nan=0.0)


def boundary_scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tp = float(np.sum((pred == 1) & (labels == 1)))
    precision = tp / max(float(np.sum(pred == 1)), 1.0)
    recall = tp / max(float(np.sum(labels == 1)), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1}


def make(config) -> Task:
    plays = data_lib.shakespeare_plays()
    if config.test_plays + config.val_plays >= len(plays):
        raise ValueError(
            f"segment: test_plays + val_plays must leave training plays; got {config.test_plays} + "
            f"{config.val_plays} of {len(plays)} plays"
        )
    train_idx, val_idx, test_idx = split_plays(len(plays), config.test_plays, config.val_plays)

    def stream(indices) -> tuple[np.ndarray, np.ndarray]:
        parts = [letters_and_labels(play_words(plays[i][1])) for i in indices]
        ids, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        limit = config.max_letters or len(ids)  # the smoke size reads a prefix
        return ids[:limit], labels[:limit]

    train_ids, train_labels = stream(train_idx)
    val_ids, val_labels = stream(val_idx)
    test_ids, test_labels = stream(test_idx)
    T = config.seq_len

    def windows(ids, labels, limit=None) -> dict[str, np.ndarray]:
        n = len(ids) // T if limit is None else min(len(ids) // T, limit)
        return {
            "xs": ids[: n * T].reshape(n, T).T.copy(),
            "ys": labels[: n * T].reshape(n, T).T.copy(),
            "weights": np.ones((T, n), np.float32),
        }

    def train_batch(step: int) -> dict[str, np.ndarray]:
        starts = rng_for(config.seed, step).integers(0, len(train_ids) - T, config.batch_size)
        idx = starts[None, :] + np.arange(T)[:, None]
        return {"xs": train_ids[idx], "ys": train_labels[idx], "weights": np.ones((T, config.batch_size), np.float32)}

    def boundary_proba(model, params, ids: np.ndarray) -> np.ndarray:
        """P(a word ends at t) for every letter of `ids`, read in windows of seq_len (the last one padded)."""
        n = -(-len(ids) // T)
        padded = np.concatenate([ids, np.zeros(n * T - len(ids), np.int32)]).reshape(n, T).T
        lengths = np.minimum(len(ids) - np.arange(n) * T, T).astype(np.int32)
        apply = jax.jit(model.apply)
        out = []
        for i in range(0, n, 256):
            logits = apply(params, jnp.asarray(padded[:, i : i + 256]), jnp.asarray(lengths[i : i + 256]))
            out.append(np.asarray(jax.nn.softmax(logits)[..., 1]))
        return np.concatenate(out, axis=1).T.reshape(-1)[: len(ids)]

    def predict(model, params, texts: list[str]) -> list[str]:
        lines = []
        for text in texts:
            letters = text.strip().lower()
            if not letters:
                raise InputError("segment: empty input; give letters without spaces, e.g. 'thefoodisbad'")
            bad = sorted(set(c for c in letters if c not in ALPHABET))
            if bad:
                raise InputError(f"segment: {text!r} has characters other than the letters a-z: {bad}")
            ids = np.frombuffer(letters.encode("ascii"), np.uint8).astype(np.int32) - ord("a")
            ends = boundary_proba(model, params, ids) > 0.5
            lines.append("".join(c + (" " if e else "") for c, e in zip(letters, ends, strict=True)).strip())
        return lines

    def report(model, params, workdir) -> dict[str, Any]:
        pred = (boundary_proba(model, params, test_ids) > 0.5).astype(np.int32)
        ngram = NgramBoundaries(train_ids, train_labels, config.ngram_left, config.ngram_right)
        base = (ngram.predict_proba(test_ids) > 0.5).astype(np.int32)
        names = [plays[i][0] for i in test_idx]
        sample = test_ids[:300]
        show = lambda p: "".join(ALPHABET[c] + (" " if e else "") for c, e in zip(sample, p[:300], strict=True))  # noqa: E731
        return {
            "test_plays": names,
            "test_letters": len(test_ids),
            "train_letters": len(train_ids),
            "tagger": boundary_scores(pred, test_labels),
            f"ngram_{config.ngram_left}_{config.ngram_right}": boundary_scores(base, test_labels),
            "every_letter_a_boundary": boundary_scores(np.ones_like(test_labels), test_labels),
            "sample": {"reference": show(test_labels), "tagger": show(pred), "ngram": show(base)},
        }

    return Task(
        name="segment",
        input_size=0,
        vocab_size=len(ALPHABET),
        output_size=2,
        loss="xent",
        readout="all",
        train_batch=train_batch,
        eval_batches=[windows(val_ids, val_labels, limit=512)],
        baselines={"accuracy": float(1.0 - val_labels.mean())},  # "never a boundary"
        extra={"predict": predict, "test_plays": [plays[i][0] for i in test_idx]},
        report=report,
    )
