"""mkdocs hooks: pages that follow the code instead of being copied from it.

- `<!-- cells:table -->` in a page becomes a table of every registered cell,
  built from `rnnjax.cells.specs()` and each cell module's docstring, and
  `<!-- cells:reference -->` the mkdocstrings reference of every cell module,
  so a newly registered cell appears on the site with no page to edit;
  `<!-- reference:modules -->` does the same for the manual-BPTT modules.
- The plots and tables in `benchmarks/results/` are published under
  `results/`, so the benchmark pages show the committed files themselves.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def on_files(files, config):
    for path in sorted(RESULTS.glob("*")):
        if path.suffix in (".png", ".md"):
            files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    return files


def _cells_table() -> str:
    import rnnjax

    rows = ["| name | what (paper) | state update | forms | manual BPTT reference |", "|---|---|---|---|---|"]
    for spec in rnnjax.cells.specs():
        cell = spec.example_cell()
        module = inspect.getmodule(spec.factory)
        what = inspect.getdoc(module).split("\n\n")[0].replace("\n", " ")
        forms = ["sequential"]
        if cell.linear is not None:
            forms.append("parallel")
        if cell.matrix is not None:
            forms += ["parallel (quadratic)", f"chunkwise (default C = {cell.matrix.chunk_size})"]
        if cell.sequence is not None:
            forms.append("CPU kernel")
        variant = ", ".join(f"`{k}={v!r}`" for k, v in spec.defaults.items())
        name = f"`{spec.name}`" + (f" ({variant})" if variant else "")
        linear = "matrix memory" if cell.matrix is not None else "linear" if cell.linear is not None else "nonlinear"
        reference = "yes" if spec.reference is not None else "not yet"
        rows.append(f"| {name} | {what} | {linear} | {', '.join(forms)} | {reference} |")
    return "\n".join(rows)


def cell_modules() -> list[str]:
    """Every module that registers a cell."""
    import rnnjax

    return sorted({spec.factory.__module__ for spec in rnnjax.cells.specs()})


def reference_modules() -> list[str]:
    """Every module of `rnnjax.reference` (one per cell, and the shared ones)."""
    import pkgutil

    import rnnjax.reference

    return sorted(m.name for m in pkgutil.iter_modules(rnnjax.reference.__path__, "rnnjax.reference."))


def _module_sections(modules: list[str], level: int) -> str:
    """A heading and a mkdocstrings block per module, the module's members one level below."""
    options = f"    options:\n      show_root_heading: false\n      heading_level: {level + 1}\n"
    return "\n".join(f"{'#' * level} `{m.rsplit('.', 1)[-1]}`\n\n::: {m}\n{options}" for m in modules)


MARKERS = {
    "<!-- cells:table -->": _cells_table,
    "<!-- cells:reference -->": lambda: _module_sections(cell_modules(), level=3),
    "<!-- reference:modules -->": lambda: _module_sections(reference_modules(), level=2),
}


def on_page_markdown(markdown, page, config, files):
    for marker, make in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown
