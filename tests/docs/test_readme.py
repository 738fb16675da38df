"""The README is true: its example runs, its cell list is the registry, its links exist, and the
tables of the results page it links to (docs/results.md) equal their sources.

The gradient table is held to the committed gradcheck output, the speed
table to the committed benchmark JSON (through `benchmarks.report.headline`),
the study's table to the docs page that reports the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import rnnjax
from benchmarks.report import headline

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
RESULTS_PAGE = (ROOT / "docs" / "results.md").read_text()  # the tables the front page links to
RESULTS = ROOT / "benchmarks" / "results"


def _table_after(text: str, heading_regex: str) -> list[str]:
    """The markdown table rows (header included) of the first table after the matching line."""
    match = re.search(heading_regex, text, re.M)
    assert match, f"no line matching {heading_regex!r}"
    rows, started = [], False
    for line in text[match.end() :].split("\n"):
        if line.startswith("|"):
            rows.append(line.strip())
            started = True
        elif started:
            break
    return rows


def test_readme_is_at_most_6000_characters():
    """A front door, not a results page: the tables live in docs/results.md."""
    assert len(README) <= 6_000, len(README)


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # the API quick start
    assert namespace["ys"].shape == (50, 32, 128)
    assert namespace["grads"]["w_h"].shape == (128, 512)


def test_getting_started_example_runs():
    text = (ROOT / "docs" / "getting-started.md").read_text()
    namespace: dict = {}
    exec(compile(re.findall(r"```python\n(.*?)```", text, re.S)[0], "getting-started.md", "exec"), namespace)
    assert namespace["ys"].shape == (50, 32, 128)


def test_cell_list_names_exactly_the_registered_cells():
    section = README[README.index("## Cells") : README.index("## Results")]
    lines = [line for line in section.split("\n") if line.startswith("- **")]
    names = [n for line in lines for n in re.findall(r"`(\w+)`", line)]
    assert sorted(names) == rnnjax.cells.names()


def test_gradient_table_is_the_committed_gradcheck_output():
    """docs/results.md = docs/gradient-checking.md = benchmarks/results/gradcheck-*.md
    (the output of `python -m rnnjax.gradcheck`)."""
    source = sorted(RESULTS.glob("gradcheck-*.md"))[-1].read_text()
    want = _table_after(source, r"^manual BPTT")
    assert _table_after(RESULTS_PAGE, r"^## Manual BPTT against autodiff") == want
    assert _table_after((ROOT / "docs" / "gradient-checking.md").read_text(), r"^Worst relative error over all") == want
    with_reference = {s.name for s in rnnjax.cells.specs() if s.reference is not None}
    listed = {row.split("|")[1].strip() for row in want[2:]}
    assert listed == with_reference  # every cell with a reference, i.e. every registered cell
    for row in want[2:]:
        assert float(row.split("|")[3]) <= 1e-10, row  # what tests/test_reference.py asserts
    # the README's sentence quotes the table's worst float64 error and its number of cells
    claim = re.search(r"autodiff within (\S+)\s+in float64 for all (\d+) cells", README)
    assert claim, "README should say how closely manual BPTT agrees with autodiff"
    assert float(claim.group(1)) == max(float(row.split("|")[3]) for row in want[2:])
    assert int(claim.group(2)) == len(want) - 2


@pytest.mark.parametrize(
    "kind, source", [("LSTM", "cpu-lstm-kernel3-2026-11-26.json"), ("GRU", "cpu-gru-2026-11-26.json")]
)
def test_speed_table_is_computed_from_the_committed_results(kind, source):
    result = json.loads((RESULTS / source).read_text())
    short, long = headline(result, 16), headline(result, 1024)
    rows = _table_after(RESULTS_PAGE, r"^## Speed against the peers")
    for what in ("training", "inference"):
        want = (
            f"| {kind} {what} | "
            + " | ".join(f"{short[(what, p)]:.2f}x / {long[(what, p)]:.2f}x" for p in ("flax", "Equinox", "PyTorch"))
            + " |"
        )
        assert want in rows, f"docs/results.md row for {kind} {what} should be {want}"


def test_study_table_matches_the_experiments_page():
    docs = (ROOT / "docs" / "experiments.md").read_text()
    heading = r"^Gradient reaching h_t"
    results_rows = _table_after(RESULTS_PAGE, r"`\|\|dL/dh_\(T-d\)\|\| / \|\|dL/dh_T\|\|`")
    assert results_rows == _table_after(docs, heading)


def test_links_into_the_docs_exist():
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link


def test_tracking_tables_are_the_committed_study():
    """docs/tracking.md's tables are the study's own table of its committed rows (docs/tracking-study.json,
    the `tracking.json` of `python -m experiments tracking`), and results.md quotes its headline rows."""
    from experiments import tracking_study

    rows = json.loads((ROOT / "docs" / "tracking-study.json").read_text())
    table = tracking_study.markdown_table(rows, tracking_study.StudyConfig())
    assert table in (ROOT / "docs" / "tracking.md").read_text()
    parity = _table_after(table, r"^\*\*parity\*\*")
    assert len(parity) == 2 + len(tracking_study.StudyConfig().mixers)
    assert _table_after(RESULTS_PAGE, r"^## What can each recurrence track") == parity
    study = tracking_study.StudyConfig()
    assert len(rows) == len(study.mixers) * len(study.tasks) * len(study.seeds)  # the whole default study
