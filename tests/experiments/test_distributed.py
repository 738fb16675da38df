"""Data parallelism on forced host devices and on two processes over loopback.

Device count is fixed when a process starts JAX, so each scenario runs the
trainer's command line (`python -m experiments train ...`) in a subprocess with
`--xla_force_host_platform_device_count`. Tolerance: the 8-device all-reduce
sums gradients in a different order than one device, so parameters may differ
by float32 rounding; we allow rtol 1e-4, atol 1e-6 after the run (measured:
identical to the last digit of the printed loss).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import pytest

from experiments import train as train_lib

ROOT = Path(__file__).resolve().parents[2]
SETS = ["steps=8", "batch_size=16", "checkpoint_every=4", "eval_every=4", "log_every=1"]


def _env(devices: int | None) -> dict:
    """The suite's environment (its XLA_FLAGS included, tests/conftest.py) on `devices` forced CPU devices."""
    flags = os.environ.get("XLA_FLAGS", "") + (f" --xla_force_host_platform_device_count={devices}" if devices else "")
    return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags.strip()}


def _train(experiment: str, workdir: Path, *flags: str, sets=(), host_devices: int = 1, ok: bool = True) -> str:
    """`python -m experiments train EXPERIMENT --smoke` on `host_devices` forced CPU devices; its stderr."""
    cmd = [sys.executable, "-m", "experiments", "train", experiment, "--smoke", "--quiet", "--no-plot"]
    cmd += ["--workdir", str(workdir), "--set", *sets, *flags]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(host_devices), capture_output=True, text=True, timeout=600)
    assert (out.returncode == 0) == ok, out.stderr[-3000:]
    return out.stderr


def _adding(workdir: Path, devices: int | None, *flags: str) -> None:
    """The `adding` smoke run of `SETS` on 8 host devices, trained on `devices` of them (None: one)."""
    _train("adding", workdir, *(["--devices", str(devices)] if devices else []), *flags, sets=SETS, host_devices=8)


def _losses(workdir: Path) -> np.ndarray:
    return np.array([r["loss"] for r in train_lib.read_metrics(workdir / "metrics.jsonl") if r["split"] == "train"])


def _params(workdir: Path):
    return train_lib.load_run(workdir)[3]


@pytest.fixture(scope="module")
def one_device_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one") / "run"
    _adding(workdir, None)
    return workdir


def test_eight_devices_equal_one_device(one_device_run, tmp_path):
    _adding(tmp_path / "eight", 8)
    np.testing.assert_allclose(_losses(tmp_path / "eight"), _losses(one_device_run), rtol=1e-5)
    chex.assert_trees_all_close(_params(tmp_path / "eight"), _params(one_device_run), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("save_on,restore_on", [(8, 1), (1, 4)])
def test_checkpoint_saved_on_n_devices_restores_on_m(one_device_run, tmp_path, save_on, restore_on):
    workdir = tmp_path / "run"
    _adding(workdir, save_on, "--stop-after", "5")  # checkpoint at step 4, stopped at 5
    _adding(workdir, restore_on, "--resume")
    np.testing.assert_allclose(_losses(workdir), _losses(one_device_run), rtol=1e-5)
    chex.assert_trees_all_close(_params(workdir), _params(one_device_run), rtol=1e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_over_loopback_equal_one_device(one_device_run, tmp_path):
    """jax.distributed with 2 processes (1 CPU device each): the same run as one device."""
    port, workdir = _free_port(), tmp_path / "mp"
    cmd = [sys.executable, "-m", "experiments", "train", "adding", "--smoke", "--set", *SETS, "--quiet", "--no-plot"]
    cmd += ["--devices", "-1", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--workdir", str(workdir)]
    procs = [
        subprocess.Popen(
            [*cmd, "--process-id", str(pid)],
            cwd=ROOT,
            env=_env(None),
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
    err = _train("adding", tmp_path / "x", "--devices", "8", sets=["batch_size=12"], host_devices=8, ok=False)
    assert "batch_size 12 must be divisible by the number of devices 8" in err


@pytest.mark.parametrize("cell", ["gla", pytest.param("lru", marks=pytest.mark.slow)])
def test_time_split_over_devices_equals_one_device(tmp_path, cell):
    """charlm_long on a 2 x 2 mesh, the time axis split over `seq`, with a matrix-memory cell (GLA: the
    chunkwise form) and (slow) its own LRU (the parallel scan): the same losses, evaluation and
    parameters as on one device (float32; the psum adds the slices' sums in another order)."""
    one, split = tmp_path / "one", tmp_path / "split"
    sets = ["steps=4", "eval_every=2", "checkpoint_every=2", f"cell={cell}"]
    _train("charlm_long", one, sets=sets)
    _train("charlm_long", split, "--devices", "4", "--seq-devices", "2", sets=sets, host_devices=4)
    summary = json.loads((split / "summary.json").read_text())
    assert summary["devices"] == 4 and summary["seq_devices"] == 2, summary
    records = [train_lib.read_metrics(w / "metrics.jsonl") for w in (one, split)]
    assert [(r["step"], r["split"]) for r in records[0]] == [(r["step"], r["split"]) for r in records[1]]
    for a, b in zip(*records, strict=True):
        for key in ("loss", "accuracy"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=f"{key} at step {a['step']} ({a['split']})")
    chex.assert_trees_all_close(_params(split), _params(one), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "experiment, sets, seq_devices, message",
    [
        ("charlm_long", [], 3, "--seq-devices 3: must be a positive divisor of the device count 4"),
        ("charlm", [], 2, "cell 'lstm' has no parallel or chunkwise form"),
        ("sentiment", ["cell=lru"], 2, "reads out 'last', not a loss at every step"),
        ("charlm_long", ["seq_len=65"], 2, "has 65 steps, not divisible by 2"),
    ],
)
def test_time_split_errors_say_what_is_wrong(tmp_path, experiment, sets, seq_devices, message):
    flags = ("--devices", "4", "--seq-devices", str(seq_devices))
    assert message in _train(experiment, tmp_path / "run", *flags, sets=sets, host_devices=4, ok=False)
