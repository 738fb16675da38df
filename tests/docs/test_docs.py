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

import pytest

import rnnjax

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# a python block runs unless the line above it says why not: <!-- not run: reason -->
BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", re.S)


def code_blocks(page: Path) -> list[tuple[str, str | None]]:
    """`(code, reason it is not run or None)` for every python block of a markdown page, in order."""
    return [(m["code"], m["why"]) for m in BLOCK.finditer(page.read_text())]


@pytest.mark.parametrize(
    "page", [p for p in PAGES if any(why is None for _, why in code_blocks(p))], ids=lambda p: p.name
)
def test_every_python_block_runs_as_written(page):
    """The blocks of a page run in order in one namespace, as a reader pastes them (after `import`s they show)."""
    namespace: dict = {}
    ran = 0
    for k, (code, why) in enumerate(code_blocks(page)):
        if why is not None:
            assert why.strip(), f"{page.name}: block {k} is marked not run without a reason"
            continue
        exec(compile(code, f"{page.name} block {k}", "exec"), namespace)
        ran += 1
    assert ran


def test_not_run_blocks_are_few_and_known():
    skipped = {p.name: sum(why is not None for _, why in code_blocks(p)) for p in PAGES}
    assert {k: v for k, v in skipped.items() if v} == {"pytorch.md": 1, "seq2seq.md": 1}


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
    private = {name for name in documented if any(part.startswith("_") for part in name.split("."))}
    assert not private, f"API pages follow the public surface; these are private: {sorted(private)}"


def test_cell_table_is_generated_for_every_registered_cell():
    table = _hooks()._cells_table()
    for name in rnnjax.cells.names():
        assert f"| `{name}`" in table, name
