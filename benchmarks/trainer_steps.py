"""Steps per second of the one trainer on a small model, where the host's overhead shows.

    python -m benchmarks.trainer_steps                       # the trainer of this checkout
    PYTHONPATH=/path/to/other/checkout python benchmarks/trainer_steps.py   # another version's trainer

Trains the `adding` task with a tiny GRU (H = 16, batch 8, T = 20) for `--short`
and `--long` steps and reports the time per step of the difference, so that
compilation and set-up cancel; repeated `--reps` times, median. Logs every 100
steps, evaluates and checkpoints once at the end, as a real run's defaults would.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time


def time_run(steps: int) -> float:
    from experiments import config as config_lib
    from experiments import train

    sets = [
        "cell=gru",
        "hidden_size=16",
        "batch_size=8",
        "seq_len=20",
        f"steps={steps}",
        "log_every=100",
        f"eval_every={steps}",
        f"checkpoint_every={steps}",
        "warmup_steps=10",
    ]
    config = config_lib.resolve("adding", sets=sets)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train.train(config, tmp, progress=False, plot=False)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", type=int, default=100)
    p.add_argument("--long", type=int, default=1100)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    per_step = []
    for _ in range(args.reps):
        short, long = time_run(args.short), time_run(args.long)
        per_step.append((long - short) / (args.long - args.short))
    ms = statistics.median(per_step) * 1e3
    print(
        json.dumps(
            {
                "ms_per_step": round(ms, 3),
                "steps_per_s": round(1e3 / ms, 1),
                "all_ms": [round(1e3 * t, 3) for t in per_step],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
