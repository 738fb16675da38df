"""Manual BPTT (NumPy float64, rnnjax.reference) vs jax.vjp of rnnjax.unroll.

The grid is the foundation issue's (12 of its 32 cases per cell in the default
suite, all with `-m slow`; see `_in_default_suite`): T in (1, 2, 7, 50), hidden sizes (1, 4,
16; 2, 4 and 8 units per head for multi-head cells), batch
shapes ((), (3,)), with and without lengths, for every registered
cell that has a reference. float64 must agree to 1e-10 relative on every leaf
(outputs, final carry, and the gradients of every parameter, the initial carry
and the inputs); float32 within 1e-4.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import reference
from rnnjax.cells import registry
from rnnjax.gradcheck import grid_cases, reference_agreement

REFERENCED = [s.name for s in registry.specs() if s.reference is not None]


def _case_id(case):
    return f"T{case['T']}-H{case['hidden_size']}-B{case['batch_shape']}-{'len' if case['lengths'] else 'full'}"


def _in_default_suite(name, case) -> bool:
    """(T, hidden) on the grid's diagonal (short and small, medium and large, long and middle), every batch
    shape and lengths setting: 12 of the 32 cases per cell run by default, all 32 with `-m slow`."""
    sizes = sorted({c["hidden_size"] for c in grid_cases(name)})
    return (case["T"], case["hidden_size"]) in {(1, sizes[0]), (7, sizes[-1]), (50, sizes[1])}


GRID = [
    pytest.param(
        name, case, id=f"{name}-{_case_id(case)}", marks=() if _in_default_suite(name, case) else pytest.mark.slow
    )
    for name in REFERENCED
    for case in grid_cases(name)
]


@pytest.mark.parametrize("name, case", GRID)
def test_float64_manual_bptt_equals_autodiff(x64, name, case):
    errors = reference_agreement(name, dtype=jnp.float64, **case)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= registry.spec(name).float64.rtol, f"{worst}: {errors[worst]:.2e}; all: {errors}"


@pytest.mark.parametrize("T", [7, 50])
@pytest.mark.parametrize("name", REFERENCED)
def test_float64_reverse_with_lengths(x64, name, T):
    errors = reference_agreement(name, T=T, hidden_size=4, batch_shape=(3,), lengths=True, reverse=True, seed=1)
    assert max(errors.values()) <= registry.spec(name).float64.rtol, errors


# the options the registered examples leave at their defaults, each against the same reference
OPTIONS = [
    ("deltanet", {"negative_eigenvalues": True}),
    ("gated_deltanet", {"num_heads": 1, "num_value_heads": 2}),
    ("kda", {"num_heads": 1, "num_value_heads": 2, "negative_eigenvalues": True}),
    ("gated_deltaproduct", {"householder": 3, "negative_eigenvalues": True}),
    ("gated_deltaproduct", {"householder": 1}),
]


@pytest.mark.parametrize("name, options", OPTIONS, ids=[f"{n}-{'-'.join(o)}" for n, o in OPTIONS])
def test_float64_options_of_the_delta_family(x64, name, options):
    errors = reference_agreement(
        name, T=9, hidden_size=8, batch_shape=(3,), lengths=True, reverse=True, seed=3, **options
    )
    assert max(errors.values()) <= registry.spec(name).float64.rtol, errors


@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("name", REFERENCED)
def test_float32_autodiff_within_1e4_of_float64_reference(name, lengths):
    errors = reference_agreement(
        name, T=50, hidden_size=16, batch_shape=(3,), lengths=lengths, dtype=jnp.float32, seed=2
    )
    assert max(errors.values()) <= 1e-4, errors


def test_reference_lstm_matches_finite_differences_of_itself():
    """The oracle is checked independently of JAX: central differences of its own forward pass."""
    rng = np.random.default_rng(0)
    I, H, T = 2, 3, 4
    params = {"w_x": rng.normal(size=(I, 4 * H)), "w_h": rng.normal(size=(H, 4 * H)) / 2, "b": rng.normal(size=4 * H)}
    xs, h0, c0 = rng.normal(size=(T, I)), rng.normal(size=H), rng.normal(size=H)
    dys, dh, dc = rng.normal(size=(T, H)), rng.normal(size=H), rng.normal(size=H)

    def loss(p):
        out = reference.lstm(p, xs, (h0, c0), dys, (dh, dc))
        return np.sum(out.ys * dys) + out.carry[0] @ dh + out.carry[1] @ dc

    grads = reference.lstm(params, xs, (h0, c0), dys, (dh, dc)).d_params
    eps = 1e-6
    for key, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {**params, key: value.copy()}
            minus = {**params, key: value.copy()}
            plus[key][idx] += eps
            minus[key][idx] -= eps
            numeric[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-8)


def test_relative_error_reads_a_zero_reference_absolutely():
    """A reference leaf that is zero up to rounding (LSTM-with-layer-norm's d c_0 at one hidden unit:
    a layer norm over one unit is constant) is compared absolutely; anything larger relatively."""
    from rnnjax.gradcheck import relative_error

    assert relative_error(np.array([0.0, -4.4e-16]), np.array([-4.7e-17, -4.0e-16])) < 1e-15
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 2e-9])) == pytest.approx(1e-9, rel=1e-3)
    assert relative_error(np.array([1e-11]), np.array([2e-11])) == pytest.approx(0.5)  # above the floor: relative


def test_lstm_layernorm_refuses_one_unit():
    """What the CLI's full grid caught (T = 50, one hidden unit): a layer norm over one unit is constant, the
    cell state's gradient is rounding noise amplified by 1/sqrt(eps), so the cell refuses the size."""
    import rnnjax

    with pytest.raises(ValueError, match="layer_norm=True needs hidden_size >= 2"):
        rnnjax.cells.get("lstm_layernorm", hidden_size=1)
    rnnjax.cells.get("lstm", hidden_size=1)  # without the layer norm one unit is fine
