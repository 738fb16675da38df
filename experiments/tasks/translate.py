"""English number words into German number words, generated with `num2words` (offline).

"twenty-seven" -> "siebenundzwanzig": German puts the units before the tens and
writes the whole number as one word, so the alignment between the two crosses.

Units: English *words* in (a closed vocabulary of about 30, so an unknown word is
a clear error, and hyphens and commas are only spelling), German *characters* out
(German writes the number as one word, so there are no word units to predict,
and with about 20 letters a subword vocabulary learnt from a few thousand numbers
would only add a segmentation to learn).

Split by number: numbers 0..`max_number` in bands by digit count; a test set
and a validation set are held out of every band (10% of the 1-3 digit numbers,
the rest drawn from the larger bands), and training draws only from the rest,
a band (digit count) uniformly, then a number within it, so short numbers are
not drowned by the 900,000 six-digit ones. The test numbers are never seen in training.
"""

from __future__ import annotations

import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.tasks import InputError, Task, rng_for

PAD, BOS, EOS = 0, 1, 2


def english(n: int) -> str:
    from num2words import num2words

    return num2words(n, lang="en")


def german(n: int) -> str:
    from num2words import num2words

    return num2words(n, lang="de")


def words(text: str) -> list[str]:
    """English number words as tokens: lower case; hyphens and commas are spelling, not words."""
    return re.sub(r"[-,]", " ", text.lower()).split()


def bands(max_number: int) -> list[tuple[int, int]]:
    """`[lo, hi)` ranges of numbers with 1, 2, ... digits, up to `max_number`."""
    out, lo = [], 0
    while lo <= max_number:
        hi = min(10 * max(lo, 1), max_number + 1)
        out.append((lo, hi))
        lo = hi
    return out


def split_numbers(max_number: int, test_size: int, val_size: int, pool_size: int, seed: int):
    """(train pool per band, validation numbers, test numbers), disjoint."""
    rng = np.random.default_rng([seed, 7])
    held: dict[str, list[int]] = {"test": [], "val": []}
    pools = []
    small = [b for b in bands(max_number) if b[1] - b[0] <= 1000]
    large = [b for b in bands(max_number) if b[1] - b[0] > 1000]
    for lo, hi in small:
        order = rng.permutation(np.arange(lo, hi))
        k = max(1, (hi - lo) // 10)
        held["test"] += order[:k].tolist()
        held["val"] += order[k : 2 * k].tolist() if hi - lo >= 20 else []
        pools.append(order[2 * k :] if hi - lo >= 20 else order[k:])
    for name, size in (("test", test_size), ("val", val_size)):
        missing = max(size - len(held[name]), 0)
        for j, (lo, hi) in enumerate(large):
            count = missing // len(large) + (j < missing % len(large))
            held[name] += rng.choice(np.arange(lo, hi), count, replace=False).tolist()
    taken = set(held["test"]) | set(held["val"])
    per_band = pool_size // max(len(bands(max_number)), 1)
    for lo, hi in large:
        draw = rng.choice(np.arange(lo, hi), min(per_band + 2 * len(taken), hi - lo), replace=False)
        pools.append(np.array([n for n in draw if n not in taken][:per_band]))
    test = sorted(set(held["test"]))
    val = sorted(set(held["val"]) - set(test))
    return pools, val, test


class Vocab:
    """Token ids: 0 pad, 1 BOS, 2 EOS, then the symbols in sorted order."""

    def __init__(self, symbols):
        self.symbols = ["<pad>", "<s>", "</s>", *sorted(set(symbols))]
        self.index = {s: k for k, s in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def decode(self, ids) -> str:
        out = []
        for i in ids:
            if int(i) == EOS:
                break
            out.append(self.symbols[int(i)] if int(i) > EOS else "")
        return "".join(out)


def encode_source(texts: list[list[str]], vocab: Vocab, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Word lists -> `[S, B]` ids (time-major) and lengths `[B]`."""
    ids = np.zeros((max_len, len(texts)), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for b, toks in enumerate(texts):
        ids[: len(toks), b] = [vocab.index[t] for t in toks]
        lengths[b] = len(toks)
    return ids, lengths


def encode_target(texts: list[str], vocab: Vocab, max_len: int) -> dict[str, np.ndarray]:
    """German strings -> decoder inputs (BOS + chars), outputs (chars + EOS) and weights, `[T, B]`."""
    T = max_len
    tin = np.zeros((T, len(texts)), np.int32)
    tout = np.zeros((T, len(texts)), np.int32)
    weights = np.zeros((T, len(texts)), np.float32)
    lengths = np.zeros(len(texts), np.int32)
    for b, text in enumerate(texts):
        ids = [vocab.index[c] for c in text]
        n = len(ids) + 1
        tin[:n, b] = [BOS, *ids]
        tout[:n, b] = [*ids, EOS]
        weights[:n, b] = 1.0
        lengths[b] = n
    return {"targets_in": tin, "ys": tout, "weights": weights, "target_lengths": lengths}


def make(config) -> Task:
    if not 10 <= config.max_number <= 999_999:
        raise ValueError(f"translate: max_number must be in [10, 999999], got {config.max_number}")
    pools, val, test = split_numbers(
        config.max_number, config.test_size, config.val_size, config.pool_size, config.seed
    )
    pool_numbers = [int(n) for p in pools for n in p]
    en = {n: english(n) for n in [*pool_numbers, *val, *test]}
    de = {n: german(n) for n in en}
    # the vocabularies are those of the whole range (every number is built from the words of 0..999,
    # and "thousand"), so a test number may hold a word no training number has: its embedding is untrained
    three = range(min(config.max_number + 1, 1000))
    en3, de3 = [words(english(n)) for n in three], [german(n) for n in three]
    thousands = config.max_number >= 1000
    src_vocab = Vocab([w for ws in en3 for w in ws] + (["thousand"] if thousands else []))
    tgt_vocab = Vocab("".join(de3) + ("tausend" if thousands else ""))
    # fixed shapes (one compilation): the longest 3-digit part, twice from 1,000 on with "thousand"
    # and "and" (English) or "tausend" (German) between; + 1 for EOS
    long_src, long_tgt = max(len(ws) for ws in en3), max(len(d) for d in de3)
    max_src = 2 * long_src + 2 if thousands else long_src
    max_tgt = (2 * long_tgt + len("tausend") if thousands else long_tgt) + 1

    def batch(numbers) -> dict[str, np.ndarray]:
        xs, lengths = encode_source([words(en[n]) for n in numbers], src_vocab, max_src)
        return {"xs": xs, "lengths": lengths, **encode_target([de[n] for n in numbers], tgt_vocab, max_tgt)}

    def bigram_accuracy(numbers) -> float:
        """Teacher-forced accuracy of the German character bigram model (counted on the training
        pool): what predicting the next character from the previous one, without the source, gets."""
        counts = np.zeros((len(tgt_vocab), len(tgt_vocab)))
        for n in pool_numbers:
            ids = [BOS, *(tgt_vocab.index[c] for c in de[n]), EOS]
            np.add.at(counts, (ids[:-1], ids[1:]), 1)
        guess = counts.argmax(1)
        hits = total = 0
        for n in numbers:
            ids = [BOS, *(tgt_vocab.index[c] for c in de[n]), EOS]
            hits += sum(int(guess[a] == b) for a, b in zip(ids[:-1], ids[1:], strict=True))
            total += len(ids) - 1
        return hits / total

    def train_batch(step: int) -> dict[str, np.ndarray]:
        rng = rng_for(config.seed, step)
        which = rng.integers(0, len(pools), config.batch_size)
        return batch([int(pools[w][rng.integers(0, len(pools[w]))]) for w in which])

    def check_text(text: str) -> list[str]:
        toks = words(text)
        if not toks:
            raise InputError(f"translate: empty input {text!r}; write a number in English words, e.g. 'twenty-seven'")
        unknown = [t for t in toks if t not in src_vocab.index or src_vocab.index[t] <= EOS]
        if unknown:
            known = ", ".join(s for s in src_vocab.symbols[EOS + 1 :])
            raise InputError(f"translate: {unknown[0]!r} in {text!r} is not a number word this model knows ({known})")
        if len(toks) > max_src:
            raise InputError(f"translate: {text!r} has {len(toks)} words; this model reads at most {max_src}")
        return toks

    def translate(model, params, texts: list[str], beam_size: int | None = None):
        """(German strings, decoded) for English number words; beam search with the config's beam size."""
        ids, lengths = encode_source([check_text(t) for t in texts], src_vocab, max_src)
        out = model.translate(params, jnp.asarray(ids), jnp.asarray(lengths), beam_size or config.beam_size, max_tgt)
        return [tgt_vocab.decode(out.tokens[b, 0]) for b in range(len(texts))], out

    def predict(model, params, texts: list[str]) -> list[str]:
        german_texts, _ = translate(model, params, texts)
        return [f"{t}  ->  {g}" for t, g in zip(texts, german_texts, strict=True)]

    def report(model, params, workdir) -> dict[str, Any]:
        import time

        import sacrebleu

        refs = [de[n] for n in test]
        texts = [en[n] for n in test]
        result: dict[str, Any] = {"test_numbers": len(test), "train_pool": len(pool_numbers)}
        for name, k in (("greedy", 1), (f"beam{config.beam_size}", config.beam_size)):
            t0 = time.perf_counter()
            hyps = []
            for i in range(0, len(texts), 250):
                hyps += translate(model, params, texts[i : i + 250], k)[0]
            result[name] = {
                "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs, strict=True)])),
                # one German number is one word: BLEU over characters, chrF over character n-grams
                "bleu_char": sacrebleu.corpus_bleu(hyps, [refs], tokenize="char").score,
                "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
                "seconds": round(time.perf_counter() - t0, 1),
            }
            digits = np.array([len(str(n)) for n in test])
            correct = np.array([h == r for h, r in zip(hyps, refs, strict=True)])
            result[name]["exact_match_by_digits"] = {
                int(d): float(correct[digits == d].mean()) for d in sorted(set(digits.tolist()))
            }
        wrong = [(texts[i], refs[i], h) for i, h in enumerate(hyps) if h != refs[i]][:10]
        result["errors"] = [{"source": s, "reference": r, "output": h} for s, r, h in wrong]
        if config.attention != "none":
            plot_attention(model, params, workdir, test)
        return result

    def plot_attention(model, params, workdir, numbers) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        picks = []
        for lo, hi in ((21, 100), (100, 1000), (10_000, 100_000), (100_000, 1_000_000)):
            inside = [n for n in numbers if lo <= n < hi and n % 10 != 0]
            if inside:
                picks.append(inside[len(inside) // 2])
        outs, dec = translate(model, params, [en[n] for n in picks], 1)
        fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 6.5), squeeze=False)
        for ax, n, out, w in zip(axes[0], picks, outs, np.asarray(dec.trace[:, 0]), strict=True):
            src = words(en[n])
            rows = list(out) + ["</s>"]
            ax.imshow(w[: len(rows), : len(src)], aspect="auto", cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(src)), src, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(range(len(rows)), rows, fontsize=7)
            ax.set_title(f"{n}: {out}" if len(out) < 30 else f"{n}", fontsize=9)
        fig.suptitle("attention weights: German character (rows) over English word (columns), greedy decoding")
        fig.tight_layout()
        fig.savefig(workdir / "attention.png", dpi=100)
        plt.close(fig)

    return Task(
        name="translate",
        input_size=0,
        vocab_size=len(src_vocab),
        output_size=len(tgt_vocab),
        loss="xent",
        readout="all",
        train_batch=train_batch,
        eval_batches=[batch(val)],
        baselines={"accuracy": bigram_accuracy(val)},
        extra={
            "source_vocab": src_vocab,
            "target_vocab": tgt_vocab,
            "max_source": max_src,
            "max_target": max_tgt,
            "predict": predict,
            "translate": translate,
            "test_numbers": test,
            "val_numbers": val,
            "train_pools": pools,
        },
        report=report,
    )
