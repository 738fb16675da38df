"""MNIST-1D (Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024): rnnjax's cells
as sequence classifiers beside the paper's own baselines, on the paper's default dataset.

The data come from the `mnist1d` package's `make_dataset` with its default arguments (4,000 training
and 1,000 test sequences of 40 steps, generated procedurally from ten templates; never the downloading
loader), and with `shuffle_seq=True` for the shuffled variant (the same permutation of the 40 steps for
every sequence: the order carries no information a classifier can use without learning it).

Models (pure functions here, their sizes as the paper's `models.py`):
- `logistic`: a linear map of the 40 values to 10 logits;
- `mlp`: 40 -> 100 -> (+100, residual) -> 10, ReLU;
- `cnn`: three 1-D convolutions (25 channels; kernels 5, 3, 3; stride 2, padding 1) and a linear map;
- recurrent, the paper's `GRUBase` with the cell swapped: a bidirectional layer
  (`rnnjax.layers.bidirectional`) of `hidden` units over the 40 steps, every step's output
  concatenated and mapped to 10 logits (GRU and LSTM with 6 units as the paper's GRU; minGRU and the
  LRU with 6; Gated DeltaNet and KDA with 8 units in 2 heads).

Training as the paper's `train.py`: Adam at 1e-2, batches of 100 taken in order from the (already
shuffled) training set, 8,000 steps, no weight decay; the test accuracy after the last step.

    python -m experiments mnist1d            # every model x 3 seeds x {default, shuffled}
    python -m experiments mnist1d --smoke    # seconds; what the test suite runs

Writes `mnist1d.md` (the table beside the paper's numbers), `mnist1d.png` and `mnist1d.json` to the run
folder (default runs/mnist1d). Each finished run is saved as `runs/<variant>/<model>-seed<k>.json` the
moment it ends, so an interrupted study resumes where it stopped (a run in progress, at most a minute
or two, starts over).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments import sweep as sweep_lib

# test accuracy of the paper's baselines on the default dataset (the mnist1d README's table)
PAPER = {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91}
# recurrent models: cell and its keyword arguments (the hidden units of each direction)
RECURRENT = {
    "gru": ("gru", {"hidden_size": 6}),
    "lstm": ("lstm", {"hidden_size": 6}),
    "mingru": ("mingru", {"hidden_size": 6}),
    "lru": ("lru", {"hidden_size": 6}),
    "gated_deltanet": ("gated_deltanet", {"hidden_size": 8, "num_heads": 2}),
    "kda": ("kda", {"hidden_size": 8, "num_heads": 2}),
}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    models: tuple[str, ...] = ("logistic", "mlp", "cnn", *RECURRENT)
    variants: tuple[str, ...] = ("default", "shuffled")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 8000
    batch_size: int = 100
    learning_rate: float = 1e-2
    num_samples: int = 5000  # the package's default: 4,000 for training, 1,000 for the test


SMOKE = StudyConfig(models=("cnn", "gru"), variants=("default",), seeds=(0,), steps=5, num_samples=500)


def dataset(variant: str, num_samples: int = 5000) -> dict[str, np.ndarray]:
    """The paper's dataset (`make_dataset` with the default arguments), or its shuffled variant."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.shuffle_seq = variant == "shuffled"
    data = make_dataset(args)  # generated from the seed in `args`; nothing downloads
    return {
        k: np.asarray(data[k], np.float32 if k.startswith("x") else np.int32) for k in ("x", "y", "x_test", "y_test")
    }


# --- the models: (init, apply) pairs over a params dict --------------------------------------------


def _dense(key, n_in, n_out):
    bound = 1 / np.sqrt(n_in)  # PyTorch's nn.Linear default, as the paper's models have
    kw, kb = jax.random.split(key)
    return {"w": jax.random.uniform(kw, (n_in, n_out), minval=-bound, maxval=bound),
            "b": jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound)}  # fmt: skip


def _conv(key, k, c_in, c_out):
    bound = 1 / np.sqrt(k * c_in)
    kw, kb = jax.random.split(key)
    return {"w": jax.random.uniform(kw, (k, c_in, c_out), minval=-bound, maxval=bound),
            "b": jax.random.uniform(kb, (c_out,), minval=-bound, maxval=bound)}  # fmt: skip


def _apply_conv(p, x):  # x [B, L, C] -> [B, ceil(L / 2), C']: stride 2, padding 1
    y = jax.lax.conv_general_dilated(x, p["w"], (2,), [(1, 1)], dimension_numbers=("NWC", "WIO", "NWC"))
    return y + p["b"]


def model(name: str):
    """`(init(key) -> params, apply(params, x [B, 40]) -> logits [B, 10])` of a model of the study."""
    if name == "logistic":
        return (lambda key: _dense(key, 40, 10)), (lambda p, x: x @ p["w"] + p["b"])
    if name == "mlp":

        def init(key):
            k1, k2, k3 = jax.random.split(key, 3)
            return {"l1": _dense(k1, 40, 100), "l2": _dense(k2, 100, 100), "l3": _dense(k3, 100, 10)}

        def apply(p, x):
            h = jax.nn.relu(x @ p["l1"]["w"] + p["l1"]["b"])
            h = h + jax.nn.relu(h @ p["l2"]["w"] + p["l2"]["b"])
            return h @ p["l3"]["w"] + p["l3"]["b"]

        return init, apply
    if name == "cnn":

        def init(key):
            k = jax.random.split(key, 4)
            return {"c1": _conv(k[0], 5, 1, 25), "c2": _conv(k[1], 3, 25, 25), "c3": _conv(k[2], 3, 25, 25),
                    "out": _dense(k[3], 125, 10)}  # fmt: skip

        def apply(p, x):
            h = x[..., None]  # [B, 40, 1]
            for layer in ("c1", "c2", "c3"):
                h = jax.nn.relu(_apply_conv(p[layer], h))  # 40 -> 20 -> 10 -> 5 steps
            h = h.reshape(h.shape[0], -1)
            return h @ p["out"]["w"] + p["out"]["b"]

        return init, apply
    if name in RECURRENT:
        cell_name, kwargs = RECURRENT[name]
        cell = rnnjax.cells.get(cell_name, **kwargs)

        def init(key):
            kf, kb, ko = jax.random.split(key, 3)
            return {"fw": cell.init(kf, 1), "bw": cell.init(kb, 1), "out": _dense(ko, 40 * 2 * cell.output_size, 10)}

        def apply(p, x):
            _, ys = rnnjax.layers.bidirectional(cell, cell, (p["fw"], p["bw"]), x[..., None], time_major=False)
            h = ys.reshape(ys.shape[0], -1)  # every step's outputs, both directions: [B, 40 * 2H]
            return h @ p["out"]["w"] + p["out"]["b"]

        return init, apply
    raise ValueError(f"mnist1d: unknown model {name!r}; choose from logistic, mlp, cnn, {', '.join(RECURRENT)}")


def train_one(study: StudyConfig, data: dict[str, np.ndarray], name: str, seed: int) -> dict[str, Any]:
    """Train one model as the paper's `train.py` does; the test accuracy after the last step."""
    init, apply = model(name)
    params = init(jax.random.key(seed))
    opt = optax.adam(study.learning_rate)
    state = opt.init(params)

    def loss_fn(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

    @jax.jit
    def update(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])
    n, B = x.shape[0], study.batch_size
    t0 = time.perf_counter()
    for step in range(study.steps):
        start = (step * B) % n
        params, state, loss = update(params, state, x[start : start + B], y[start : start + B])
    accuracy = lambda xs, ys: float(jnp.mean(jnp.argmax(jax.jit(apply)(params, xs), -1) == ys))  # noqa: E731
    return {
        "model": name,
        "seed": seed,
        "test_accuracy": accuracy(jnp.asarray(data["x_test"]), jnp.asarray(data["y_test"])),
        "train_accuracy": accuracy(x, y),
        "final_loss": float(loss),
        "params": int(sum(a.size for a in jax.tree_util.tree_leaves(params))),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def run(study: StudyConfig = StudyConfig(), workdir: str | Path = "runs/mnist1d", *, progress: bool = True):
    unknown = [m for m in study.models if m not in ("logistic", "mlp", "cnn", *RECURRENT)]
    if unknown:
        raise ValueError(f"mnist1d: unknown models {unknown}; choose from logistic, mlp, cnn, {', '.join(RECURRENT)}")
    workdir = Path(workdir)
    t0 = time.perf_counter()
    rows = []
    total = len(study.variants) * len(study.models) * len(study.seeds)
    for variant in study.variants:
        data = dataset(variant, study.num_samples)
        for name in study.models:
            for seed in study.seeds:
                path = workdir / "runs" / variant / f"{name}-seed{seed}.json"
                if path.exists():  # finished before: read back
                    row = json.loads(path.read_text())
                else:
                    row = {"variant": variant, **train_one(study, data, name, seed)}
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(row, indent=2) + "\n")
                rows.append(row)
                if progress:
                    print(f"  [{len(rows)}/{total}] {variant:>8} {name:>14} seed={seed}: test accuracy "
                          f"{row['test_accuracy']:.3f} ({row['params']} params, {row['seconds']:.0f} s)",
                          flush=True)  # fmt: skip
    table = markdown_table(rows, study)
    (workdir / "mnist1d.md").write_text(table)
    (workdir / "mnist1d.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, study, workdir / "mnist1d.png")
    summary = sweep_lib.finish_study(workdir, "mnist1d", study, table, t0, progress)
    return {"rows": rows, "table": table, **summary}


def _accuracies(rows, variant, name):
    return [r["test_accuracy"] for r in rows if r["variant"] == variant and r["model"] == name]


def markdown_table(rows: list[dict[str, Any]], study: StudyConfig) -> str:
    lines = [
        f"Test accuracy after {study.steps} steps (Adam {study.learning_rate}, batches of {study.batch_size}), "
        f"mean +- standard deviation over seeds {list(study.seeds)}; the paper's number for its baselines.",
        "",
        "| model | params | " + " | ".join(study.variants) + " | paper (default) |",
        "|---|---|" + "---|" * len(study.variants) + "---|",
    ]
    for name in study.models:
        params = next(r["params"] for r in rows if r["model"] == name)
        cells = []
        for variant in study.variants:
            acc = _accuracies(rows, variant, name)
            spread = f" +- {statistics.stdev(acc):.3f}" if len(acc) > 1 else ""
            cells.append(f"{statistics.mean(acc):.3f}{spread}")
        paper = f"{PAPER[name]:.2f}" if name in PAPER else "-"
        lines.append(f"| {name} | {params} | " + " | ".join(cells) + f" | {paper} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], study: StudyConfig, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(study.models), 3.8))
    width = 0.8 / len(study.variants)
    for k, variant in enumerate(study.variants):
        means = [statistics.mean(_accuracies(rows, variant, n)) for n in study.models]
        ax.bar(np.arange(len(study.models)) + k * width, means, width, label=variant)
    for i, name in enumerate(study.models):
        if name in PAPER:
            ax.plot([i - 0.1, i + 0.8 * len(study.variants) / 2], [PAPER[name]] * 2, "k-", lw=2)
    ax.plot([], [], "k-", lw=2, label="paper (default)")
    ax.set_xticks(np.arange(len(study.models)) + 0.4 - width / 2, study.models, rotation=30)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
