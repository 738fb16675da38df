"""Shared fixtures. float64 tests run inside `jax.enable_x64(True)` so x64 never leaks."""

from __future__ import annotations

import jax
import pytest


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
    from rnnjax.kernels import layout

    monkeypatch.setattr(layout, "BLOCKED_FROM", 2)
