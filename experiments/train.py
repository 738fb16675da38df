"""The one trainer: one jitted update step, evaluation, metrics, checkpoints and resume.

Every experiment is a config (experiments/configs/) that this trainer runs::

    python -m experiments train adding --set cell=gru seq_len=200

A run folder holds `config.json` (the resolved config), `metrics.jsonl` (one
JSON object per logged train or eval point), `checkpoints/` (orbax: params,
optimiser state, PRNG state, step; the data position is the step, because
batch `s` is a function of `(seed, s)`), `summary.json` and `curves.png`.

Resuming (`--resume`) restores the latest complete checkpoint (orbax writes to
a temporary folder and renames it when complete, so a partial checkpoint is
never picked up), cuts `metrics.jsonl` back to that step, and continues. On
CPU the resumed run ends with the same parameters, bit for bit, as a run that
was never stopped (tests/experiments/test_trainer.py).

Non-finite values: a step whose loss or gradient norm is NaN or Inf is skipped
(params and optimiser state are left as they were) and counted in
`nonfinite_steps`; after `max_nonfinite` skipped steps in a row the run stops
with an error naming the step. Such state is never checkpointed.

The loop does not wait for the device between log, eval and checkpoint
points: the step counter is kept on the host and the non-finite counts on the
device, so the next batch is prepared while the device computes (a run of
non-finite steps is noticed at the next such point; the error names the step
at which it reached `max_nonfinite`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import rnnjax
from experiments import config as config_lib
from experiments import distributed
from experiments import model as model_lib
from experiments.tasks import Task
from experiments.tasks import make as make_task


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: updates applied so far
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32[2] raw key; folded with the step for per-step randomness


class NonFiniteError(RuntimeError):
    """Raised after `max_nonfinite` consecutive steps with NaN/Inf loss or gradients."""


class RunFolderError(RuntimeError):
    """The run folder is not in the state the command expects (exists, or nothing to resume)."""


def versions() -> dict[str, str]:
    import flax
    import optax as optax_
    import orbax.checkpoint

    return {
        "rnnjax": rnnjax.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax_.__version__,
        "orbax": orbax.checkpoint.__version__ if hasattr(orbax.checkpoint, "__version__") else "unknown",
        "python": platform.python_version(),
    }


def make_optimizer(config) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on a warm-up + cosine (or constant) schedule."""
    if config.lr_schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, max(config.warmup_steps, 1), max(config.steps, config.warmup_steps + 1)
        )
    elif config.lr_schedule == "constant":
        schedule = optax.join_schedules(
            [
                optax.linear_schedule(0.0, config.learning_rate, max(config.warmup_steps, 1)),
                optax.constant_schedule(config.learning_rate),
            ],
            [max(config.warmup_steps, 1)],
        )
    else:
        raise config_lib.ConfigError(f"lr_schedule must be 'cosine' or 'constant', got {config.lr_schedule!r}")
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, weight_decay=config.weight_decay),
    )


def make_loss_fn(model, task: Task, precision: str = "float32", parallel=None):
    """`(params, batch) -> (loss, metrics)`; with the time axis sharded (`parallel.seq_size > 1`),
    run per device inside `jax.shard_map` over the data x seq mesh (experiments/distributed.py)."""
    if parallel is None or parallel.seq_size == 1:
        return lambda p, b: model_lib.loss_and_metrics(model, task, p, b, precision)  # noqa: E731
    local = model._replace(method=rnnjax.Sharded(distributed.SEQ_AXIS))
    return parallel.sharded_loss(
        lambda p, b, axes: model_lib.loss_and_metrics(local, task, p, b, precision, axes),
        lambda b: distributed.batch_axes(task, b),
    )


def make_update_fn(model, task: Task, tx: optax.GradientTransformation, precision: str = "float32", parallel=None):
    """The jitted update step. The incoming state's buffers are donated."""
    loss_of = make_loss_fn(model, task, precision, parallel)

    def update(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
        loss_fn = lambda p: loss_of(p, batch)  # noqa: E731
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # skip a step with a non-finite loss or gradient: keep params and optimiser state
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)  # noqa: E731
        new_state = TrainState(state.step + 1, keep(params, state.params), keep(opt_state, state.opt_state), state.rng)
        return new_state, {**metrics, "grad_norm": grad_norm, "finite": finite}

    return jax.jit(update, donate_argnums=0)


@jax.jit
def _count_nonfinite(health: dict[str, jax.Array], finite: jax.Array, step: jax.Array, limit: jax.Array):
    """On the device, so that the host reads it only at log and checkpoint points: the current run of
    non-finite steps, their total, and the step at which a run first reached `limit` (-1: never)."""
    streak = jnp.where(finite, 0, health["streak"] + 1)
    hit = (health["limit_step"] < 0) & (streak >= limit)
    return {
        "streak": streak,
        "total": health["total"] + (~finite).astype(jnp.int32),
        "limit_step": jnp.where(hit, step, health["limit_step"]),
    }


def make_eval_fn(model, task: Task, precision: str = "float32", parallel=None):
    loss_of = make_loss_fn(model, task, precision, parallel)
    return jax.jit(lambda params, batch: loss_of(params, batch)[1])


def evaluate(eval_fn, params, batches) -> dict[str, float]:
    totals: dict[str, float] = {}
    for batch in batches:
        for k, v in eval_fn(params, batch).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return {k: v / len(batches) for k, v in totals.items()}


class Checkpoints:
    """Orbax checkpoints of the train state plus JSON metadata (config, versions, data position)."""

    def __init__(self, directory: Path, keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(directory.absolute(), options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, meta: dict[str, Any]) -> None:
        args = self._ocp.args.Composite(state=self._ocp.args.StandardSave(state), meta=self._ocp.args.JsonSave(meta))
        self.manager.save(int(state.step), args=args, force=True)
        self.manager.wait_until_finished()

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata alone: read before the arrays so a config mismatch is named, not a shape error."""
        return self.manager.restore(step, args=self._ocp.args.Composite(meta=self._ocp.args.JsonRestore())).meta

    def restore(self, step: int, like: TrainState) -> TrainState:
        """Restore onto this process's first device, whatever mesh saved it; the caller re-shards.

        Naming the target sharding is what lets a checkpoint written on N devices
        (or processes) be read on M.
        """
        here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here), like)
        args = self._ocp.args.Composite(state=self._ocp.args.StandardRestore(abstract))
        return self.manager.restore(step, args=args).state

    def close(self) -> None:
        self.manager.close()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric records after `step`: they belong to work the resumed run will redo."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a run killed while writing it
            continue
        if record["step"] <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def config_diff(saved: dict[str, Any], current: dict[str, Any], saved_in: str = "checkpoint") -> list[str]:
    """`"key: <saved_in> old, now new"` for every key whose value differs between two configs' dicts."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved_in} {saved.get(k)!r}, now {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]


def prepare_run_folder(workdir: Path, *, resume: bool, overwrite: bool) -> None:
    if workdir.exists() and any(workdir.iterdir()) and not resume:
        if not overwrite:
            raise RunFolderError(
                f"run folder {workdir} already exists; pass --resume to continue it, "
                "--overwrite to start again, or --workdir for a new folder"
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)


def train(
    config,
    workdir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    max_nonfinite: int = 10,
    progress: bool = True,
    plot: bool = True,
    devices: int | None = None,
    seq_devices: int | None = None,
    debug_nans: bool = False,
) -> dict[str, Any]:
    """Train `config` in `workdir`; returns the summary (also written to summary.json).

    Args:
      config: a resolved `TrainConfig` subclass instance.
      workdir: the run folder.
      resume: continue from the latest complete checkpoint in `workdir`
        (from step 0 when there is none: the run was stopped before its first save).
      overwrite: delete an existing `workdir` first.
      stop_after: stop after this many updates in this invocation, as if
        interrupted (after saving a checkpoint); used to test resumption.
      max_nonfinite: stop after this many consecutive non-finite steps.
      progress: show a progress bar with loss and steps/s.
      plot: write curves.png at the end.
      devices: data parallelism over a mesh of this many devices (-1: all;
        None or 1: a single device). See experiments/distributed.py.
      seq_devices: of those devices, how many split the time axis (a 2-D
        mesh: devices / seq_devices along the batch, seq_devices along time),
        for sequences too long for one device; None or 1: none.
      debug_nans: turn on JAX's NaN checking (`jax_debug_nans`): the first
        operation that produces a NaN raises, with its traceback. Slow; for debugging.
    """
    with jax.debug_nans(True) if debug_nans else contextlib.nullcontext():
        return _train(
            config,
            workdir,
            resume=resume,
            overwrite=overwrite,
            stop_after=stop_after,
            max_nonfinite=max_nonfinite,
            progress=progress,
            plot=plot,
            devices=devices,
            seq_devices=seq_devices,
        )


def _train(config, workdir, *, resume, overwrite, stop_after, max_nonfinite, progress, plot, devices, seq_devices):
    workdir = Path(workdir)
    prepare_run_folder(workdir, resume=resume, overwrite=overwrite)
    cfg_dict = config_lib.to_dict(config)
    task = make_task(config.task, config)
    model = model_lib.build(task, config)
    tx = make_optimizer(config)
    try:
        parallel = distributed.DataParallel.create(devices, seq_devices)
    except ValueError as err:
        raise config_lib.ConfigError(str(err)) from None
    if parallel is not None:
        parallel.check_batch(config.batch_size)
        if parallel.seq_size > 1:
            model_lib.check_time_sharding(model, task)
            for b in [task.train_batch(0), *task.eval_batches]:
                try:
                    parallel.check_seq_len(b, distributed.batch_axes(task, b))
                except ValueError as err:
                    raise config_lib.ConfigError(str(err)) from None
    update = make_update_fn(model, task, tx, config.precision, parallel)
    eval_fn = make_eval_fn(model, task, config.precision, parallel)
    lead = jax.process_index() == 0  # the process that writes logs, plots and summaries
    progress = progress and lead

    init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model.init(init_key)
    state = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params), state_key)

    ckpt = Checkpoints(workdir / "checkpoints")
    metrics_path = workdir / "metrics.jsonl"
    step = ckpt.latest_step() if resume else None
    if resume and step is None:
        # interrupted before its first checkpoint (or never started): nothing to lose, start at 0
        print(f"[rnnjax] --resume: no complete checkpoint in {workdir / 'checkpoints'}; starting from step 0")
        _truncate_metrics(metrics_path, 0)
    elif resume:
        meta = ckpt.read_meta(step)
        diff = config_diff(meta["config"], cfg_dict)
        if diff:
            ckpt.close()
            raise config_lib.ConfigError(
                "--resume: the config differs from the checkpoint's: "
                + "; ".join(diff)
                + ". Resume with the original config, or start a new run folder."
            )
        state = ckpt.restore(step, state)
        if meta["versions"].get("rnnjax") != rnnjax.__version__:
            print(
                f"note: checkpoint written by rnnjax {meta['versions'].get('rnnjax')}, "
                f"resuming with {rnnjax.__version__}"
            )
        if lead:
            _truncate_metrics(metrics_path, step)
    if lead:
        (workdir / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
    eval_batches = task.eval_batches
    if parallel is not None:
        # params replicated, batches split over the data axis; XLA reduces the gradients
        state = parallel.place_state(state)
        eval_batches = [parallel.place_replicated(b) for b in eval_batches]

    start = int(state.step)
    backend = jax.default_backend()
    used = parallel.size * parallel.seq_size if parallel is not None else 1
    device_kind = jax.devices()[0].device_kind
    seq_note = f", time split over {parallel.seq_size}" if parallel is not None and parallel.seq_size > 1 else ""
    if progress:
        print(
            f"[rnnjax] {config.task}: {config.cell} H={config.hidden_size} on {backend} "
            f"({used} x {device_kind}{seq_note}, {jax.process_count()} process(es)); steps {start} -> {config.steps}; "
            f"run folder {workdir}"
        )

    def meta_now(state) -> dict[str, Any]:
        return {"step": int(state.step), "data_position": int(state.step), "config": cfg_dict, "versions": versions()}

    def log(record: dict[str, Any]) -> None:
        if not lead:
            return
        with metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, disable=not progress, mininterval=1.0, dynamic_ncols=True)
    t0, consecutive_bad, nonfinite = time.perf_counter(), 0, 0
    last_eval: dict[str, float] = {}
    done_here = 0
    # The host never waits for the device between these points: the step counter lives on the host,
    # the non-finite counts on the device (read at log, eval and checkpoint points), and the next
    # batch is made while the device still computes the last step (JAX dispatches asynchronously).
    health = {"streak": jnp.int32(0), "total": jnp.int32(0), "limit_step": jnp.int32(-1)}
    limit = jnp.int32(max_nonfinite)
    step = start
    try:
        while step < config.steps:
            batch = task.train_batch(step)
            if parallel is not None:
                batch = parallel.place_batch(batch, distributed.batch_axes(task, batch))
            state, metrics = update(state, batch)
            done_here += 1
            step += 1
            health = _count_nonfinite(health, metrics["finite"], jnp.int32(step), limit)
            at_log = step % config.log_every == 0 or step == config.steps
            at_eval = step % config.eval_every == 0 or step == config.steps
            at_ckpt = step % config.checkpoint_every == 0 or step == config.steps
            if at_log or at_eval or at_ckpt:
                seen = jax.device_get(health)
                consecutive_bad, nonfinite = int(seen["streak"]), int(seen["total"])
                if seen["limit_step"] >= 0:
                    raise NonFiniteError(
                        f"{max_nonfinite} consecutive steps with a non-finite loss or gradient, the last at step "
                        f"{int(seen['limit_step'])}; the last checkpoint holds finite state. "
                        "Lower learning_rate or grad_clip."
                    )
            if at_log:
                record = {"step": step, "split": "train", **{k: float(v) for k, v in metrics.items() if k != "finite"}}
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            if at_eval:
                last_eval = evaluate(eval_fn, state.params, eval_batches)
                log({"step": step, "split": "eval", **last_eval})
            if at_ckpt and consecutive_bad == 0:
                ckpt.save(state, meta_now(state))
            bar.update(1)
            if stop_after is not None and done_here >= stop_after:
                break
    finally:
        bar.close()
        ckpt.close()

    jax.block_until_ready(state)
    elapsed = time.perf_counter() - t0
    if step < config.steps:  # stopped early on request: leave the run resumable
        return {"stopped_at": int(state.step)}
    if not last_eval:
        last_eval = evaluate(eval_fn, state.params, eval_batches)
    summary = {
        "experiment": config.task,
        "cell": config.cell,
        "steps": config.steps,
        "eval": last_eval,
        "baselines": task.baselines,
        "nonfinite_steps": nonfinite,
        "backend": backend,
        "device": device_kind,
        "devices": used,
        "seq_devices": parallel.seq_size if parallel is not None else 1,
        "processes": jax.process_count(),
        "seconds_this_invocation": round(elapsed, 2),
        "steps_per_second_this_invocation": round(done_here / elapsed, 2) if elapsed > 0 else math.nan,
        "versions": versions(),
    }
    if not lead:
        return summary
    if task.report is not None:
        summary["report"] = task.report(model, state.params, workdir)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if plot:
        plot_curves(
            metrics_path, workdir / "curves.png", title=f"{config.task}: {config.cell}", baselines=task.baselines
        )
    return summary


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def plot_curves(metrics_path: Path, out: Path, *, title: str, baselines: dict[str, float]) -> None:
    """Training and evaluation loss against step, with the task's baseline as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for split, style in (("train", "-"), ("eval", "o-")):
        pts = [(r["step"], r["loss"]) for r in records if r["split"] == split]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=f"{split} loss", markersize=3)
    for name, value in baselines.items():
        if name in ("loss", "mse"):
            ax.axhline(value, ls="--", c="gray", label=f"baseline {name} {value:.3g}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def load_run(workdir: str | os.PathLike, step: int | None = None):
    """`(config, task, model, params)` of a run folder, from its latest (or given) checkpoint."""
    workdir = Path(workdir)
    saved = json.loads((workdir / "config.json").read_text())
    module_name, _, cls_name = saved.pop("__class__").rpartition(".")
    import importlib

    config = getattr(importlib.import_module(module_name), cls_name)(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    )
    task = make_task(config.task, config)
    model = model_lib.build(task, config)
    tx = make_optimizer(config)
    init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model.init(init_key)
    like = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params), state_key)
    ckpt = Checkpoints(workdir / "checkpoints")
    try:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise RunFolderError(f"no checkpoint in {workdir / 'checkpoints'}")
        state = ckpt.restore(step, like)
    finally:
        ckpt.close()
    return config, task, model, state.params
