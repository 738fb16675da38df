"""The translate and segment experiments: data splits, the encoder-decoder, the n-gram baseline,
`predict` on trained smoke runs and its errors."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import config as config_lib
from experiments.__main__ import main as cli
from experiments.model import build
from experiments.tasks import make as make_task
from experiments.tasks import segment, translate

# --- translate ---------------------------------------------------------------------------------


def test_test_numbers_are_never_trained_on():
    pools, val, test = translate.split_numbers(99_999, test_size=300, val_size=100, pool_size=3000, seed=0)
    train = {int(n) for p in pools for n in p}
    assert not train & set(test) and not train & set(val) and not set(val) & set(test)
    assert len(test) >= 300 and len(val) >= 100
    # every digit count is trained on and tested
    assert {len(str(n)) for n in train} == {len(str(n)) for n in test} == {1, 2, 3, 4, 5}


def test_source_words_and_target_encoding_round_trip():
    assert translate.words("Nine hundred and ninety-nine") == ["nine", "hundred", "and", "ninety", "nine"]
    assert translate.words("one thousand, two hundred") == ["one", "thousand", "two", "hundred"]
    vocab = translate.Vocab("siebenundzwanzig" + "elf")
    enc = translate.encode_target(["siebenundzwanzig", "elf"], vocab, 20)
    assert enc["targets_in"][0, 0] == translate.BOS and enc["ys"][16, 0] == translate.EOS
    assert vocab.decode(enc["ys"][:, 0]) == "siebenundzwanzig"
    np.testing.assert_array_equal(enc["weights"].sum(0), [17, 4])
    np.testing.assert_array_equal(enc["targets_in"][1:17, 0], enc["ys"][:16, 0])  # shifted by one


@pytest.mark.parametrize(
    "sets", [[], ["attention=none"], ["bidirectional=false", "attention=dot"], ["attention=general"]]
)
def test_translator_ignores_source_padding(sets):
    """Logits for a batch padded to the fixed source length equal those for the same batch trimmed."""
    config = config_lib.resolve("translate", smoke=True, sets=sets)
    task = make_task("translate", config)
    model = build(task, config)
    params = model.init(jax.random.key(0))
    batch = {k: jnp.asarray(v) for k, v in task.train_batch(0).items()}
    trimmed = {**batch, "xs": batch["xs"][: int(batch["lengths"].max())]}
    garbage = {**batch, "xs": jnp.where(jnp.arange(batch["xs"].shape[0])[:, None] < batch["lengths"], batch["xs"], 5)}
    a, b, c = (model.logits(params, x) for x in (batch, trimmed, garbage))
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    out = model.translate(params, batch["xs"], batch["lengths"], 2, 12)
    assert out.tokens.shape == (config.batch_size, 2, 12)


def test_dot_attention_with_a_bidirectional_encoder_is_a_clear_error(capsys):
    assert cli(["train", "translate", "--smoke", "--set", "attention=dot"]) == 2
    assert "attention='dot' compares the decoder's state with the encoder's outputs" in capsys.readouterr().err


# --- segment -----------------------------------------------------------------------------------


def test_letters_and_labels_mark_word_ends():
    ids, labels = segment.letters_and_labels(segment.play_words("The food, isn't bad!"))
    assert "".join(segment.ALPHABET[i] for i in ids) == "thefoodisntbad"
    np.testing.assert_array_equal(np.flatnonzero(labels), [2, 6, 10, 13])


def _naive_ngram(train_ids, train_labels, test_ids, orders):
    """The back-off n-gram model with Python dicts, one context at a time."""
    padded = lambda ids, t, l, r: tuple(ids[j] if 0 <= j < len(ids) else -1 for j in range(t - l + 1, t + r + 1))  # noqa: E731
    tables = []
    for l, r in orders:
        counts = {}
        for t in range(len(train_ids)):
            seen, ends = counts.get(padded(train_ids, t, l, r), (0, 0))
            counts[padded(train_ids, t, l, r)] = (seen + 1, ends + int(train_labels[t]))
        tables.append(counts)
    out = []
    for t in range(len(test_ids)):
        p = 0.0
        for (l, r), counts in zip(orders, tables, strict=True):
            if padded(test_ids, t, l, r) in counts:
                seen, ends = counts[padded(test_ids, t, l, r)]
                p = ends / seen
                break
        out.append(p)
    return np.array(out)


def test_ngram_baseline_matches_a_dictionary_implementation():
    rng = np.random.default_rng(0)
    vocab = ["to", "be", "or", "not", "the", "there", "then", "he", "re"]
    train_ids, train_labels = segment.letters_and_labels(list(rng.choice(vocab, 300)))
    test_ids, _ = segment.letters_and_labels(list(rng.choice(vocab, 60)) + ["zzq"])  # an unseen context too
    model = segment.NgramBoundaries(train_ids, train_labels, left=3, right=2)
    assert model.orders[0] == (3, 2) and model.orders[-1] == (1, 0)
    np.testing.assert_allclose(
        model.predict_proba(test_ids), _naive_ngram(train_ids, train_labels, test_ids, model.orders)
    )


def test_bidirectional_tagger_reads_the_future_and_the_unidirectional_one_does_not():
    for bidirectional in (True, False):
        config = config_lib.resolve("segment", smoke=True, sets=[f"bidirectional={bidirectional}"])
        task = make_task("segment", config)
        model = build(task, config)
        params = model.init(jax.random.key(0))
        xs = jnp.asarray(task.train_batch(0)["xs"])
        changed = xs.at[10].set((xs[10] + 1) % 26)
        a, b = model.logits(params, {"xs": xs}), model.logits(params, {"xs": changed})
        np.testing.assert_array_equal(a[:10] == b[:10], not bidirectional)


def test_boundary_scores():
    s = segment.boundary_scores(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert s == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


# --- predict on trained smoke runs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name in ("translate", "segment"):
        assert cli(["train", name, "--smoke", "--quiet", "--workdir", str(root / name)]) == 0
    return root


def test_predict_translates_and_segments(smoke_runs, capsys):
    assert cli(["predict", str(smoke_runs / "translate"), "ninety-nine", "Twenty-Seven"]) == 0  # smoke: 0..99
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("  ->  ")[0] for line in lines] == ["ninety-nine", "Twenty-Seven"]
    assert cli(["predict", str(smoke_runs / "segment"), "thefoodisbad"]) == 0
    assert capsys.readouterr().out.strip().replace(" ", "") == "thefoodisbad"
    assert (smoke_runs / "translate" / "attention.png").stat().st_size > 0


@pytest.mark.parametrize(
    "run, text, message",
    [
        ("translate", "  ", "translate: empty input"),
        ("translate", "twenty sevn", "'sevn' in 'twenty sevn' is not a number word this model knows"),
        ("translate", " ".join(itertools.repeat("one", 40)), "has 40 words; this model reads at most"),
        ("segment", "", "segment: empty input"),
        ("segment", "the food", "has characters other than the letters a-z: [' ']"),
    ],
)
def test_predict_bad_input_is_a_clear_error(smoke_runs, capsys, run, text, message):
    assert cli(["predict", str(smoke_runs / run), text]) == 2
    assert message in capsys.readouterr().err
