"""The recall study's parts: the tasks' construction, the backbone (attention held to a loop,
causality, the sliding window, rotary positions, the state size), and the study's smoke run
with resume."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import backbone as bb
from experiments import recall_study
from experiments.config import ConfigError, resolve
from experiments.tasks import make as make_task
from experiments.tasks import recall
from rnnjax.contract import TOLERANCES


def test_mqar_asks_every_key_once_for_its_value():
    rng = np.random.default_rng(0)
    batch = recall.mqar(rng, seq_len=40, num_pairs=6, vocab_size=64, batch_size=5)
    xs, ys, w = batch["xs"], batch["ys"], batch["weights"]
    for b in range(5):
        keys, values = xs[0:12:2, b], xs[1:12:2, b]
        assert len(set(keys)) == 6 and keys.max() < 32 and values.min() >= 32
        asked = np.flatnonzero(w[:, b])
        assert len(asked) == 6 and asked.min() >= 12
        assert sorted(xs[asked, b]) == sorted(keys)  # each key asked once
        for t in asked:
            assert ys[t, b] == values[list(keys).index(xs[t, b])]
        assert np.all(xs[12:, b][w[12:, b] == 0] == 0)  # filler elsewhere


def test_selective_copy_targets_are_the_data_in_order():
    batch = recall.selective_copy(np.random.default_rng(1), seq_len=30, num_pairs=5, vocab_size=10, batch_size=4)
    xs, ys = batch["xs"], batch["ys"]
    for b in range(4):
        data = xs[:-5, b][xs[:-5, b] != 0]
        np.testing.assert_array_equal(ys[-5:, b], data)
        assert np.all(xs[-5:, b] == 9)
    assert batch["weights"][:-5].sum() == 0


def test_induction_answers_with_the_token_after_the_trigger():
    batch = recall.induction(np.random.default_rng(2), seq_len=20, num_pairs=1, vocab_size=12, batch_size=8)
    xs, ys = batch["xs"], batch["ys"]
    for b in range(8):
        (first, last) = np.flatnonzero(xs[:, b] == 11)
        assert last == 19 and ys[19, b] == xs[first + 1, b]


@pytest.mark.parametrize(
    ("kind", "seq_len", "num_pairs", "vocab", "match"),
    [
        ("mqar", 10, 4, 64, "seq_len >= 3 \\* num_pairs"),
        ("mqar", 64, 4, 8, "vocab_size >= 2"),
        ("selective_copy", 6, 4, 16, "seq_len >= 2 \\* num_pairs"),
        ("copy", 64, 4, 16, "`kind` must be one of"),
    ],
)
def test_bad_task_settings_are_named(kind, seq_len, num_pairs, vocab, match):
    with pytest.raises(ValueError, match=match):
        recall.check(kind, seq_len, num_pairs, vocab)


def test_unknown_mixer_is_a_config_error():
    with pytest.raises(ConfigError, match="not a token mixer.*attention"):
        resolve("recall", smoke=True, sets=["cell=transformer"])


def _naive_attention(params, x, heads, window):
    """Attention as a loop over queries, in NumPy float64, rotary written per position."""
    x = np.asarray(x, np.float64)
    T, B, D = x.shape
    dh = D // heads
    q, k, v = np.split(x @ np.asarray(params["w_qkv"], np.float64), 3, axis=-1)

    def rot(a, t):
        a = a.reshape(B, heads, dh).copy()
        out = np.empty_like(a)
        for i in range(dh // 2):
            theta = t * 10000.0 ** (-2 * i / dh)
            c, s = np.cos(theta), np.sin(theta)
            out[..., 2 * i] = a[..., 2 * i] * c - a[..., 2 * i + 1] * s
            out[..., 2 * i + 1] = a[..., 2 * i] * s + a[..., 2 * i + 1] * c
        return out

    out = np.zeros((T, B, heads, dh))
    for t in range(T):
        lo = 0 if window is None else max(0, t - window + 1)
        qt = rot(q[t], t)
        ks = np.stack([rot(k[s], s) for s in range(lo, t + 1)])  # [S, B, h, dh]
        scores = np.einsum("bhd,sbhd->bhs", qt, ks) / np.sqrt(dh)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[t] = np.einsum("bhs,sbhd->bhd", p, v[lo : t + 1].reshape(-1, B, heads, dh))
    return out.reshape(T, B, D) @ np.asarray(params["w_o"], np.float64)


@pytest.mark.parametrize("window", [None, 3])
def test_attention_equals_a_loop_over_queries(window):
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        params = {"w_qkv": jnp.asarray(rng.standard_normal((8, 24))), "w_o": jnp.asarray(rng.standard_normal((8, 8)))}
        x = jnp.asarray(rng.standard_normal((9, 2, 8)))
        got = bb.attention(params, x, num_heads=2, window=window)
        np.testing.assert_allclose(got, _naive_attention(params, x, 2, window), **TOLERANCES["float64 algorithm"])


@pytest.mark.parametrize(("mixer", "conv"), [("attention", 4), ("swa", 0), ("gru", 3), ("deltanet", 4)])
def test_backbone_is_causal(mixer, conv):
    model = bb.Backbone(mixer=mixer, width=8, num_layers=2, vocab_size=11, output_size=11, conv=conv, num_heads=2)
    params = model.init(jax.random.key(0))
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, 11, (12, 3)))
    changed = tokens.at[7:].set((tokens[7:] + 1) % 11)
    a, b = model.apply(params, tokens), model.apply(params, changed)
    assert a.shape == (12, 3, 11)
    np.testing.assert_allclose(a[:7], b[:7], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[7:], b[7:])


def test_sliding_window_sees_only_its_window():
    model = bb.Backbone(mixer="swa", width=8, num_layers=1, vocab_size=11, output_size=11, window=3, num_heads=2)
    params = model.init(jax.random.key(1))
    tokens = jnp.asarray(np.random.default_rng(5).integers(0, 11, (10, 2)))
    changed = tokens.at[4].set((tokens[4] + 1) % 11)
    a, b = model.apply(params, tokens), model.apply(params, changed)
    np.testing.assert_allclose(a[7:], b[7:], rtol=1e-6, atol=1e-6)  # position 4 is outside windows from 7 on
    assert not np.allclose(a[4:7], b[4:7])


def test_state_bytes():
    def state(mixer, **kw):
        model = bb.Backbone(mixer=mixer, width=16, num_layers=2, vocab_size=8, output_size=8, **kw)
        return model.state_bytes(model.init(jax.random.key(0)), seq_len=50)

    assert state("gru") == 2 * 16 * 4
    assert state("lstm") == 2 * 2 * 16 * 4  # h and c
    assert state("attention") == 2 * (2 * 50 * 16 * 4)  # keys and values for 50 tokens, per layer
    assert state("swa", window=8) == 2 * (2 * 8 * 16 * 4)
    assert state("deltanet", num_heads=4) == 2 * 4 * 4 * 4 * 4  # 4 heads of [4, 4]
    assert state("gru", conv=4) == 2 * (16 + 3 * 16) * 4


def test_study_smoke_tunes_writes_table_and_figure_and_resumes(tmp_path):
    study = dataclasses.replace(
        recall_study.SMOKE, mixers=("gru", "gated_deltanet + attention"), widths=(8,), steps=2, num_layers=2
    )
    out = recall_study.run(study, tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} >= {"recall.md", "recall.png", "recall.json", "runs", "tune"}
    saved = json.loads((tmp_path / "recall.json").read_text())
    rows, tuning = saved["rows"], saved["tuning"]
    assert len(tuning) == 2 * len(study.learning_rates) and {r["split"] for r in tuning} == {"validation"}
    for mixer in study.mixers:  # the grid runs at the rate with the best validation accuracy
        mine = [r for r in tuning if r["mixer"] == mixer]
        best = max(mine, key=lambda r: (r["accuracy"], -r["learning_rate"]))["learning_rate"]
        assert out["rates"][mixer] == best
        assert {r["learning_rate"] for r in rows if r["mixer"] == mixer} == {best}
    assert len(rows) == len(study.settings) * 2 and {r["split"] for r in rows} == {"test"}
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["state_bytes"] > 0 for r in rows)
    assert "| gru |" in out["table"] and "| gated_deltanet + attention |" in out["table"]
    assert "**Learning rate**" in out["table"]
    # the hybrid carries layer 0's state (4 heads of [2, 2]), layer 1's key-value cache at T = 16 and
    # both layers' convolution buffers (3 steps of 8), float32
    hybrid = next(r for r in rows if r["mixer"] != "gru" and r["task"] == "mqar")
    assert hybrid["state_bytes"] == (4 * 2 * 2 + 2 * 16 * 8 + 2 * 3 * 8) * 4
    summaries = sorted(tmp_path.glob("runs/*/*/summary.json"))
    assert len(summaries) == len(rows)
    stamps = [p.stat().st_mtime_ns for p in summaries]
    again = recall_study.run(study, tmp_path, progress=False)  # finished runs are read back, not retrained
    assert [p.stat().st_mtime_ns for p in summaries] == stamps
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in rows]


def test_validation_split_is_not_the_test_split():
    """The learning rate is chosen on batches the test batches never come from."""
    test = make_task("recall", resolve("recall", smoke=True))
    validation = make_task("recall", resolve("recall", smoke=True, sets=["eval_split=validation"]))
    assert not np.array_equal(test.eval_batches[0]["xs"], validation.eval_batches[0]["xs"])
    with pytest.raises(ValueError, match="eval_split must be one of"):
        make_task("recall", resolve("recall", smoke=True, sets=["eval_split=train"]))
    with pytest.raises(ValueError, match="unknown mixer 'transformer'"):
        recall_study.mixer_spec("transformer")
