"""Comparison runs: one experiment over cells x one config axis x seeds, as a table and a plot.

    python -m experiments sweep adding --cells elman lstm gru --grid seq_len=10,50,100 --seeds 0 1

Each run gets its own folder `WORKDIR/<cell>-<key><value>-seed<s>` (so a sweep
that was interrupted resumes run by run: finished runs are read back from
their summary.json, unfinished ones resume from their checkpoints).
`WORKDIR/sweep.md` holds the table and `WORKDIR/sweep.png` the plot.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments import config as config_lib
from experiments import train as train_lib


def train_or_read_back(config: Any, run_dir: Path) -> dict[str, Any]:
    """One run of a study: its `summary.json` when it finished before, else trained, resuming from its
    latest checkpoint when an earlier attempt was interrupted."""
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        # a finished run is read back only for the config it ran: a study rerun with other settings in the
        # same folder must not report old runs as new ones (unfinished ones are checked the same way on resume)
        saved = json.loads((run_dir / "config.json").read_text())
        asked = json.loads(json.dumps(config_lib.to_dict(config)))  # as config.json holds it: tuples as lists
        diff = train_lib.config_diff(saved, asked, saved_in="finished run")
        if diff:
            raise config_lib.ConfigError(
                f"{run_dir} holds a run of another config ({'; '.join(diff)}); "
                "use another --workdir for these settings, or delete that run to train it again"
            )
        return json.loads(summary_path.read_text())
    ckpt = run_dir / "checkpoints"
    resume = ckpt.exists() and any(ckpt.iterdir())
    return train_lib.train(config, run_dir, resume=resume, overwrite=not resume, progress=False, plot=False)


def finish_study(workdir: Path, name: str, study: Any, table: str, t0: float, progress: bool) -> dict[str, Any]:
    """Write a study's `summary.json` (time, backend, its config) and print its table; `name` is the
    stem of its `.md` table and `.png` figure, already written."""
    import dataclasses
    import time

    import jax

    elapsed = time.perf_counter() - t0
    summary = {"seconds": round(elapsed, 1), "backend": jax.default_backend(), "study": dataclasses.asdict(study)}
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if progress:
        print()
        print(table)
        print(f"figure: {workdir / (name + '.png')}   table: {workdir / (name + '.md')}   ({elapsed:.0f} s)")
    return summary


def metric_of(summary: dict[str, Any]) -> tuple[str, float]:
    """The headline held-out metric of a run: MSE for regression, else the loss."""
    ev = summary["eval"]
    return ("mse", ev["mse"]) if "mse" in ev else ("loss", ev["loss"])


def run_sweep(
    experiment: str,
    *,
    cells: Sequence[str],
    key: str,
    values: Sequence[Any],
    seeds: Sequence[int],
    workdir: str | Path,
    sets: Sequence[str] = (),
    smoke: bool = False,
    success_below: float | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train every (cell, value, seed); returns one row per run and writes the table and plot."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    total = len(cells) * len(values) * len(seeds)
    for cell in cells:
        for value in values:
            for seed in seeds:
                cfg = config_lib.resolve(
                    experiment, smoke=smoke, sets=[*sets, f"cell={cell}", f"{key}={value}", f"seed={seed}"]
                )
                run_dir = workdir / f"{cell}-{key}{value}-seed{seed}"
                summary = train_or_read_back(cfg, run_dir)
                name, value_ = metric_of(summary)
                rows.append({"cell": cell, key: value, "seed": seed, name: value_, "run": str(run_dir)})
                if progress:
                    print(
                        f"  [{len(rows)}/{total}] {cell:>14} {key}={value} seed={seed}: {name} {value_:.4f}", flush=True
                    )
    table = markdown_table(rows, key=key, success_below=success_below)
    (workdir / "sweep.md").write_text(table)
    (workdir / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot_sweep(rows, key=key, out=workdir / "sweep.png", title=experiment, success_below=success_below)
    return rows


def markdown_table(rows: list[dict[str, Any]], *, key: str, success_below: float | None = None) -> str:
    """Rows: cells; columns: values of `key`; entries: median metric [min-max], and successes/seeds."""
    metric = next(k for k in ("mse", "loss") if k in rows[0])
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    values = list(dict.fromkeys(r[key] for r in rows))
    head = f"| cell \\ {key} | " + " | ".join(str(v) for v in values) + " |"
    lines = [
        f"Held-out {metric}: median over seeds [min, max]"
        + (f"; solved = {metric} < {success_below}" if success_below is not None else ""),
        "",
        head,
        "|" + "---|" * (len(values) + 1),
    ]
    for cell in cells:
        entries = []
        for v in values:
            got = [r[metric] for r in rows if r["cell"] == cell and r[key] == v]
            text = f"{statistics.median(got):.4f} [{min(got):.4f}, {max(got):.4f}]"
            if success_below is not None:
                text += f", solved {sum(g < success_below for g in got)}/{len(got)}"
            entries.append(text)
        lines.append(f"| {cell} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows, *, key: str, out: Path, title: str, success_below: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = next(k for k in ("mse", "loss") if k in rows[0])
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell in dict.fromkeys(r["cell"] for r in rows):
        values = list(dict.fromkeys(r[key] for r in rows if r["cell"] == cell))
        med = [statistics.median(r[metric] for r in rows if r["cell"] == cell and r[key] == v) for v in values]
        ax.plot(values, med, "o-", label=cell)
    if success_below is not None:
        ax.axhline(success_below, ls=":", c="gray", label=f"solved below {success_below}")
    ax.set_xlabel(key)
    ax.set_ylabel(f"held-out {metric} (median over seeds)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
