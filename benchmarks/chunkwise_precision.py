"""Float32 and bfloat16 error of the matrix-memory cells' unrolls against float64, at T = 4096.

    python -m benchmarks.chunkwise_precision [--seq-len 4096] [--out FILE]

For each matrix-memory cell at its default initialisation (hidden 64, 4 heads,
batch 2, inputs N(0, 1)), the float64 sequential scan is the truth; the
float32 sequential scan, the float32 chunkwise form (the cell's default
chunk size) and the bfloat16 chunkwise form (float32 state) are run on the
same params and inputs rounded to their dtype, and each error is
`max |y - y64| / max |y64|` over all outputs. Writes a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import jax
import jax.numpy as jnp

import rnnjax


def error(got, want) -> float:
    got = jnp.asarray(got, jnp.float64)
    return float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = []
    with jax.enable_x64(True):
        for spec in rnnjax.cells.specs():
            if not spec.has_matrix_form:
                continue
            cell = {
                d: spec.build(hidden_size=64, num_heads=4, dtype=d) for d in (jnp.float64, jnp.float32, jnp.bfloat16)
            }
            params = cell[jnp.float32].init(jax.random.key(0), 16)
            xs = jax.random.normal(jax.random.key(1), (args.seq_len, 2, 16))
            cast = lambda tree, d: jax.tree_util.tree_map(lambda a: a.astype(d), tree)  # noqa: E731
            p16 = cast(params, jnp.bfloat16)
            x16 = xs.astype(jnp.bfloat16)
            # the truth for each precision's rounded params and inputs, in float64
            truth32 = rnnjax.unroll(cell[jnp.float64], cast(params, jnp.float64), xs, method=rnnjax.Scan())[1]
            truth16 = rnnjax.unroll(cell[jnp.float64], cast(p16, jnp.float64), cast(x16, jnp.float64),
                                    method=rnnjax.Scan())[1]  # fmt: skip
            run = lambda c, p_, x, **kw: jax.jit(lambda p_, x: rnnjax.unroll(c, p_, x, **kw)[1])(p_, x)  # noqa: E731
            rows.append((
                spec.name,
                cell[jnp.float32].matrix.chunk_size,
                error(run(cell[jnp.float32], params, xs.astype(jnp.float32), method=rnnjax.Scan()), truth32),
                error(run(cell[jnp.float32], params, xs.astype(jnp.float32), method=rnnjax.Chunkwise()), truth32),
                error(run(cell[jnp.bfloat16], p16, x16, method=rnnjax.Chunkwise()), truth16),
            ))  # fmt: skip
            print(rows[-1], flush=True)
    date = datetime.date.today().isoformat()
    lines = [
        f"Max relative output error against the float64 sequential scan, T = {args.seq_len}, hidden 64, 4 heads, "
        f"batch 2, default initialisation; {date}, `python -m benchmarks.chunkwise_precision`.",
        "",
        "| cell | chunk C | float32 sequential | float32 chunkwise | bfloat16 chunkwise (float32 state) |",
        "|---|---|---|---|---|",
    ] + [f"| {n} | {c} | {a:.1e} | {b:.1e} | {e:.1e} |" for n, c, a, b, e in rows]
    out = Path(args.out or f"benchmarks/results/chunkwise-precision-cpu-{date}.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
