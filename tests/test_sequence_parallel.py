"""The time axis sharded over devices (`unroll(..., method=rnnjax.Sharded(axis_name))` inside `jax.shard_map`)
against the single-device unroll, on forced host devices, in float64.

The device count is fixed when a process starts JAX, so each count runs the worker
tests/workers/sequence_parallel.py in a subprocess with `--xla_force_host_platform_device_count`;
it checks each cell with lengths, resets, reverse and a given initial carry, and prints the largest
errors as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import rnnjax

ROOT = Path(__file__).resolve().parents[1]

WORKER = Path(__file__).resolve().parent / "workers" / "sequence_parallel.py"


def _run(devices: int, cells: list[str]) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, str(WORKER), *cells], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LINEAR = [s.name for s in rnnjax.cells.specs() if s.has_linear_form]
MATRIX = [s.name for s in rnnjax.cells.specs() if s.has_matrix_form]


def _check(result: dict, cells: list[str], devices: int) -> None:
    assert sorted(k for k in result if k != "mesh2d") == sorted(cells)
    for name in cells:
        worst = result[name]
        assert worst["ys"] <= 1e-10 and worst["carry"] <= 1e-10, (name, worst)
        assert worst["grad"] <= 1e-9, (name, worst)
    if devices >= 4:
        assert result["mesh2d"]["loss"] <= 1e-12 and result["mesh2d"]["grad"] <= 1e-10, result["mesh2d"]


@pytest.mark.parametrize(
    "devices", [pytest.param(2, marks=pytest.mark.slow), 4, pytest.param(8, marks=pytest.mark.slow)]
)
def test_sharded_time_axis_equals_one_device(devices):
    """The linear cells (the parallel scan's summaries): in `make test` one per kind of transition (minGRU:
    real, one per unit; the LRU: complex; S6: input-dependent, one per unit and state dimension), every one
    under `-m slow`."""
    cells = LINEAR if devices != 4 else ["mingru", "lru", "s6"]
    _check(_run(devices, cells), cells, devices)


@pytest.mark.parametrize(
    "devices",
    [
        pytest.param(2, marks=pytest.mark.slow),
        3,
        pytest.param(4, marks=pytest.mark.slow),
        pytest.param(8, marks=pytest.mark.slow),
    ],
)
def test_sharded_time_axis_equals_one_device_matrix_cells(devices):
    """The matrix-memory cells (the chunkwise form's maps of the state), on an odd device count too:
    one cell per kind of map and algorithm in `make test` (GLA: decay and write; the mLSTM: stabilised;
    Gated DeltaNet: the delta rule's transition by the UT transform; RWKV-7: the general algorithm's),
    every one under `-m slow`."""
    assert MATRIX, "no matrix-memory cell is registered"
    cells = MATRIX if devices != 3 else ["gla", "mlstm", "gated_deltanet", "rwkv7"]
    _check(_run(devices, cells), cells, devices)


def test_cells_without_a_parallel_form_get_a_clear_error():
    xs = jnp.zeros((4, 2, 3))
    cell = rnnjax.cells.get("lstm", hidden_size=4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(
        ValueError,
        match=r"method=Sharded\(axis_name='seq'\) needs a cell with a linear recurrence .* or a matrix "
        r"memory.*cell 'lstm' has neither; methods for it: Scan\(\)",
    ):
        rnnjax.unroll(cell, params, xs, method=rnnjax.Sharded("seq"))
    with pytest.raises(TypeError, match=r"`inner` must be LinearScan\(\), Chunkwise\(...\) or None, got Scan"):
        rnnjax.Sharded("seq", rnnjax.Scan())
    with pytest.raises(ValueError, match="`inner` runs XLA's implementation only"):
        rnnjax.Sharded("seq", rnnjax.LinearScan("pallas"))
    cell = rnnjax.cells.get("lru", hidden_size=4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"needs a cell with a matrix memory \(MatrixRecurrence\), and cell 'lru' has"):
        rnnjax.unroll(cell, params, xs, method=rnnjax.Sharded("seq", rnnjax.Chunkwise(2)))
    cell = rnnjax.cells.get("gla", hidden_size=4, num_heads=2)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"cell 'gla' is a matrix-memory cell; use inner=Chunkwise\(...\)"):
        rnnjax.unroll(cell, params, xs, method=rnnjax.Sharded("seq", rnnjax.LinearScan()))
