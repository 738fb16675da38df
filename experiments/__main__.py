"""Command line: `python -m experiments ...` (installed as `rnnjax-train`).

python -m experiments list                          # the experiments and their configs
python -m experiments train adding --set cell=gru seq_len=200
python -m experiments train adding --resume         # continue runs/adding
python -m experiments train charlm_long --devices 4 --seq-devices 2   # time split over 2 of 4 devices
python -m experiments sweep adding --cells elman lstm --grid seq_len=10,50 --seeds 0 1
python -m experiments study                         # the vanishing-gradient study (main job)
python -m experiments recall --quick                # the recall study: accuracy against state size
python -m experiments predict runs/sentiment "The food is bad"
python -m experiments predict runs/translate "nine hundred and ninety-nine"
python -m experiments predict runs/segment "thefoodisbad"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments import config as config_lib


def _list(_args) -> int:
    print("experiments (python -m experiments train NAME [--smoke] [--set key=value ...]):")
    for name in config_lib.experiment_names():
        module = config_lib.load(name)
        doc = (module.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<12} {doc}")
        fields = config_lib.to_dict(module.Config())
        fields.pop("__class__")
        print("               keys: " + ", ".join(f"{k}={v}" for k, v in fields.items()))
    print("study:\n  vanishing    the vanishing-gradient study (python -m experiments study)")
    return 0


def _train(args) -> int:
    from experiments import distributed, train

    distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    config = config_lib.resolve(args.experiment, smoke=args.smoke, sets=args.set)
    workdir = args.workdir or f"runs/{args.experiment}{'-smoke' if args.smoke else ''}"
    summary = train.train(
        config,
        workdir,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        plot=not args.no_plot,
        stop_after=args.stop_after,
        devices=args.devices,
        seq_devices=args.seq_devices,
        debug_nans=args.debug_nans,
        max_nonfinite=args.max_nonfinite,
    )
    print(
        json.dumps(
            {k: summary[k] for k in ("eval", "baselines", "nonfinite_steps", "backend") if k in summary}, indent=2
        )
    )
    print(f"run folder: {workdir}")
    return 0


def _predict(args) -> int:
    import numpy as np

    from experiments import train

    _, task, model, params = train.load_run(args.run)
    if "predict" in task.extra:  # translate, segment: one line of text per input
        for line in task.extra["predict"](model, params, args.texts):
            print(line)
        return 0
    predict_proba = task.extra.get("predict_proba")
    if predict_proba is None:
        raise config_lib.ConfigError(
            f"run {args.run} is a {task.name!r} run; predict works on runs of sentiment, translate and segment"
        )
    probs = predict_proba(model, params, args.texts)
    classes = task.extra["classes"]
    for text, p in zip(args.texts, probs, strict=True):
        k = int(np.argmax(p))
        print(f"{classes[k]:>8}  (p={p[k]:.2f})  {text}")
    return 0


def _sweep(args) -> int:
    from experiments import sweep

    key, _, values = args.grid.partition("=")
    if not values:
        raise config_lib.ConfigError(f"--grid expects key=v1,v2,..., got {args.grid!r}")
    workdir = args.workdir or f"runs/sweep-{args.experiment}"
    sweep.run_sweep(
        args.experiment,
        cells=args.cells,
        key=key,
        values=values.split(","),
        seeds=args.seeds,
        workdir=workdir,
        sets=args.set,
        smoke=args.smoke,
        success_below=args.success_below,
        progress=True,
    )
    print(Path(workdir, "sweep.md").read_text())
    return 0


def _study(args) -> int:
    from experiments import vanishing_gradients as study

    cfg = study.SMOKE if args.smoke else study.StudyConfig()
    study.run(cfg, args.workdir or f"runs/vanishing{'-smoke' if args.smoke else ''}", smoke=args.smoke)
    return 0


def _recall(args) -> int:
    import dataclasses

    from experiments import recall_study as study

    cfg = study.SMOKE if args.smoke else study.QUICK if args.quick else study.StudyConfig()
    if args.mixers:
        for mixer in args.mixers:
            try:
                study.mixer_spec(mixer)
            except ValueError as err:
                raise config_lib.ConfigError(f"--mixers: {err}") from None
        cfg = dataclasses.replace(cfg, mixers=tuple(args.mixers))
    for name in ("learning_rates", "widths", "seeds"):
        if getattr(args, name):
            cfg = dataclasses.replace(cfg, **{name: tuple(getattr(args, name))})
    variant = "-smoke" if args.smoke else "-quick" if args.quick else ""
    study.run(cfg, args.workdir or f"runs/recall{variant}")
    return 0


def _tracking(args) -> int:
    import dataclasses

    from experiments import tracking_study as study

    cfg = study.SMOKE if args.smoke else study.StudyConfig()
    if args.mixers:
        unknown = [m for m in args.mixers if m not in study.MIXERS]
        if unknown:
            raise config_lib.ConfigError(f"--mixers: unknown {unknown}; choose from: {', '.join(study.MIXERS)}")
        cfg = dataclasses.replace(cfg, mixers=tuple(args.mixers))
    if args.tasks:
        cfg = dataclasses.replace(cfg, tasks=tuple(args.tasks))
    if args.seeds:
        cfg = dataclasses.replace(cfg, seeds=tuple(args.seeds))
    if args.steps is not None:
        if args.steps < 1:
            raise config_lib.ConfigError(f"--steps: expected a positive number of training steps, got {args.steps}")
        cfg = dataclasses.replace(cfg, steps=args.steps)
    study.run(cfg, args.workdir or f"runs/tracking{'-smoke' if args.smoke else ''}")
    return 0


def _mnist1d(args) -> int:
    import dataclasses

    from experiments import mnist1d

    cfg = mnist1d.SMOKE if args.smoke else mnist1d.StudyConfig()
    for name in ("models", "variants", "seeds"):
        if getattr(args, name):
            cfg = dataclasses.replace(cfg, **{name: tuple(getattr(args, name))})
    mnist1d.run(cfg, args.workdir or f"runs/mnist1d{'-smoke' if args.smoke else ''}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list the experiments and their config keys").set_defaults(fn=_list)

    t = sub.add_parser("train", help="train one experiment config")
    t.add_argument("experiment", help=f"one of: {', '.join(config_lib.experiment_names())}")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields (type-checked)")
    t.add_argument("--smoke", action="store_true", help="the tiny configuration the test suite runs")
    t.add_argument("--workdir", help="run folder (default runs/EXPERIMENT)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in the run folder")
    t.add_argument("--overwrite", action="store_true", help="delete an existing run folder first")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--no-plot", action="store_true", help="no curves.png at the end")
    t.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="N",
        help="stop after N updates in this invocation, as if interrupted (after a checkpoint); --resume continues",
    )
    t.add_argument("--debug-nans", action="store_true", help="JAX's NaN checking: raise at the first NaN (slow)")
    t.add_argument(
        "--max-nonfinite",
        type=int,
        default=10,
        help="stop after this many consecutive steps with NaN/Inf loss or gradients (each is skipped)",
    )
    t.add_argument(
        "--devices",
        type=int,
        default=None,
        help="data-parallel over this many devices (-1: all); the batch is split across them",
    )
    t.add_argument(
        "--seq-devices",
        type=int,
        default=None,
        help="of the --devices, how many split the time axis (a data x seq mesh; cells with a parallel or "
        "chunkwise form, a loss at every step)",
    )
    t.add_argument("--coordinator", help="multi-host: HOST:PORT of process 0 (or 'auto' under SLURM)")
    t.add_argument("--num-processes", type=int, help="multi-host: total number of processes")
    t.add_argument("--process-id", type=int, help="multi-host: this process's index")
    t.set_defaults(fn=_train)

    pr = sub.add_parser("predict", help="run a trained sentiment, translate or segment model on your text")
    pr.add_argument("run", help="the run folder, e.g. runs/sentiment, runs/translate, runs/segment")
    pr.add_argument("texts", nargs="+", help='e.g. "The food is bad", "twenty-seven", "thefoodisbad"')
    pr.set_defaults(fn=_predict)

    s = sub.add_parser("sweep", help="one experiment over cells x one config axis x seeds")
    s.add_argument("experiment")
    s.add_argument("--cells", nargs="+", default=["elman", "lstm", "gru"])
    s.add_argument("--grid", required=True, metavar="KEY=V1,V2,...")
    s.add_argument("--seeds", nargs="+", type=int, default=[0])
    s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    s.add_argument("--smoke", action="store_true")
    s.add_argument("--success-below", type=float, default=None, help="count runs with metric below this as solved")
    s.add_argument("--workdir")
    s.set_defaults(fn=_sweep)

    st = sub.add_parser("study", help="the vanishing-gradient study: plain RNN vs LSTM/GRU (the main job)")
    st.add_argument("--smoke", action="store_true")
    st.add_argument("--workdir")
    st.set_defaults(fn=_study)

    r = sub.add_parser("recall", help="the recall study: MQAR / selective copy / induction accuracy against state size")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a smaller grid: about 10 minutes on 2 CPU cores")
    g.add_argument("--smoke", action="store_true", help="the tiny grid the test suite runs")
    r.add_argument("--mixers", nargs="+", help="only these mixers (registered cells, attention, swa, the variants)")
    r.add_argument(
        "--learning-rates", type=float, nargs="+", help="the rates each mixer is tuned over (one: no tuning)"
    )
    r.add_argument("--widths", type=int, nargs="+", help="the model widths (default 32 64)")
    r.add_argument("--seeds", type=int, nargs="+", help="the seeds (default 0 1)")
    r.add_argument("--workdir", help="run folder (default runs/recall, runs/recall-quick, runs/recall-smoke)")
    r.set_defaults(fn=_recall)

    tr = sub.add_parser("tracking", help="the tracking study: parity, mod 3, S3, S5 at longer lengths than trained")
    tr.add_argument("--smoke", action="store_true", help="the tiny grid the test suite runs")
    tr.add_argument("--mixers", nargs="+", help="only these mixers (labels of experiments/tracking_study.py's MIXERS)")
    tr.add_argument("--tasks", nargs="+", choices=["parity", "mod3", "s3", "s5"], help="only these tasks")
    tr.add_argument("--seeds", type=int, nargs="+", help="the seeds (default: the study's)")
    tr.add_argument("--steps", type=int, help="training steps of every run (default: the study's)")
    tr.add_argument("--workdir", help="run folder (default runs/tracking, runs/tracking-smoke)")
    tr.set_defaults(fn=_tracking)

    m1 = sub.add_parser("mnist1d", help="MNIST-1D: the cells as sequence classifiers beside the paper's baselines")
    m1.add_argument("--smoke", action="store_true", help="the tiny run the test suite runs")
    m1.add_argument("--models", nargs="+", help="only these models (logistic, mlp, cnn, the recurrent ones)")
    m1.add_argument("--variants", nargs="+", choices=("default", "shuffled"), help="the datasets (default: both)")
    m1.add_argument("--seeds", type=int, nargs="+", help="the seeds (default: 0 1 2)")
    m1.add_argument("--workdir", help="run folder (default runs/mnist1d, runs/mnist1d-smoke)")
    m1.set_defaults(fn=_mnist1d)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the run-folder and non-finite errors carry their own message
        from experiments.tasks import InputError
        from experiments.tasks.data import DataError
        from experiments.train import NonFiniteError, RunFolderError

        if isinstance(err, (RunFolderError, NonFiniteError, DataError, FileNotFoundError, InputError)):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
