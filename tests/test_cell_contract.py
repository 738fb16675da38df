"""Every check of `rnnjax.contract` over every registered cell, and the registry's coverage.

A cell registered anywhere runs through every check here with nothing else to
edit, in the manner of haiku's RNN core descriptors.
"""

from __future__ import annotations

import inspect
import pkgutil

import pytest

import rnnjax
from rnnjax import contract
from rnnjax.cells import registry


def _contract_cases():
    """(cell, check) pairs; a check that does not apply to a cell is a skip with its reason, never a pass."""
    cases = []
    for name in registry.names():
        spec = registry.spec(name)
        for check in contract.CHECKS:
            reason = contract.not_applicable(check, spec)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            cases.append(pytest.param(name, check, marks=marks, id=f"{name}-{check.__name__.removeprefix('check_')}"))
    return cases


@pytest.mark.parametrize(("name", "check"), _contract_cases())
def test_contract(name, check):
    check(registry.spec(name))


def test_a_check_that_does_not_apply_raises_instead_of_passing():
    """Called directly (outside the parametrisation), a form check on a cell without the form does not pass."""
    with pytest.raises(contract.NotApplicable, match="gru has no LinearRecurrence form"):
        contract.check_parallel_scan_equals_sequential(registry.spec("gru"))
    results = contract.run(registry.spec("gru"), [contract.check_parallel_scan_equals_sequential])
    reason = "skipped: gru has no LinearRecurrence form (LinearScan)"
    assert results == {"parallel_scan_equals_sequential": reason}


def test_at_least_ten_cells_and_the_linear_and_matrix_ones_are_marked():
    assert len(registry.names()) >= 10
    linear = {s.name for s in registry.specs() if s.has_linear_form}
    assert linear == {"mingru", "minlstm", "lru", "rglru", "s5", "s6"}
    matrix = {s.name for s in registry.specs() if s.has_matrix_form}
    assert matrix == {"mlstm", "gla", "ssd", "deltanet", "gated_deltanet", "kda", "rwkv7", "gated_deltaproduct"}


def test_every_exported_factory_is_registered():
    """Coverage: a cell factory exported from rnnjax.cells must be in the registry."""
    api = {"get", "names", "register", "spec", "specs", "unregister", "wrap"}
    registered = {spec.factory for spec in registry.specs()}
    for attr in rnnjax.cells.__all__:
        obj = getattr(rnnjax.cells, attr)
        if attr in api or not inspect.isfunction(obj):
            continue
        assert obj in registered, f"rnnjax.cells.{attr} is exported but not registered"


def test_every_cell_module_is_imported_and_registers():
    """Coverage: each file in rnnjax/cells/ is imported by the package and registers a cell."""
    modules = {m.name for m in pkgutil.iter_modules(rnnjax.cells.__path__)} - {"cell", "registry"}
    registered_modules = {spec.factory.__module__.rsplit(".", 1)[-1] for spec in registry.specs()}
    assert modules <= registered_modules, f"cell files that register nothing: {modules - registered_modules}"


def test_a_broken_cell_fails_the_contract():
    """The checks can fail: an Elman cell whose output ignores the params' dtype is caught."""
    import dataclasses

    import jax.numpy as jnp

    def elman_f32_out(hidden_size, *, dtype=jnp.float32, **kw):
        cell = rnnjax.cells.elman(hidden_size, dtype=dtype, **kw)

        def step(p, c, x):
            c, y = cell.step(p, c, x)
            return c, y.astype(jnp.float32)

        return cell._replace(step=step)

    broken = dataclasses.replace(registry.spec("elman"), name="broken", factory=elman_f32_out)
    with pytest.raises(AssertionError, match="output dtype"):
        contract.check_shapes_and_dtypes(broken)


def test_a_cell_without_a_reference_fails_the_contract():
    import dataclasses

    unreferenced = dataclasses.replace(registry.spec("gru"), name="no_reference", reference=None)
    with pytest.raises(AssertionError, match="no_reference: no manual-BPTT reference"):
        contract.check_manual_bptt_equals_autodiff(unreferenced)
