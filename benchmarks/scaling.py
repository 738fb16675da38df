"""Data-parallel throughput against device count, with the trainer's own jitted update step.

    python -m benchmarks.scaling                      # CPU: 1, 2, 4, 8 forced host devices
    python -m benchmarks.scaling --devices 1 2 4 8    # on a GPU host: real devices

Each device count runs in its own process (on CPU the count is fixed by
`--xla_force_host_platform_device_count` when JAX starts). The global batch is
fixed, so ideal scaling halves the step time when the device count doubles.
Writes `benchmarks/results/scaling-<backend>-<date>.json` in the harness's
format (machine info + records) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

WORKER = """
import json, statistics, time, jax, jax.numpy as jnp
from experiments import config as c, distributed, model as m, train as t
from experiments.tasks import make
cfg = c.resolve("adding", sets={sets!r})
task = make("adding", cfg)
model = m.build(task, cfg)
tx = t.make_optimizer(cfg)
update = t.make_update_fn(model, task, tx)
params = model.init(jax.random.PRNGKey(0))
state = t.TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params), jax.random.PRNGKey(1))
dp = distributed.DataParallel.create({devices})
batches = [task.train_batch(s) for s in range(3)]
if dp is not None:
    state = dp.place_state(state)
    batches = [dp.place_batch(b, distributed.batch_axes(task, b)) for b in batches]
else:
    batches = [jax.device_put(b) for b in batches]
state, _ = update(state, batches[0]); jax.block_until_ready(state)
times = []
for k in range({reps}):
    t0 = time.perf_counter()
    state, metrics = update(state, batches[k % 3]); jax.block_until_ready(state)
    times.append(1e3 * (time.perf_counter() - t0))
print(json.dumps({{"devices": {devices}, "visible": len(jax.devices()), "backend": jax.default_backend(),
                  "train": {{"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
                            "reps": len(times)}}}}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--cell", default="lstm")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument(
        "--force-host-devices",
        action="store_true",
        default=None,
        help="CPU: force N host devices per run (default when no accelerator is found)",
    )
    p.add_argument("--out")
    args = p.parse_args(argv)
    from benchmarks.run import machine

    info = machine()
    force = args.force_host_devices if args.force_host_devices is not None else info["backend"] == "cpu"
    sets = [f"cell={args.cell}", f"seq_len={args.seq_len}", f"batch_size={args.batch}", f"hidden_size={args.hidden}"]
    records = []
    for n in args.devices:
        env = dict(os.environ)
        if force:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
        code = textwrap.dedent(WORKER.format(sets=sets, devices=n, reps=args.reps))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        rec = json.loads(lines[-1]) if lines else {"devices": n, "error": out.stderr[-800:]}
        rec["tokens_per_s"] = args.seq_len * args.batch / (rec["train"]["median_ms"] * 1e-3) if "train" in rec else None
        records.append(rec)
        print(json.dumps(rec), flush=True)
    result = {"machine": info, "config": {k: v for k, v in vars(args).items() if k != "out"}, "records": records}
    out_path = Path(args.out or f"benchmarks/results/scaling-{info['backend']}-{info['date'][:10]}.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    base = next((r for r in records if r.get("devices") == 1 and "train" in r), None)
    table = [
        f"Data-parallel training step, {args.cell} H={args.hidden}, T={args.seq_len}, global batch {args.batch}; "
        f"{info['cpu']}, {info['cores']} cores, backend {info['backend']}"
        + (" (forced host devices)" if force else ""),
        "",
        "| devices | step ms (median) | tokens/s | speed-up vs 1 |",
        "|---|---|---|---|",
    ]
    for r in records:
        if "train" in r:
            speed = f"{base['train']['median_ms'] / r['train']['median_ms']:.2f}x" if base else "-"
            table.append(f"| {r['devices']} | {r['train']['median_ms']:.1f} | {r['tokens_per_s']:.0f} | {speed} |")
    out_path.with_suffix(".md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
