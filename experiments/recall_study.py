"""The recall study: what can each recurrence remember, against the size of its state?

Every mixer (rnnjax cells, and causal softmax attention as the non-recurrent baseline)
in the same residual backbone (experiments/backbone.py), trained on recall tasks
(experiments/tasks/recall.py: Zoology's multi-query associative recall, Mamba's
selective copying and induction heads) at several widths and difficulties, with
several seeds; held-out accuracy is plotted against the bytes of state the model
carries from token to token (Zoology's axis; attention's key-value cache at the
sequence length), one line per mixer, beside chance.

    python -m experiments recall --quick     # about 10 minutes on 2 CPU cores
    python -m experiments recall             # the default study
    python -m experiments recall --smoke     # seconds; what the test suite runs

Writes `recall.md` (the table), `recall.png` (the figure) and `recall.json` (one
row per run) to the run folder (default runs/recall, runs/recall-quick with
`--quick`); every run has its own folder below `runs/`. Interrupted? Run the same
command again: finished runs are read back and unfinished ones resume.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import jax

from experiments import sweep as sweep_lib
from experiments.config import resolve
from experiments.model import build
from experiments.tasks import make as make_task
from experiments.tasks.recall import chance

# mixers beyond a plain registered cell: label -> (cell, cell_options, attention_layers)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "gated_deltaproduct n=2": ("gated_deltaproduct", "householder=2", ""),
    "gated_deltanet + attention": ("gated_deltanet", "", "last"),  # the hybrid: the last layer is attention
}


def mixer_spec(label: str) -> tuple[str, str, str]:
    """`(cell, cell_options, attention_layers)` of a study mixer: a registered cell, `attention`, `swa`, or
    one of VARIANTS."""
    from experiments.backbone import mixer_names

    if label in VARIANTS:
        return VARIANTS[label]
    if label in mixer_names():
        return label, "", ""
    raise ValueError(f"recall study: unknown mixer {label!r}; choose from {[*mixer_names(), *VARIANTS]}")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    mixers: tuple[str, ...] = (
        "attention",
        "lstm",
        "gru",
        "mingru",
        "lru",
        "rglru",
        "s6",
        "slstm",
        "mlstm",
        "gla",
        "ssd",
        "deltanet",
        "gated_deltanet",
        "kda",
        "rwkv7",
        "gated_deltaproduct n=2",
        "gated_deltanet + attention",
    )
    widths: tuple[int, ...] = (32, 64)
    # (task, seq_len, num_pairs): the difficulties
    settings: tuple[tuple[str, int, int], ...] = (("mqar", 64, 4), ("mqar", 64, 8))
    seeds: tuple[int, ...] = (0, 1)
    # Zoology's vocabulary is 8,192; on 2 CPU cores a run has a few hundred steps, too few to learn
    # embeddings for thousands of keys, so the associations, not the vocabulary, are what is tested
    vocab_size: int = 64
    num_layers: int = 2
    batch_size: int = 32
    steps: int = 500
    # more than one: each mixer's rate is chosen first, by validation accuracy (a split of generated data
    # the test batches never come from) at the last setting, the widest width and the first seed; the
    # grid then runs at each mixer's chosen rate. One: every mixer at that rate, no tuning runs.
    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)


QUICK = StudyConfig(
    mixers=("attention", "lstm", "gru", "rglru", "mlstm", "gated_deltanet"),
    settings=(("mqar", 64, 4),),
    seeds=(0,),
    learning_rates=(1e-2,),
)
SMOKE = StudyConfig(
    mixers=("attention", "gru", "gated_deltanet + attention"),
    widths=(8, 16),
    settings=(("mqar", 16, 2), ("induction", 12, 1)),
    seeds=(0,),
    vocab_size=16,
    num_layers=1,
    batch_size=4,
    steps=3,
    learning_rates=(1e-3, 1e-2),
)


def slug(label: str) -> str:
    """A folder name for a mixer's label: `gated_deltanet + attention` -> `gated_deltanet-attention`."""
    return re.sub(r"[^a-z0-9_]+", "-", label.replace("=", "")).strip("-")


def run_name(mixer: str, width: int, seed: int, learning_rate: float) -> str:
    return f"{slug(mixer)}-w{width}-seed{seed}-lr{learning_rate:g}"


def setting_name(setting: tuple[str, int, int]) -> str:
    kind, seq_len, num_pairs = setting
    return f"{kind}-T{seq_len}-P{num_pairs}"


def train_one(
    study: StudyConfig,
    setting,
    mixer: str,
    width: int,
    seed: int,
    run_dir: Path,
    learning_rate: float,
    split: str = "test",
) -> dict[str, Any]:
    """Train (or read back, or resume) one run, evaluated on `split`; returns its table row."""
    kind, seq_len, num_pairs = setting
    cell, options, attention_layers = mixer_spec(mixer)
    if attention_layers == "last":
        attention_layers = str(study.num_layers - 1)
    sets = [
        f"cell={cell}",
        f"cell_options={options}",
        f"attention_layers={attention_layers}",
        f"hidden_size={width}",
        f"seed={seed}",
        f"kind={kind}",
        f"seq_len={seq_len}",
        f"num_pairs={num_pairs}",
        f"vocab_size={study.vocab_size}",
        f"num_layers={study.num_layers}",
        f"batch_size={study.batch_size}",
        f"steps={study.steps}",
        f"learning_rate={learning_rate}",
        f"eval_split={split}",
        f"eval_every={study.steps}",
        f"checkpoint_every={max(study.steps // 2, 1)}",
        f"log_every={max(study.steps // 10, 1)}",
        f"warmup_steps={min(50, study.steps // 10)}",
    ]
    config = resolve("recall", sets=sets)
    t0 = time.perf_counter()
    summary = sweep_lib.train_or_read_back(config, run_dir)
    model = build(make_task("recall", config), config)
    params = jax.eval_shape(model.init, jax.random.key(0))
    return {
        "task": kind,
        "seq_len": seq_len,
        "num_pairs": num_pairs,
        "mixer": mixer,
        "width": width,
        "seed": seed,
        "learning_rate": learning_rate,
        "split": split,
        "accuracy": float(summary["eval"]["accuracy"]),
        "chance": chance(kind, num_pairs, study.vocab_size),
        "state_bytes": model.state_bytes(params, seq_len),
        "params": int(sum(p.size for p in jax.tree_util.tree_leaves(params))),
        "seconds": round(time.perf_counter() - t0, 1),
        "run": str(run_dir),
    }


def tune(study: StudyConfig, workdir: Path, *, progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """Each mixer's learning rate: the one of `study.learning_rates` with the best validation accuracy (ties:
    the smaller rate) at the last setting, the widest width and the first seed. Returns the choice and the
    tuning runs' rows."""
    if len(study.learning_rates) == 1:
        return {m: study.learning_rates[0] for m in study.mixers}, []
    setting, width, seed = study.settings[-1], max(study.widths), study.seeds[0]
    rows, best = [], {}
    for mixer in study.mixers:
        for lr in sorted(study.learning_rates):
            run_dir = workdir / "tune" / setting_name(setting) / run_name(mixer, width, seed, lr)
            rows.append(train_one(study, setting, mixer, width, seed, run_dir, lr, split="validation"))
            if progress:
                print(f"  [tune] {mixer:>26} lr={lr:g}: validation accuracy {rows[-1]['accuracy']:.3f}", flush=True)
        mine = [r for r in rows if r["mixer"] == mixer]
        best[mixer] = max(mine, key=lambda r: (r["accuracy"], -r["learning_rate"]))["learning_rate"]
    return best, rows


def run(
    study: StudyConfig = StudyConfig(), workdir: str | Path = "runs/recall", *, progress: bool = True
) -> dict[str, Any]:
    for mixer in study.mixers:
        mixer_spec(mixer)  # an unknown mixer fails before anything trains
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    total = len(study.settings) * len(study.mixers) * len(study.widths) * len(study.seeds)
    if progress:
        print(
            f"[recall] {len(study.mixers)} mixers x widths {study.widths} x {len(study.settings)} settings x seeds "
            f"{study.seeds} = {total} runs of {study.steps} steps, learning rates {study.learning_rates}, "
            f"on {jax.default_backend()}",
            flush=True,
        )
    rates, tuning = tune(study, workdir, progress=progress)
    rows = []
    for setting in study.settings:
        for mixer in study.mixers:
            for width in study.widths:
                for seed in study.seeds:
                    lr = rates[mixer]
                    run_dir = workdir / "runs" / setting_name(setting) / run_name(mixer, width, seed, lr)
                    row = train_one(study, setting, mixer, width, seed, run_dir, lr)
                    rows.append(row)
                    if progress:
                        print(
                            f"  [{len(rows)}/{total}] {setting_name(setting)} {mixer:>26} w={width:<4} seed={seed} "
                            f"lr={lr:g}: accuracy {row['accuracy']:.3f} (chance {row['chance']:.3f}), "
                            f"state {row['state_bytes'] / 1024:.1f} KiB, {row['seconds']:.0f} s",
                            flush=True,
                        )
    table = markdown_table(rows, study, tuning)
    (workdir / "recall.md").write_text(table)
    (workdir / "recall.json").write_text(json.dumps({"tuning": tuning, "rows": rows}, indent=2) + "\n")
    plot(rows, study, workdir / "recall.png")
    summary = sweep_lib.finish_study(workdir, "recall", study, table, t0, progress)
    return {"rows": rows, "tuning": tuning, "rates": rates, "table": table, **summary}


def _median(rows, **match) -> float:
    return statistics.median(r["accuracy"] for r in rows if all(r[k] == v for k, v in match.items()))


def _state(rows, mixer: str, width: int) -> int:
    return next(r["state_bytes"] for r in rows if r["mixer"] == mixer and r["width"] == width)


def markdown_table(rows: list[dict[str, Any]], study: StudyConfig, tuning: list[dict[str, Any]] = ()) -> str:
    """Per setting: mixers x widths, held-out accuracy (median over seeds) and the state size; the learning
    rate each mixer ran at, and the tuning runs' validation accuracy when there were any."""
    lines = [
        f"Held-out accuracy at the recall positions, median over seeds {list(study.seeds)} "
        f"[state per sequence, KiB]; {study.num_layers} layers, {study.steps} steps of {study.batch_size}, "
        f"vocabulary {study.vocab_size}.",
    ]
    if tuning:
        setting = study.settings[-1]
        lines += [
            "",
            f"**Learning rate** (AdamW): validation accuracy at {setting_name(setting)}, width {max(study.widths)}, "
            f"seed {study.seeds[0]}; the grid below runs at each mixer's best (bold).",
            "",
            "| mixer | " + " | ".join(f"{lr:g}" for lr in sorted(study.learning_rates)) + " |",
            "|---|" + "---|" * len(study.learning_rates),
        ]
        chosen = {r["mixer"]: r["learning_rate"] for r in rows}
        for mixer in study.mixers:
            cells = []
            for lr in sorted(study.learning_rates):
                acc = next(r["accuracy"] for r in tuning if r["mixer"] == mixer and r["learning_rate"] == lr)
                cells.append(f"**{acc:.3f}**" if chosen[mixer] == lr else f"{acc:.3f}")
            lines.append(f"| {mixer} | " + " | ".join(cells) + " |")
    else:
        lines[0] += f" AdamW at {study.learning_rates[0]:g}."
    for setting in study.settings:
        kind, seq_len, num_pairs = setting
        sub = [r for r in rows if (r["task"], r["seq_len"], r["num_pairs"]) == setting]
        lines += [
            "",
            f"**{kind}**, T = {seq_len}, {num_pairs} {'pairs' if kind == 'mqar' else 'tokens'} "
            f"(chance {sub[0]['chance']:.3f})",
            "",
            "| mixer | " + " | ".join(f"width {w}" for w in study.widths) + " |",
            "|---|" + "---|" * len(study.widths),
        ]
        for mixer in study.mixers:
            cells = []
            for w in study.widths:
                cells.append(f"{_median(sub, mixer=mixer, width=w):.3f} [{_state(sub, mixer, w) / 1024:.1f}]")
            lines.append(f"| {mixer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], study: StudyConfig, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(study.settings)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.6), squeeze=False)
    markers = "os^vD<>px*hH+"
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: no two mixers share one
    for ax, setting in zip(axes[0], study.settings, strict=True):
        sub = [r for r in rows if (r["task"], r["seq_len"], r["num_pairs"]) == setting]
        for k, mixer in enumerate(study.mixers):
            pts = sorted((_state(sub, mixer, w), _median(sub, mixer=mixer, width=w)) for w in study.widths)
            baseline = mixer in ("attention", "swa")
            ax.plot(
                *zip(*pts, strict=True),
                "--" if baseline else "-",
                color="k" if baseline else colors[(2 * k) % 20 if k < 10 else (2 * k + 1) % 20],
                marker=markers[k % len(markers)],
                label=mixer,
            )
        ax.axhline(sub[0]["chance"], ls=":", c="gray", label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("state carried per sequence (bytes, all layers)")
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(-0.02, 1.02)
        kind, seq_len, num_pairs = setting
        ax.set_title(f"{kind}, T={seq_len}, {num_pairs} {'pairs' if kind == 'mqar' else 'tokens'}")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
