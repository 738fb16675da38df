"""How many hidden-unit blocks the LSTM kernel should use: one against two, by hidden size.

    python -m benchmarks.kernel_blocks                      # H = 64 ... 512, B = 32, T = 128
    python -m benchmarks.kernel_blocks --hidden 128 256 --batch 8

Times the kernel's forward and training step (gradient of a mean-square loss of
the outputs w.r.t. the params) and its compile time with `blocks=1` and
`blocks=2` side by side in one process, medians after a warm-up. The result
chooses `rnnjax._kernels.layout.BLOCKED_FROM`. Writes
`benchmarks/results/kernel-blocks-<backend>-<date>.json` (machine info + records)
and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks.run import machine
from rnnjax._kernels import lstm as lstm_kernel


def _time(fn, args, reps: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def measure(H: int, B: int, T: int, I: int, blocks: int, reps: int) -> dict:
    k = jax.random.split(jax.random.key(0), 3)
    params = {
        "w_x": 0.1 * jax.random.normal(k[0], (I, 4 * H)),
        "w_h": 0.06 * jax.random.normal(k[1], (H, 4 * H)),
        "b": jnp.zeros(4 * H),
    }
    xs = jax.random.normal(k[2], (T, B, I))
    h0 = jnp.zeros((B, H))

    def loss(p, x):
        return jnp.mean(lstm_kernel.lstm_sequence(p, x, h0, h0, blocks=blocks)[0] ** 2)

    forward = jax.jit(lambda p, x: lstm_kernel.lstm_sequence(p, x, h0, h0, blocks=blocks)[0])
    t0 = time.perf_counter()
    train = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    compile_s = time.perf_counter() - t0
    return {
        "H": H,
        "B": B,
        "T": T,
        "I": I,
        "blocks": blocks,
        "train_compile_s": compile_s,
        "forward_ms": _time(forward, (params, xs), reps),
        "train_ms": _time(train, (params, xs), reps),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--input", type=int, default=64)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    info = machine()
    records = [
        measure(H, args.batch, args.seq_len, args.input, blocks, args.reps) for H in args.hidden for blocks in (1, 2)
    ]
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, backend {info['backend']}; {info['date']}.",
        f"LSTM kernel, B={args.batch}, T={args.seq_len}, I={args.input}, float32, medians of {args.reps}.",
        "",
        "| H | forward ms, 1 block | 2 blocks | training ms, 1 block | 2 blocks | compile s, 1 block | 2 blocks |",
        "|---|---|---|---|---|---|---|",
    ]
    for H in args.hidden:
        one, two = (next(r for r in records if r["H"] == H and r["blocks"] == b) for b in (1, 2))
        lines.append(
            f"| {H} | {one['forward_ms']:.2f} | {two['forward_ms']:.2f} | {one['train_ms']:.2f} | "
            f"{two['train_ms']:.2f} | {one['train_compile_s']:.2f} | {two['train_compile_s']:.2f} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    out = args.out or Path("benchmarks/results") / f"kernel-blocks-{info['backend']}-{info['date'][:10]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"machine": info, "config": vars(args) | {"out": str(out)}, "records": records}, indent=1) + "\n"
    )
    out.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
