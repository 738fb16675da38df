"""The cell registry: one entry per cell (and per named variant).

The registry is what makes a new cell cheap: registering it is the only step
after writing its file, and from then on the contract tests
(`tests/test_cell_contract.py`) and the benchmarks run over it like every other
cell, with nothing else to edit::

    @register("mycell", example={"hidden_size": 5})
    def mycell(hidden_size, *, dtype=jnp.float32) -> Cell: ...

    rnnjax.cells.get("mycell", hidden_size=64)
    rnnjax.cells.names()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from rnnjax.cells.cell import Cell

# A single-sequence manual-BPTT oracle; see `rnnjax.reference`.
Reference = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Relative/absolute tolerances for comparing two computations of a cell."""

    rtol: float
    atol: float


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """What the shared tests and benchmarks need to know about a registered cell.

    Attributes:
      name: registry name, e.g. `"elman_sigmoid"`.
      factory: the function that builds the cell, e.g. `rnnjax.cells.elman`.
      defaults: keyword arguments this entry fixes (a variant is an entry of
        an existing factory with different defaults, e.g. `activation="sigmoid"`).
      example: small hyperparameters for tests (always includes `hidden_size`).
      reference: a manual-BPTT oracle in NumPy float64 from `rnnjax.reference`
        (called with the cell's config as keyword arguments), or None.
      float32: tolerance for float32 comparisons against float64 truth.
      float64: tolerance for float64 comparisons of two exact computations.
    """

    name: str
    factory: Callable[..., Cell]
    defaults: Mapping[str, Any]
    example: Mapping[str, Any]
    reference: Reference | None
    float32: Tolerance
    float64: Tolerance

    def build(self, **kwargs: Any) -> Cell:
        """The cell with this entry's defaults, overridden by `kwargs`."""
        return self.factory(**{**self.defaults, **kwargs})

    def example_cell(self, **kwargs: Any) -> Cell:
        """The cell at its small example size (what the contract tests use)."""
        return self.build(**{**self.example, **kwargs})

    @property
    def has_linear_form(self) -> bool:
        return self.example_cell().linear is not None

    @property
    def has_matrix_form(self) -> bool:
        return self.example_cell().matrix is not None


_REGISTRY: dict[str, CellSpec] = {}


def register(
    name: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    example: Mapping[str, Any] | None = None,
    reference: Reference | None = None,
    float32: Tolerance = Tolerance(rtol=1e-4, atol=1e-5),
    float64: Tolerance = Tolerance(rtol=1e-10, atol=1e-12),
) -> Callable[[Callable[..., Cell]], Callable[..., Cell]]:
    """Decorator that registers a cell factory under `name`.

    Stack it to register named variants of one factory::

        @register("elman_sigmoid", defaults={"activation": "sigmoid"})
        @register("elman")
        def elman(hidden_size, *, activation="tanh", ...): ...

    Raises:
      ValueError: when `name` is already registered to a different factory.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: `name` must be a non-empty str, got {name!r}")
    example = dict(example or {"hidden_size": 4})
    if "hidden_size" not in example:
        raise ValueError(f"register({name!r}): `example` must include 'hidden_size', got {example}")

    def decorator(factory: Callable[..., Cell]) -> Callable[..., Cell]:
        old = _REGISTRY.get(name)
        if old is not None and old.factory.__qualname__ != factory.__qualname__:
            raise ValueError(
                f"register: cell name {name!r} is already registered to {old.factory.__module__}."
                f"{old.factory.__qualname__}; choose another name"
            )
        _REGISTRY[name] = CellSpec(
            name=name,
            factory=factory,
            defaults=dict(defaults or {}),
            example=example,
            reference=reference,
            float32=float32,
            float64=float64,
        )
        return factory

    return decorator


def unregister(name: str) -> None:
    """Remove `name` from the registry (for cells defined in tests or notebooks)."""
    _REGISTRY.pop(name, None)


def names() -> list[str]:
    """The registered cell names, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> CellSpec:
    """The registry entry for `name`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown cell {name!r}; registered cells: {', '.join(names())}") from None


def specs() -> list[CellSpec]:
    """All registry entries, sorted by name."""
    return [_REGISTRY[n] for n in names()]


def get(name: str, **kwargs: Any) -> Cell:
    """Build the registered cell `name`: `get("gru", hidden_size=64)`."""
    return spec(name).build(**kwargs)
