"""The documentation site covers the whole public API.

`mkdocs build --strict` runs in `make test` (a broken link, a missing page or
a reference that does not resolve fails it); this test makes sure no public
module is left out of the API reference, so that a new module cannot land
undocumented.
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
from pathlib import Path

import rnnjax

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_module_has_an_api_page():
    hooks = _hooks()
    documented = set(hooks.cell_modules()) | set(hooks.reference_modules())
    for page in DOCS.rglob("*.md"):
        documented |= set(re.findall(r"^::: ([\w.]+)", page.read_text(), re.M))
    public = {"rnnjax"} | {m.name for m in pkgutil.walk_packages(rnnjax.__path__, "rnnjax.")}
    public = {m for m in public if not any(part.startswith("_") for part in m.split("."))}
    missing = public - documented - {"rnnjax"}
    assert not missing, f"public modules without an API page (add `::: name` under docs/api/): {sorted(missing)}"


def test_cell_table_is_generated_for_every_registered_cell():
    table = _hooks()._cells_table()
    for name in rnnjax.cells.names():
        assert f"| `{name}`" in table, name
