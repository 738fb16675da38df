"""Shared fixtures. float64 tests run inside `jax.enable_x64(True)` so x64 never leaks.

The suite compiles for speed of compilation (`SUITE_XLA_FLAGS`, set here before JAX starts its
backend and passed on to every subprocess a test starts): XLA's CPU backend at optimisation level 0
(LLVM spends less time on the machine code) and its older elemental emitters for fusions instead of
the MLIR fusion emitters. The HLO programs are the same; the tests hold one computation to another,
not speed, and most of their time is XLA compiling small programs. Measured on 2026-12-08 (2-core
AMD EPYC): the contract's checks of two cells 127 s -> 93 s at level 0; RWKV-7's wrapper check
17.1 s -> 8.8 s with the elemental emitters beside it (both runs beside one training run). The
benchmarks, the experiments and
`make demo` compile with XLA's defaults.
"""

from __future__ import annotations

import os

SUITE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SUITE_XLA_FLAGS}".strip()

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them once, when it starts)
import pytest  # noqa: E402


@pytest.fixture
def x64():
    """Run the test body with 64-bit types on; restored afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _x64_does_not_leak():
    """Every test starts and ends with x64 off, whatever the previous test did."""
    assert not jax.config.jax_enable_x64, "jax_enable_x64 leaked from an earlier test"
    yield
    assert not jax.config.jax_enable_x64, "this test left jax_enable_x64 switched on"


@pytest.fixture
def small_blocks(monkeypatch):
    """Sequence kernels split hidden units into two blocks from H = 2 on, so that small test
    sizes run the blocked layout (by default they get one block below `BLOCKED_FROM` = 256)."""
    from rnnjax._kernels import layout

    monkeypatch.setattr(layout, "BLOCKED_FROM", 2)


@pytest.fixture
def lower_for_gpu():
    """`lower(fn, *args)`: lower `jax.jit(fn)` for an NVIDIA H200 on this machine, without one.

    Pallas's Triton lowering runs in Python, so a kernel that Triton would
    refuse on the GPU (a block whose size is not a power of two, an
    unsupported primitive) raises here, on the CPU. `args` may be
    `jax.ShapeDtypeStruct`s. Skips where JAX has no abstract devices.
    """
    try:
        from jax._src.mesh import AbstractDevice, AbstractMesh
    except ImportError:  # pragma: no cover - older or newer JAX
        pytest.skip("this JAX has no AbstractDevice to lower for a GPU without one")
    mesh = AbstractMesh((1,), ("x",), abstract_device=AbstractDevice("NVIDIA H200", 132, "gpu"))

    def lower(fn, *args):
        with jax.sharding.use_abstract_mesh(mesh):
            return jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))

    return lower


def pytest_terminal_summary(terminalreporter):
    """How many contract checks ran, passed and were skipped per cell (tests/test_cell_contract.py::test_contract)."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "test_cell_contract.py::test_contract[" not in nodeid or report.when not in ("call", "setup"):
                continue
            if outcome == "skipped" and report.when != "setup" or outcome != "skipped" and report.when != "call":
                continue
            cell = nodeid.split("[", 1)[1].split("-", 1)[0]
            counts.setdefault(cell, {"passed": 0, "failed": 0, "skipped": 0})[outcome] += 1
    if counts:
        terminalreporter.section("cell contract: checks per cell")
        for cell in sorted(counts):
            c = counts[cell]
            ran = c["passed"] + c["failed"]
            terminalreporter.write_line(f"{cell:16s} ran {ran:2d} ({c['failed']} failed), skipped {c['skipped']}")
