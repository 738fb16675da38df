"""A tiny run of the benchmark harness proves it works end to end; no timing is asserted."""

from __future__ import annotations

import json

import pytest

from benchmarks import report, run


def test_tiny_harness_run_and_report(tmp_path):
    out = tmp_path / "tiny.json"
    rc = run.main(
        [
            "--kinds",
            "lstm",
            "gru",
            "mingru",
            "--impls",
            "rnnjax",
            "rnnjax-scan",
            "rnnjax-parallel",
            "flax",
            "equinox",
            "torch",
            "--seq-lens",
            "9",
            "--batch",
            "2",
            "--input",
            "3",
            "--hidden",
            "4",
            "--reps",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    result = json.loads(out.read_text())
    assert rc == 0 and result["loss_check"] == "all implementations agree"
    measured = {(r["impl"], r["kind"], r["T"]) for r in result["records"] if "train" in r}
    assert {("rnnjax", k, 9) for k in ("lstm", "gru", "mingru")} <= measured
    assert ("rnnjax-parallel", "mingru", 9) in measured and ("flax", "lstm", 9) in measured
    assert not any(r["kind"] == "lstm" and r["impl"] == "rnnjax-parallel" for r in result["records"])
    # the plain scan is a variant only where the default is a sequence kernel (the LSTM's and the GRU's)
    assert ("rnnjax-scan", "lstm", 9) in measured and ("rnnjax-scan", "gru", 9) in measured
    assert not any(r["kind"] == "mingru" and r["impl"] == "rnnjax-scan" for r in result["records"])
    for r in result["records"]:
        assert "train" in r or "skipped" in r, r  # a peer that is not installed is skipped, nothing errors
    assert result["machine"]["cores"] and result["machine"]["matmul_peak_gflops"] > 0
    assert report.main([str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "### lstm: training step" in md and "flax nn.RNN(LSTMCell)" in md
    assert (tmp_path / "tiny-lstm.png").stat().st_size > 0


def test_kernel_blocks_tiny_run(tmp_path):
    from benchmarks import kernel_blocks

    out = tmp_path / "blocks.json"
    assert (
        kernel_blocks.main(
            ["--hidden", "4", "--batch", "2", "--seq-len", "3", "--input", "2", "--reps", "1", "--out", str(out)]
        )
        == 0
    )
    records = json.loads(out.read_text())["records"]
    assert {(r["H"], r["blocks"]) for r in records} == {(4, 1), (4, 2)}
    assert all(r["forward_ms"] > 0 and r["train_ms"] > 0 for r in records)
    assert "| 4 |" in out.with_suffix(".md").read_text()


def test_interleaved_tiny_run(tmp_path, capsys):
    from benchmarks import interleaved

    out = tmp_path / "inter.json"
    assert (
        interleaved.main(
            [
                "--kind",
                "gru",
                "--impls",
                "rnnjax",
                "rnnjax-scan",
                "flax",
                "rnnjax-parallel",
                "--seq-lens",
                "1",
                "3",
                "--batch",
                "2",
                "--input",
                "3",
                "--hidden",
                "4",
                "--reps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["loss_check"] == "all implementations agree"
    assert result["config"]["impls"][:2] == ["rnnjax", "rnnjax-scan"]  # the parallel scan does not apply to the GRU
    measured = {(r["impl"], r["T"]) for r in result["records"] if r["train"]["reps"] == 2}
    assert {("rnnjax", 1), ("rnnjax-scan", 3)} <= measured
    assert "| rnnjax[Scan(kernel=False)] |" in out.with_suffix(".md").read_text()
    assert "skipped rnnjax-parallel" in capsys.readouterr().out


def test_interleaved_refuses_a_peer_outside_jax(tmp_path, capsys):
    from benchmarks import interleaved

    with pytest.raises(SystemExit):
        interleaved.main(
            [
                "--kind",
                "lstm",
                "--impls",
                "rnnjax",
                "torch",
                "--seq-lens",
                "1",
                "--batch",
                "2",
                "--input",
                "3",
                "--hidden",
                "4",
                "--reps",
                "1",
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
    assert "--impls: 'torch' is not" in capsys.readouterr().err  # not a JAX implementation, or not installed


def test_loss_check_without_rnnjax_compares_with_the_first_implementation():
    recs = [
        {"impl": "flax", "name": "flax", "kind": "lstm", "T": 4, "loss": 1.0},
        {"impl": "equinox", "name": "eqx", "kind": "lstm", "T": 4, "loss": 1.5},
        {"impl": "equinox", "name": "eqx", "kind": "lstm", "T": 8, "loss": 2.0},
        {"impl": "rnnjax", "name": "rnnjax", "kind": "lstm", "T": 8, "loss": 2.0},
        {"impl": "torch", "kind": "lstm", "error": "timed out after 1800 s"},
    ]  # no T, no loss
    assert run.check_losses(recs, rtol=1e-3) == ["eqx lstm T=4: loss 1.5 vs flax 1.0"]
    assert recs[2]["loss_rel_diff"] == {"vs": "rnnjax", "rel": 0.0}


def test_tiny_matrix_cell_run(tmp_path):
    """The matrix-memory variants (sequential, chunk sizes, quadratic) run and agree, so a long run cannot
    fail on a typo; the quadratic form stops at MAX_SEQ_LEN."""
    out = tmp_path / "matrix.json"
    args = ["--kinds", "deltanet", "--impls", "rnnjax", "rnnjax-seq", "rnnjax-chunk16", "rnnjax-parallel"]
    args += ["--seq-lens", "5", "9", "--batch", "2", "--input", "3", "--hidden", "8", "--reps", "2"]
    assert run.main([*args, "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["loss_check"] == "all implementations agree"
    measured = {(r["impl"], r["T"]) for r in result["records"] if "train" in r}
    assert {(i, T) for i in ("rnnjax", "rnnjax-seq", "rnnjax-chunk16", "rnnjax-parallel") for T in (5, 9)} <= measured
    assert run.seq_lens_for("rnnjax-parallel", "deltanet", [256, 4096, 16384]) == [256, 4096]


@pytest.mark.slow  # 95 s of CPU; run before lending a GPU its one prepared command
def test_accelerator_check_tiny_runs_every_step(tmp_path):
    """`python -m benchmarks.accelerator --tiny`: the GPU check's code paths at toy sizes on the CPU."""
    from benchmarks import accelerator

    out = tmp_path / "tiny.json"
    assert accelerator.main(["--tiny", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["tests"]["returncode"] == 0 and "passed" in result["tests"]["summary"]
    assert "passed" in (tmp_path / "tiny-tests.txt").read_text()  # pytest's whole output, tracebacks and all
    det = result["determinism"]
    assert det["identical"] and len(det["digests"][0]) == 64  # two sha256 digests, equal
    assert result["loss_check"] == "all implementations agree"
    timed = {(r["section"], r["dtype"]) for r in result["records"] if "train" in r}
    assert timed == {(s, d) for s, _, _ in accelerator.SWEEP for d in ("float32", "bfloat16")}
    md = out.with_suffix(".md").read_text()
    assert "## float32" in md and "## bfloat16" in md
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(
        f"tiny-{d}-{kinds[0]}.png" for _, kinds, _ in accelerator.SWEEP for d in ("float32", "bfloat16")
    )


def test_accelerator_sweep_order_measures_every_section_first():
    """When the GPU's minutes run out, each section has measured its first cell (the one its default is
    decided on): the first GPU run, in section order, spent its whole budget on the LSTM."""
    from benchmarks import accelerator

    order = [(section, kinds[0]) for section, kinds, _ in accelerator.by_priority(accelerator.SWEEP)]
    assert sorted(order) == sorted((s, k) for s, kinds, _ in accelerator.SWEEP for k in kinds)  # each once
    assert order[: len(accelerator.SWEEP)] == [(s, kinds[0]) for s, kinds, _ in accelerator.SWEEP]


def test_accelerator_determinism_check_fails_when_a_run_fails(monkeypatch):
    from benchmarks import accelerator

    class Failed:
        returncode, stdout, stderr = 1, "", "boom"

    monkeypatch.setattr(accelerator.subprocess, "run", lambda *a, **k: Failed())
    assert accelerator.check_determinism("cpu", timeout=1)["identical"] is False


@pytest.mark.parametrize("cell", ["lru", "gla"])
def test_sequence_parallel_benchmark_tiny(tmp_path, cell):
    from benchmarks import sequence_parallel

    out = tmp_path / "sp.json"
    assert sequence_parallel.main(["--tiny", "--cell", cell, "--devices", "1", "2", "--out", str(out)]) == 0
    records = json.loads(out.read_text())["records"]
    assert {(r["devices"], r["T"]) for r in records} == {(p, T) for p in (1, 2) for T in (64, 128)}
    by = {(r["devices"], r["T"]): r for r in records}
    # the point of sharding time: each device holds less than one device holding all of it
    assert by[(2, 128)]["bytes_per_device"] < by[(1, 128)]["bytes_per_device"]
    assert "| 128 |" in out.with_suffix(".md").read_text()
