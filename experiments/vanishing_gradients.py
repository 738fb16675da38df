"""The vanishing-gradient study: why gated cells exist, shown with measurements.

For the textbook RNN (Elman, sigmoid), Elman with tanh, the LSTM and the GRU:

1. the norm of dL/dh_t, for a loss read at the last step T, against the
   distance T - t, at initialisation and after training on the adding
   problem (averaged over a batch, normalised by its value at distance 0);
2. held-out MSE and the number of seeds that solve the adding problem
   (MSE below `success_below`; the trivial predictor scores 0.167) as the
   sequence length grows.

Run (the README's main job):
    python -m experiments study            # a few minutes on 2 CPU cores
    python -m experiments study --smoke    # seconds; what the test suite runs

Writes `vanishing.png`, `vanishing.md` and the sweep's runs to the run folder
(default `runs/vanishing`), and prints the table. Interrupted? Run the same
command again: finished runs are kept and unfinished ones resume.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import sweep as sweep_lib
from experiments import train as train_lib
from experiments.config import resolve
from experiments.model import build
from experiments.tasks import adding, rng_for
from experiments.tasks import make as make_task


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    cells: tuple[str, ...] = ("elman_sigmoid", "elman", "lstm", "gru")
    train_lens: tuple[int, ...] = (10, 50, 150)
    seeds: tuple[int, ...] = (0, 1)
    hidden_size: int = 32
    batch_size: int = 64
    steps: int = 1200
    learning_rate: float = 1e-2
    success_below: float = 0.05
    probe_batch: int = 128


SMOKE = StudyConfig(train_lens=(6, 12), seeds=(0,), hidden_size=6, batch_size=8, steps=4, probe_batch=4)


def _add_to_state(carry: Any, e: jax.Array) -> Any:
    """Add `e` to the part of the carry that is the output h (LSTMState.h, or the carry itself)."""
    return carry._replace(h=carry.h + e) if hasattr(carry, "h") else carry + e


def hidden_gradient_norms(model, params, batch) -> np.ndarray:
    """`[T]`: batch-mean of ||dL/dh_t|| for the adding loss read at the last step.

    dL/dh_t is the gradient with respect to an additive perturbation e_t of
    h_t (h_t -> h_t + e_t, at e = 0), so it counts every path from h_t to the
    loss, through the recurrence and through the output.
    """
    cell, p = model.cells[0], params["layers"][0]
    xs, target = jnp.asarray(batch["xs"]), jnp.asarray(batch["ys"])
    T, B = xs.shape[:2]

    def loss(eps):
        def body(carry, inputs):
            x, e = inputs
            carry, y = cell.step(p, carry, x)
            return _add_to_state(carry, e), y + e

        _, ys = jax.lax.scan(body, cell.initial_carry(p, (B,)), (xs, eps))
        pred = ys[-1] @ params["head"]["w"] + params["head"]["b"]
        return jnp.mean((pred - target) ** 2)

    grads = jax.jit(jax.grad(loss))(jnp.zeros((T, B, cell.hidden_size)))
    return np.asarray(jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=1))


def run(
    study: StudyConfig = StudyConfig(),
    workdir: str | Path = "runs/vanishing",
    *,
    smoke: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    T_probe = max(study.train_lens)
    sets = [
        f"hidden_size={study.hidden_size}",
        f"batch_size={study.batch_size}",
        f"steps={study.steps}",
        f"learning_rate={study.learning_rate}",
        f"eval_every={max(study.steps // 4, 1)}",
        f"checkpoint_every={max(study.steps // 4, 1)}",
        f"log_every={max(study.steps // 40, 1)}",
    ]
    if progress:
        print(
            f"[study] adding problem: {len(study.cells)} cells x seq_len {study.train_lens} x seeds {study.seeds}, "
            f"{study.steps} steps each, on {jax.default_backend()}",
            flush=True,
        )
    rows = sweep_lib.run_sweep(
        "adding",
        cells=study.cells,
        key="seq_len",
        values=study.train_lens,
        seeds=study.seeds,
        workdir=workdir / "sweep",
        sets=sets,
        smoke=smoke,
        success_below=study.success_below,
        progress=progress,
    )

    # gradient norms against distance, at initialisation and after training at the longest length
    probe_cfg = resolve("adding", smoke=smoke, sets=[*sets, f"seq_len={T_probe}"])
    probe_batch = adding.batch(rng_for(12345, 0, stream=2), T_probe, study.probe_batch)
    norms: dict[str, dict[str, list[float]]] = {}
    for cell in study.cells:
        cfg = dataclasses.replace(probe_cfg, cell=cell)
        model = build(make_task("adding", cfg), cfg)
        at_init = np.mean(
            [hidden_gradient_norms(model, model.init(jax.random.PRNGKey(s)), probe_batch) for s in study.seeds], axis=0
        )
        trained = []
        for s in study.seeds:
            _, _, model_t, params = train_lib.load_run(workdir / "sweep" / f"{cell}-seq_len{T_probe}-seed{s}")
            trained.append(hidden_gradient_norms(model_t, params, probe_batch))
        norms[cell] = {
            "init": at_init[::-1].tolist(),
            "trained": np.mean(trained, axis=0)[::-1].tolist(),
        }  # by distance

    table = study_table(rows, norms, study)
    (workdir / "vanishing.md").write_text(table)
    (workdir / "gradient_norms.json").write_text(json.dumps(norms) + "\n")
    plot_study(rows, norms, study, workdir / "vanishing.png")
    summary = sweep_lib.finish_study(workdir, "vanishing", study, table, t0, progress)
    return {"rows": rows, "norms": norms, "table": table, **summary}


def study_table(rows, norms, study: StudyConfig) -> str:
    T = max(study.train_lens)
    lines = [
        f"Gradient reaching h_t from the loss at step T={T}: ||dL/dh_(T-d)|| / ||dL/dh_T||, batch mean "
        "(0 means it underflowed float32)",
        "",
        f"| cell | d=10, init | d={T - 1}, init | d=10, trained | d={T - 1}, trained |",
        "|---|---|---|---|---|",
    ]
    for cell, n in norms.items():
        ratio = lambda v, d: v[min(d, len(v) - 1)] / v[0]  # noqa: E731
        lines.append(
            f"| {cell} | {ratio(n['init'], 10):.1e} | {ratio(n['init'], T - 1):.1e} | "
            f"{ratio(n['trained'], 10):.1e} | {ratio(n['trained'], T - 1):.1e} |"
        )
    lines += [
        "",
        "Adding problem (trivial predictor: MSE 0.167). "
        + sweep_lib.markdown_table(rows, key="seq_len", success_below=study.success_below),
    ]
    return "\n".join(lines)


def plot_study(rows, norms, study: StudyConfig, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, when in zip(axes[:2], ("init", "trained"), strict=True):
        for cell, n in norms.items():
            v = np.asarray(n[when])
            ax.semilogy(np.arange(len(v)), v / v[0], label=cell)
        ax.set_xlabel("distance T - t (steps)")
        ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T||")
        ax.set_title(f"gradient vs distance, {'at initialisation' if when == 'init' else 'after training'}")
        ax.legend()
    ax = axes[2]
    styles = ["o-", "s--", "^-.", "v:", "D-", "x--"]
    for k, cell in enumerate(study.cells):
        rate = [
            np.mean([r["mse"] < study.success_below for r in rows if r["cell"] == cell and r["seq_len"] == T])
            for T in study.train_lens
        ]
        # cells often share a rate (all 0 or all 1): offset each a little so none hides another
        ax.plot(
            study.train_lens,
            np.asarray(rate) + 0.015 * (k - len(study.cells) / 2),
            styles[k % len(styles)],
            label=cell,
            markersize=7 - k,
        )
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(f"fraction of seeds solving (MSE < {study.success_below})")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("adding problem: success rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
