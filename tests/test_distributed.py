"""Data parallelism on forced host devices and on two processes over loopback.

Device count is fixed when a process starts JAX, so each scenario runs in a
subprocess with `--xla_force_host_platform_device_count`. Tolerance: the
8-device all-reduce sums gradients in a different order than one device, so
parameters may differ by float32 rounding; we allow rtol 1e-4, atol 1e-6 after
the run (measured: identical to the last digit of the printed loss).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import numpy as np
import pytest

from experiments import train as train_lib

ROOT = Path(__file__).resolve().parents[1]
SETS = ["steps=8", "batch_size=16", "checkpoint_every=4", "eval_every=4", "log_every=1"]


def _run_python(code: str, devices: int, tmp_path: Path) -> str:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _train_code(workdir: Path, devices, stop_after=None, resume=False) -> str:
    return f"""
        from experiments import config as c, train as t
        cfg = c.resolve("adding", smoke=True, sets={SETS!r})
        t.train(cfg, {str(workdir)!r}, progress=False, plot=False, devices={devices!r},
                stop_after={stop_after!r}, resume={resume!r}, overwrite={not resume!r})
    """


def _losses(workdir: Path) -> np.ndarray:
    return np.array([r["loss"] for r in train_lib.read_metrics(workdir / "metrics.jsonl") if r["split"] == "train"])


def _params(workdir: Path):
    return train_lib.load_run(workdir)[3]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one") / "run"
    _run_python(_train_code(workdir, None), 1, workdir.parent)
    return workdir


def test_eight_devices_equal_one_device(one_device_run, tmp_path):
    _run_python(_train_code(tmp_path / "eight", 8), 8, tmp_path)
    np.testing.assert_allclose(_losses(tmp_path / "eight"), _losses(one_device_run), rtol=1e-5)
    chex.assert_trees_all_close(_params(tmp_path / "eight"), _params(one_device_run), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("save_on,restore_on", [(8, 1), (1, 4)])
def test_checkpoint_saved_on_n_devices_restores_on_m(one_device_run, tmp_path, save_on, restore_on):
    workdir = tmp_path / "run"
    _run_python(_train_code(workdir, save_on, stop_after=5), 8, tmp_path)  # checkpoint at step 4, stopped at 5
    _run_python(_train_code(workdir, restore_on, resume=True), 8, tmp_path)
    np.testing.assert_allclose(_losses(workdir), _losses(one_device_run), rtol=1e-5)
    chex.assert_trees_all_close(_params(workdir), _params(one_device_run), rtol=1e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_over_loopback_equal_one_device(one_device_run, tmp_path):
    """jax.distributed with 2 processes (1 CPU device each): the same run as one device."""
    port, workdir = _free_port(), tmp_path / "mp"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments",
                "train",
                "adding",
                "--smoke",
                "--set",
                *SETS,
                "--quiet",
                "--devices",
                "-1",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(pid),
                "--workdir",
                str(workdir),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    np.testing.assert_allclose(_losses(workdir), _losses(one_device_run), rtol=1e-5)
    chex.assert_trees_all_close(_params(workdir), _params(one_device_run), rtol=1e-4, atol=1e-6)


def test_batch_not_divisible_by_devices_is_a_clear_error(tmp_path):
    code = f"""
        from experiments import config as c, train as t
        cfg = c.resolve("adding", smoke=True, sets=["batch_size=12"])
        try:
            t.train(cfg, {str(tmp_path / "x")!r}, progress=False, devices=8)
        except ValueError as e:
            print(e)
    """
    assert "batch_size 12 must be divisible by the number of devices 8" in _run_python(code, 8, tmp_path)


@pytest.mark.parametrize("cell", ["gla", pytest.param("lru", marks=pytest.mark.slow)])
def test_time_split_over_devices_equals_one_device(tmp_path, cell):
    """charlm_long on a 2 x 2 mesh, the time axis split over `seq`, with a matrix-memory cell (GLA: the
    chunkwise form) and (slow) its own LRU (the parallel scan): the same losses, evaluation and
    parameters as on one device (float32; the psum adds the slices' sums in another order)."""
    one, split = tmp_path / "one", tmp_path / "split"
    code = f"""
        from experiments import config as c, train as t
        sets = ["steps=4", "eval_every=2", "checkpoint_every=2", "cell={cell}"]
        cfg = c.resolve("charlm_long", smoke=True, sets=sets)
        t.train(cfg, {str(one)!r}, progress=False, plot=False)
        s = t.train(cfg, {str(split)!r}, progress=False, plot=False, devices=4, seq_devices=2)
        assert s["devices"] == 4 and s["seq_devices"] == 2, s
    """
    _run_python(code, 4, tmp_path)
    records = [train_lib.read_metrics(w / "metrics.jsonl") for w in (one, split)]
    assert [(r["step"], r["split"]) for r in records[0]] == [(r["step"], r["split"]) for r in records[1]]
    for a, b in zip(*records, strict=True):
        for key in ("loss", "accuracy"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=f"{key} at step {a['step']} ({a['split']})")
    chex.assert_trees_all_close(_params(split), _params(one), rtol=1e-4, atol=1e-6)


def test_time_split_errors_say_what_is_wrong(tmp_path):
    code = f"""
        from experiments import config as c, train as t
        cases = {{
            "divisor": ("charlm_long", [], 3),
            "cell": ("charlm", [], 2),
            "readout": ("sentiment", ["cell=lru"], 2),
            "seq_len": ("charlm_long", ["seq_len=65"], 2),
        }}
        for name, (experiment, sets, seq) in cases.items():
            cfg = c.resolve(experiment, smoke=True, sets=sets)
            try:
                t.train(cfg, {str(tmp_path)!r} + "/" + name, progress=False, devices=4, seq_devices=seq)
                print(name, "| no error")
            except c.ConfigError as e:
                print(name, "|", e)
    """
    out = dict(line.split(" | ", 1) for line in _run_python(code, 4, tmp_path).splitlines() if " | " in line)
    assert "--seq-devices 3: must be a positive divisor of the device count 4" in out["divisor"]
    assert "cell 'lstm' has no parallel or chunkwise form" in out["cell"]
    assert "reads out 'last', not a loss at every step" in out["readout"]
    assert "has 65 steps, not divisible by 2" in out["seq_len"]
