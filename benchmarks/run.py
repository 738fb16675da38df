"""Benchmark sequence-length scaling: rnnjax and its variants against flax, Equinox and PyTorch.

    python -m benchmarks.run                                 # LSTM and GRU, I=64 H=256 B=32, T=16..4096
    python -m benchmarks.run --kinds all --seq-lens 16 256   # every registered cell
    python -m benchmarks.run --impls rnnjax torch --seq-lens 16384

Each implementation runs in a process of its own (so thread pools and caches
do not interfere), measures compile time apart from steady-state time, takes
the median of several repetitions after a warm-up, and reports XLA's memory
analysis of the compiled step. Before trusting any timing the harness checks
that every implementation computed the same loss from the same mapped weights.
Results go to `benchmarks/results/<machine>-<date>.json`, tagged with the CPU,
core count, accelerator, library versions and date; `python -m
benchmarks.report FILE` turns them into a markdown table and log-log plots.
Peers that are not installed are skipped (`pip install -e ".[bench]"` and
`pip install torch==2.13.0` bring them).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

DEFAULT_IMPLS = (
    "rnnjax",
    "rnnjax-scan",
    "rnnjax-unroll4",
    "rnnjax-hoisted",
    "rnnjax-remat",
    "rnnjax-parallel",
    "flax",
    "flax-optimized",
    "equinox",
    "torch",
    "jax-cudnn",
)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import jax

    devices = jax.devices()
    versions = {}
    for pkg in ("rnnjax", "jax", "jaxlib", "flax", "equinox", "torch", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "hostname": platform.node(),
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def applicable(impl: str, kind: str) -> bool:
    """Peers and kind-specific variants (listed in PEERS_FOR) run for their kinds; rnnjax's generic
    variants run for every registered cell, the parallel scan only for cells with a linear form and
    the plain scan (`Scan(kernel=False)`) and the kernel (`Scan(kernel=True)`) only for cells that have a
    sequence kernel."""
    from benchmarks.impls import PEERS_FOR

    if any(impl in peers for peers in PEERS_FOR.values()):
        return impl in PEERS_FOR.get(kind, ())
    if impl == "rnnjax-parallel":
        import rnnjax

        return rnnjax.cells.spec(kind).has_linear_form or rnnjax.cells.spec(kind).has_matrix_form
    if impl == "rnnjax-pallas":  # the Pallas kernels: real-valued linear cells (not the complex LRU), matrix cells
        import jax
        import jax.numpy as jnp

        import rnnjax

        spec = rnnjax.cells.spec(kind)
        if spec.has_matrix_form:  # the chunkwise kernels: every matrix-memory cell
            return True
        if not spec.has_linear_form:
            return False
        cell = rnnjax.cells.get(kind, hidden_size=8)
        carry = cell.initial_carry(cell.init(jax.random.key(0), 1), ())
        return not jnp.iscomplexobj(carry)
    if impl == "rnnjax-seq" or impl.startswith("rnnjax-chunk"):
        import rnnjax

        return rnnjax.cells.spec(kind).has_matrix_form
    if impl in ("rnnjax-scan", "rnnjax-kernel"):
        import rnnjax

        return rnnjax.cells.get(kind, hidden_size=8).sequence is not None
    return impl.startswith("rnnjax")


# for matrix-memory cells: the quadratic form holds a [T, T] matrix per head and example, and
# mlstm-kernels' native JAX kernel unrolls a Python loop over chunks (at T = 16,384 it ran past 11 GB
# and 7 minutes of compilation on the 2-core machine); the chunk-size variants other than the
# default and 64 stop at 4096 to keep a full run within about half an hour there; memax's associative
# scan multiplies [dk, dk] matrices at every step of every level (2 s for a training step at T = 64)
MAX_SEQ_LEN = {
    "rnnjax-parallel": 4096,
    "mlstm-kernels": 4096,
    "rnnjax-chunk16": 4096,
    "rnnjax-chunk128": 4096,
    "memax": 1024,
}


def seq_lens_for(impl: str, kind: str, seq_lens: list[int]) -> list[int]:
    """The sequence lengths `impl` is timed at: all, except where its memory grows like T^2."""
    import rnnjax

    limit = MAX_SEQ_LEN.get(impl) if rnnjax.cells.spec(kind).has_matrix_form else None
    return [T for T in seq_lens if limit is None or T <= limit]


def run_worker(args: list[str], timeout: float) -> list[dict]:
    cmd = [sys.executable, "-m", "benchmarks.worker", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        partial = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        recs = [json.loads(line) for line in partial.splitlines() if line.startswith("{")]
        return recs + [{"error": f"timed out after {timeout:.0f} s"}]
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 and not recs:
        recs = [{"error": out.stderr[-1000:]}]
    return recs


def check_losses(records: list[dict], rtol: float) -> list[str]:
    """Same kind, same T: every implementation's loss must agree with rnnjax's (with the first
    implementation's where rnnjax was not timed), so that no run reports agreement unchecked."""
    problems = []
    for rec in records:
        if "loss" not in rec:
            continue
        same = [
            r
            for r in records
            if "loss" in r and r["kind"] == rec["kind"] and r["T"] == rec["T"] and r.get("dtype") == rec.get("dtype")
        ]
        ref = next((r for r in same if r.get("impl") == "rnnjax"), same[0])
        if ref is rec:
            continue
        rel = abs(rec["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-30)
        rec["loss_rel_diff"] = {"vs": ref["impl"], "rel": rel}
        if rel > rtol:
            problems.append(
                f"{rec['name']} {rec['kind']} T={rec['T']}: loss {rec['loss']} vs {ref['name']} {ref['loss']}"
            )
    return problems


def _write(out: Path, info: dict, args, records: list[dict], loss_check) -> dict:
    """Write the results file; `loss_check` None marks a run still in progress."""
    result = {
        "machine": info,
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "quiet")},
        "loss_check": loss_check if loss_check is not None else "run in progress (no loss check yet)",
        "records": records,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--kinds", nargs="+", default=["lstm", "gru"], help="cells to time, or 'all' for every registered one"
    )
    p.add_argument("--impls", nargs="+", default=list(DEFAULT_IMPLS))
    p.add_argument("--seq-lens", nargs="+", type=int, default=[16, 64, 256, 1024, 4096])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=20.0, help="per (implementation, T): stop repeating after this")
    p.add_argument("--timeout-s", type=float, default=1800.0, help="per implementation process")
    p.add_argument("--loss-rtol", type=float, default=1e-3)
    p.add_argument("--out", help="output JSON (default benchmarks/results/<backend>-<date>.json)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    import rnnjax

    kinds = rnnjax.cells.names() if args.kinds == ["all"] else args.kinds
    info = machine()
    peak = run_worker(["--peak"], timeout=300)
    info["matmul_peak_gflops"] = peak[0].get("matmul_peak_gflops") if peak else None
    out = Path(args.out or f"benchmarks/results/{info['backend']}-{info['date'][:10]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for kind in kinds:
        for impl in args.impls:
            lens = seq_lens_for(impl, kind, args.seq_lens)
            if not applicable(impl, kind) or not lens:
                continue
            worker_args = [
                "--impl",
                impl,
                "--kind",
                kind,
                "--seq-lens",
                *map(str, lens),
                "--batch",
                str(args.batch),
                "--input",
                str(args.input),
                "--hidden",
                str(args.hidden),
                "--dtype",
                args.dtype,
                "--reps",
                str(args.reps),
                "--budget-s",
                str(args.budget_s),
            ]
            recs = run_worker(worker_args, args.timeout_s)
            for rec in recs:
                rec.setdefault("impl", impl)
                rec.setdefault("kind", kind)
                if not args.quiet:
                    if "train" in rec:
                        print(
                            f"{kind:>8} {rec['name']:<42} T={rec['T']:>6}  train {rec['train']['median_ms']:9.2f} ms"
                            f"  forward {rec['forward']['median_ms']:9.2f} ms",
                            flush=True,
                        )
                    else:
                        print(f"{kind:>8} {impl:<42} {rec.get('skipped') or rec.get('error', '')[:120]}", flush=True)
            records.extend(recs)
            _write(out, info, args, records, None)  # after every implementation: an interrupted run keeps its results
    problems = check_losses(records, args.loss_rtol)
    result = _write(out, info, args, records, problems or "all implementations agree")
    if not args.quiet:
        print(f"loss check: {result['loss_check']}\nwrote {out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
