"""The time axis sharded over devices (`unroll(..., method=rnnjax.Sharded(axis_name))` inside `jax.shard_map`)
against the single-device unroll, on forced host devices, in float64.

The device count is fixed when a process starts JAX, so each count runs in a subprocess with
`--xla_force_host_platform_device_count`; the subprocess checks every linear cell with lengths,
resets, reverse and a given initial carry, and prints the largest errors as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import rnnjax

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import json, os
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
import rnnjax

jax.config.update("jax_enable_x64", True)
devices = np.array(jax.devices())
n = len(devices)
mesh = Mesh(devices, ("seq",))
T, B, I = 4 * n, 3, 5
NAMES = json.loads(os.environ["RNNJAX_CELLS"])
CONFIGS = {s.name: ({"hidden_size": 6} if s.has_linear_form else dict(s.example)) for s in rnnjax.cells.specs()}
out = {}
to64 = lambda a: a.astype(jnp.complex128 if jnp.iscomplexobj(a) else jnp.float64)
for name in NAMES:
    cell = rnnjax.cells.get(name, **CONFIGS[name])
    key = jax.random.key(0)
    params = jax.tree_util.tree_map(to64, cell.init(key, I))
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
    h0 = jax.tree_util.tree_map(lambda c: 0.3 + 0.1 * c, cell.initial_carry(params, (B,)))
    if cell.matrix is not None:  # a state of varied entries (and the mLSTM's stabiliser)
        h0 = jax.tree_util.tree_map(lambda c: 0.3 * jax.random.normal(jax.random.key(4), c.shape, c.dtype), h0)
    lengths = jnp.array([T, T - 3, 2])
    resets = jnp.zeros((T, B), bool).at[5, 0].set(True).at[4 * (n // 2), 1].set(True).at[1, 2].set(True)
    worst = {"ys": 0.0, "carry": 0.0, "grad": 0.0}
    w = jax.random.normal(jax.random.key(2), (T, B, cell.output_size), jnp.float64)
    for reverse, use_resets in ((False, True), (True, True)):  # with resets=None the reset code is skipped
        kw = dict(lengths=lengths, reverse=reverse)

        def single(params, xs, h0):
            r = resets if use_resets else None
            return rnnjax.unroll(cell, params, xs, initial_carry=h0, method=rnnjax.Scan(), resets=r, **kw)

        def sharded(params, xs, h0):
            def body(xs_local, resets_local):
                r = resets_local if use_resets else None
                # matrix cells: chunks of 3 steps, so a slice of 4 holds a full chunk and a padded one
                method = rnnjax.Sharded("seq", rnnjax.Chunkwise(3) if cell.matrix is not None else None)
                return rnnjax.unroll(cell, params, xs_local, initial_carry=h0, resets=r, method=method, **kw)

            spec = P("seq")
            mapped = jax.shard_map(body, mesh=mesh, in_specs=(spec, spec), out_specs=(P(), spec), check_vma=False)
            return mapped(xs, resets)

        def loss(run):
            # on the outputs and the final carry (its real part: the LRU's carry is complex); outputs as aux
            def f(p, x, h):
                c, y = run(p, x, h)
                leaves = jax.tree_util.tree_leaves(c)
                return jnp.sum(w * y) + sum(jnp.sum(jnp.real(jnp.sin(a))) for a in leaves), (c, y)

            return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

        (_, (c1, y1)), g1 = loss(single)(params, xs, h0)
        (_, (c2, y2)), g2 = loss(sharded)(params, xs, h0)
        worst["ys"] = max(worst["ys"], float(jnp.max(jnp.abs(y1 - y2))))
        for a, b in zip(jax.tree_util.tree_leaves(c1), jax.tree_util.tree_leaves(c2)):
            worst["carry"] = max(worst["carry"], float(jnp.max(jnp.abs(a - b))))
        for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
            scale = max(float(jnp.max(jnp.abs(a))), 1.0)
            worst["grad"] = max(worst["grad"], float(jnp.max(jnp.abs(a - b))) / scale)
    out[name] = worst

# a 2-D mesh: batch over "data", time over "seq", gradients reduced over both
if n >= 4:
    mesh2 = Mesh(devices.reshape(2, n // 2), ("data", "seq"))
    cell = rnnjax.cells.get("lru", hidden_size=6)
    params = jax.tree_util.tree_map(to64, cell.init(jax.random.key(0), I))
    xs = jax.random.normal(jax.random.key(3), (2 * (n // 2), 4, I), jnp.float64)
    lengths = jnp.array([xs.shape[0], 3, 1, xs.shape[0] - 1])

    def loss_single(p):
        return jnp.mean(rnnjax.unroll(cell, p, xs, lengths=lengths)[1] ** 2)

    def loss_2d(p):
        def body(xs_l, len_l):
            _, ys = rnnjax.unroll(cell, p, xs_l, lengths=len_l, method=rnnjax.Sharded("seq"))
            return jax.lax.psum(jnp.sum(ys**2), ("data", "seq"))

        total = jax.shard_map(
            body, mesh=mesh2, in_specs=(P("seq", "data"), P("data")), out_specs=P(), check_vma=False
        )(xs, lengths)
        return total / (xs.shape[0] * xs.shape[1] * cell.output_size)

    l1, g1 = jax.value_and_grad(loss_single)(params)
    l2, g2 = jax.jit(jax.value_and_grad(loss_2d))(params)
    out["mesh2d"] = {
        "loss": abs(float(l1 - l2)),
        "grad": max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*map(jax.tree_util.tree_leaves, (g1, g2)))),
    }
print(json.dumps(out))
"""


def _run(devices: int, cells: list[str]) -> dict:
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
        "RNNJAX_CELLS": json.dumps(cells),
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
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
    """Every linear cell (the parallel scan's summaries)."""
    _check(_run(devices, LINEAR), LINEAR, devices)


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
    one cell per kind of map in `make test` (GLA: decay and write; the mLSTM: stabilised; Gated
    DeltaNet: the delta rule's transition), every one under `-m slow`."""
    assert MATRIX, "no matrix-memory cell is registered"
    cells = MATRIX if devices != 3 else ["gla", "mlstm", "gated_deltanet"]
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
