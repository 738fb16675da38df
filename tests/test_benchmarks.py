"""A tiny run of the benchmark harness proves it works end to end; no timing is asserted."""

from __future__ import annotations

import json

from benchmarks import report, run


def test_tiny_harness_run_and_report(tmp_path):
    out = tmp_path / "tiny.json"
    rc = run.main(["--kinds", "lstm", "gru", "mingru", "--impls", "rnnjax", "rnnjax-parallel", "rnnjax-remat", "flax",
                   "equinox", "torch", "--seq-lens", "4", "9", "--batch", "2", "--input", "3", "--hidden", "4",
                   "--reps", "2", "--out", str(out), "--quiet"])
    result = json.loads(out.read_text())
    assert rc == 0 and result["loss_check"] == "all implementations agree"
    measured = {(r["impl"], r["kind"], r["T"]) for r in result["records"] if "train" in r}
    assert {("rnnjax", k, T) for k in ("lstm", "gru", "mingru") for T in (4, 9)} <= measured
    assert ("rnnjax-parallel", "mingru", 9) in measured and ("flax", "lstm", 9) in measured
    assert not any(r["kind"] == "lstm" and r["impl"] == "rnnjax-parallel" for r in result["records"])
    for r in result["records"]:
        assert "train" in r or "skipped" in r, r  # a peer that is not installed is skipped, nothing errors
    assert result["machine"]["cores"] and result["machine"]["matmul_peak_gflops"] > 0
    assert report.main([str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "### lstm: training step" in md and "flax nn.RNN(LSTMCell)" in md
    assert (tmp_path / "tiny-lstm.png").stat().st_size > 0


def test_custom_vjp_lstm_experiment_has_the_autodiff_gradients(x64):
    """The benchmark's hand-written-VJP LSTM computes the same gradients as jax.grad of rnnjax.unroll."""
    import chex
    import jax
    import jax.numpy as jnp
    import numpy as np

    import rnnjax
    from benchmarks.impls import canonical, lstm_custom_vjp

    w = {k: jnp.asarray(v, jnp.float64) for k, v in canonical("lstm", 3, 5).items()}
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((9, 2, 3)))
    lstm, cell = lstm_custom_vjp(), rnnjax.cells.lstm(5, dtype=jnp.float64)
    custom = jax.grad(lambda p, x: jnp.sum(jnp.sin(lstm(p["w_x"], p["w_h"], p["b"], x))), (0, 1))(w, xs)
    auto = jax.grad(lambda p, x: jnp.sum(jnp.sin(rnnjax.unroll(cell, p, x)[1])), (0, 1))(w, xs)
    chex.assert_trees_all_close(custom, auto, rtol=1e-12, atol=1e-12)
