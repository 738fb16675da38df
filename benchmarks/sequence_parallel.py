"""Memory and time per device of a training step with the time axis sharded over P devices.

    python -m benchmarks.sequence_parallel                      # P = 1, 2, 4, 8 forced host devices, T up to 2^20
    python -m benchmarks.sequence_parallel --cell gla           # a matrix-memory cell (4 heads of 16, chunkwise)
    python -m benchmarks.sequence_parallel --tiny               # seconds

For each P (a fresh process with `--xla_force_host_platform_device_count=P`), an LRU
(H = 64, batch 1, input 16; or `--cell`) is unrolled with `method=rnnjax.Sharded("seq")` inside `jax.shard_map`
over P devices (P = 1: the same call on one device), and the gradient of a mean-square
loss is compiled for each T. Reported: XLA's memory analysis of the compiled step per
device (arguments + outputs + temporaries), and the median time of a step where it fits
`--time-up-to`. On forced host devices the P "devices" share the same cores, so the time
shows the overhead of the scheme, not a speed-up; the memory per device is the point.
Writes `benchmarks/results/sequence-parallel[-CELL]-cpu-<date>.{json,md}` (no tag for the LRU).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKER = """
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
import rnnjax

seq_lens, time_up_to, name = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
n = len(jax.devices())
mesh = Mesh(np.array(jax.devices()), ("seq",))
heads = {"num_heads": 4} if rnnjax.cells.spec(name).has_matrix_form else {}
cell = rnnjax.cells.get(name, hidden_size=64, **heads)
params = cell.init(jax.random.key(0), 16)

def loss(params, xs):
    def body(x):
        _, ys = rnnjax.unroll(cell, params, x, method=rnnjax.Sharded("seq"))
        return jax.lax.psum(jnp.sum(ys.astype(jnp.float32) ** 2), "seq")
    return jax.shard_map(body, mesh=mesh, in_specs=P("seq"), out_specs=P(), check_vma=False)(xs)

step = jax.jit(jax.grad(loss))
for T in seq_lens:
    xs = jax.ShapeDtypeStruct((T, 1, 16), jnp.float32, sharding=jax.sharding.NamedSharding(mesh, P("seq")))
    t0 = time.perf_counter()
    compiled = step.lower(params, xs).compile()
    rec = {"devices": n, "T": T, "compile_s": time.perf_counter() - t0}
    mem = compiled.memory_analysis()
    rec["bytes_per_device"] = int(
        mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes - mem.alias_size_in_bytes
    )
    rec["temp_bytes_per_device"] = int(mem.temp_size_in_bytes)
    if T <= time_up_to:
        x = jax.device_put(jax.random.normal(jax.random.key(1), (T, 1, 16)), jax.sharding.NamedSharding(mesh, P("seq")))
        jax.block_until_ready(compiled(params, x))
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(params, x))
            times.append(time.perf_counter() - t0)
        rec["step_ms"] = 1e3 * sorted(times)[1]
    print(json.dumps(rec), flush=True)
"""


def run(devices: int, seq_lens: list[int], time_up_to: int, cell: str = "lru") -> list[dict]:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(seq_lens), str(time_up_to), cell],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        recs.append({"devices": devices, "error": out.stderr[-1500:]})
    return recs


def table(records: list[dict], cell: str = "lru") -> str:
    Ts = sorted({r["T"] for r in records if "T" in r})
    Ps = sorted({r["devices"] for r in records})
    by = {(r["devices"], r["T"]): r for r in records if "T" in r}
    lines = [
        "Memory per device of the compiled training step, MB (XLA memory analysis), and step time in ms where "
        f"measured; {'LRU' if cell == 'lru' else cell + ' (4 heads)'} H=64, batch 1, input 16, float32, time sharded "
        "over P forced host devices.",
        "",
        "| T | " + " | ".join(f"P={p}" for p in Ps) + " |",
        "|---|" + "---|" * len(Ps),
    ]
    for T in Ts:
        cells = []
        for p in Ps:
            r = by.get((p, T))
            if r is None:
                cells.append("-")
                continue
            text = f"{r['bytes_per_device'] / 2**20:.1f} MB"
            if "step_ms" in r:
                text += f", {r['step_ms']:.0f} ms"
            cells.append(text)
        lines.append(f"| {T:,} | " + " | ".join(cells) + " |")
    errors = [f"P={r['devices']}: {r['error'][-300:]}" for r in records if "error" in r]
    return "\n".join(lines + ([""] + errors if errors else [])) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--devices", nargs="+", type=int, default=[1, 2, 4, 8])
    p.add_argument("--cell", default="lru", help="a registered cell with a parallel or chunkwise form")
    p.add_argument("--out", help="results JSON (default benchmarks/results/sequence-parallel-cpu-<date>.json)")
    args = p.parse_args(argv)
    seq_lens = [64, 128] if args.tiny else [2**14, 2**16, 2**18, 2**20]
    time_up_to = 128 if args.tiny else 2**18
    date = datetime.date.today().isoformat()
    tag = "" if args.cell == "lru" else f"-{args.cell}"
    out = Path(args.out or f"benchmarks/results/sequence-parallel{tag}-cpu-{date}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    t0 = time.perf_counter()
    for devices in args.devices:
        records += run(devices, seq_lens, time_up_to, args.cell)
    md = table(records, args.cell)
    meta = {"date": date, "cell": args.cell, "seconds": time.perf_counter() - t0}
    out.write_text(json.dumps({**meta, "records": records}, indent=1))
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0 if not any("error" in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
