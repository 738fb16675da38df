"""The whole accelerator check in one command, ready for the minutes a GPU is lent.

    python -m benchmarks.accelerator              # on a GPU: about 7 minutes (an H200, 2026-12-04)
    python -m benchmarks.accelerator --tiny       # the same code paths at toy sizes, on the CPU, in seconds

In order, each step writing what it has before the next starts (an interrupted run keeps its results):

1. the device and versions;
2. the device-relevant tests on the device (unroll forms and sequence kernels against the
   step loop, the chunkwise form against the sequential one);
3. determinism: the same gradient computed in two fresh processes, bit for bit (on a GPU with
   `XLA_FLAGS=--xla_gpu_deterministic_ops=true`);
4. the sequence-length sweep, float32 then bfloat16: the LSTM and GRU (rnnjax's default, the
   plain scan, the sequence kernel with `Scan(kernel=True)` (cuDNN for the LSTM in float32), flax,
   Equinox, JAX's cuDNN LSTM), the linear cells (sequential against the
   parallel scan and the Pallas linear-scan kernel) and the matrix-memory cells (sequential, parallel,
   chunkwise, and the Pallas chunkwise kernels).

Results: `benchmarks/results/<device>-<date>.json` (`--out`), `.md` tables and plots per dtype,
each tagged with the device. The sweep stops starting new work when `--budget-s` is spent.
`--tiny` is what the test suite runs, so that the GPU run cannot fail on a typo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# (section, kinds, implementations): the order is the priority when time runs short
SWEEP = (
    ("lstm-gru", ("lstm", "gru"), ("rnnjax", "rnnjax-scan", "rnnjax-kernel", "jax-cudnn", "flax", "equinox")),
    ("linear", ("rglru", "lru", "s5", "mingru"), ("rnnjax-seq-linear", "rnnjax-parallel", "rnnjax-pallas")),
    (
        "matrix",
        ("gla", "gated_deltanet", "mlstm", "ssd", "deltanet"),
        ("rnnjax", "rnnjax-seq", "rnnjax-parallel", "rnnjax-pallas"),
    ),
)
# T = 65,536 left out: on the H200 its ratios repeated those at 16,384, and the sequential scans' 2.3 s
# training steps there took a third of the first run's sweep
FULL = {"seq_lens": [256, 1024, 4096, 16384], "batch": 16, "input": 64, "hidden": 256, "reps": 5}
TINY = {"seq_lens": [8], "batch": 2, "input": 4, "hidden": 8, "reps": 1}
TESTS = [
    "tests/test_unroll.py",
    "tests/test_kernels.py",  # the cuDNN LSTM against the scan runs on a GPU only
    "tests/test_chunkwise.py",
    "tests/test_pallas_scan.py",  # the Pallas kernels compiled for the device
]
TINY_TESTS = ["tests/test_chunkwise.py::test_errors_name_the_argument"]
# --tiny: one cell per section, every implementation of it
TINY_SWEEP = tuple((section, kinds[:1], impls) for section, kinds, impls in SWEEP)


def by_priority(plan):
    """The sections' kinds round-robin (lstm, rglru, gla, gru, lru, ...): when the budget runs out, every
    section has measured its first cells, which are the ones the GPU defaults are decided on."""
    rows, depth = [], max(len(kinds) for _, kinds, _ in plan)
    for i in range(depth):
        rows += [(section, kinds[i : i + 1], impls) for section, kinds, impls in plan if i < len(kinds)]
    return tuple(rows)


def device_name(info: dict) -> str:
    """`h100`, `cpu`, ...: the results' file name prefix."""
    if info["backend"] == "cpu":
        return "cpu"
    kind = info["devices"][0].lower()
    for short in ("h200", "h100", "a100", "l4", "v100", "t4", "tpu"):
        if short in kind:
            return short
    return kind.replace(" ", "-")


def run_tests(paths: list[str], timeout: float, workers: int = 0, log: Path | None = None) -> dict:
    """pytest on `paths`; with `workers`, that many processes share the device, each allocating as it goes
    (JAX would otherwise preallocate 75% of the device's memory in each). pytest's whole output goes to
    `log` (the failures' tracebacks: the first GPU run kept only their names)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider", "-n", str(workers), *paths]
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false") if workers else None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        text, rc = out.stdout + out.stderr, out.returncode
        tail = out.stdout.strip().splitlines()[-1:] or [""]
    except subprocess.TimeoutExpired as err:
        text, rc = (err.stdout or b"").decode(errors="replace"), -1
        tail = [f"timed out after {timeout:.0f} s"]
    if log is not None:
        log.write_text(text)
    result = {"paths": paths, "returncode": rc, "summary": tail[0], "seconds": round(time.perf_counter() - t0, 1)}
    if rc not in (0, -1):  # the failing tests by name (pytest -ra), for the results file
        result["failures"] = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))][:40]
    return result


def gradient_digest() -> str:
    """A hash of the gradients of an LSTM, a GRU (their default paths) and a chunkwise Gated DeltaNet."""
    import jax
    import jax.numpy as jnp

    import rnnjax

    xs = jax.random.normal(jax.random.key(1), (64, 4, 16))
    digest = hashlib.sha256()
    for name in ("lstm", "gru", "gated_deltanet"):
        cell = rnnjax.cells.get(name, hidden_size=32)
        params = cell.init(jax.random.key(0), 16)
        grads = jax.jit(jax.grad(lambda p, cell=cell: jnp.sum(rnnjax.unroll(cell, p, xs)[1] ** 2)))(params)
        for leaf in jax.tree_util.tree_leaves(grads):
            digest.update(jax.device_get(leaf).tobytes())
    return digest.hexdigest()


def check_determinism(backend: str, timeout: float) -> dict:
    env = dict(os.environ)
    if backend == "gpu":  # an unknown XLA flag is fatal, so only where it exists
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
    cmd = [sys.executable, "-m", "benchmarks.accelerator", "--digest"]
    digests = []
    for _ in range(2):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        digests.append(out.stdout.strip().splitlines()[-1] if out.returncode == 0 else f"error: {out.stderr[-300:]}")
    ok = not any(d.startswith("error") for d in digests)
    return {"xla_flags": env.get("XLA_FLAGS", ""), "digests": digests, "identical": ok and digests[0] == digests[1]}


def sweep(plan, sizes: dict, dtypes: list[str], deadline: float, info: dict, out: Path, log) -> list[dict]:
    from benchmarks.run import applicable, run_worker, seq_lens_for

    records = []
    for dtype in dtypes:  # "float32,bfloat16" times both dtypes in one worker process (--tiny)
        for section, kinds, impls in plan:
            for kind in kinds:
                for impl in impls:
                    # the sequential scan of a linear cell ("auto" is the parallel scan off the CPU)
                    worker_impl = "rnnjax-seq" if impl == "rnnjax-seq-linear" else impl
                    ok = applicable("rnnjax-parallel" if impl == "rnnjax-seq-linear" else impl, kind)
                    lens = seq_lens_for(worker_impl, kind, sizes["seq_lens"])
                    if not ok or not lens:
                        continue
                    left = deadline - time.monotonic()
                    if left < 5:
                        log(f"  budget spent: skipping {section} {kind} {impl} {dtype}")
                        records.append({"impl": worker_impl, "kind": kind, "dtype": dtype, "skipped": "budget spent"})
                        continue
                    args = ["--impl", worker_impl, "--kind", kind, "--seq-lens", *map(str, lens), "--dtype", dtype]
                    args += ["--batch", str(sizes["batch"]), "--input", str(sizes["input"])]
                    args += ["--hidden", str(sizes["hidden"]), "--reps", str(sizes["reps"]), "--budget-s", "3"]
                    for rec in run_worker(args, timeout=left):
                        rec.setdefault("impl", worker_impl)
                        rec.setdefault("kind", kind)
                        rec.setdefault("dtype", dtype)
                        rec["section"] = section
                        records.append(rec)
                        log(describe(rec))
                    write(out, info, sizes, records, None)
    return records


def describe(rec: dict) -> str:
    where = f"  {rec['dtype']:>8} {rec['kind']:>14}"
    if "train" not in rec:
        return f"{where} {rec['impl']:<34} {rec.get('skipped') or rec.get('error')}"
    times = f"train {rec['train']['median_ms']:9.2f} ms  forward {rec['forward']['median_ms']:9.2f} ms"
    return f"{where} {rec['name']:<34} T={rec['T']:>6} {times}"


def write(out: Path, info: dict, sizes: dict, records: list[dict], loss_check) -> dict:
    result = {
        "machine": info,
        "config": {**sizes, "dtype": "per record"},
        "loss_check": loss_check if loss_check is not None else "run in progress (no loss check yet)",
        "records": records,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def report(result: dict, out: Path) -> list[Path]:
    """One markdown file with a section per dtype, and plots per dtype and cell."""
    from benchmarks.report import plots, tables

    md, written = [f"# Accelerator check: {', '.join(result['machine']['devices'])}", ""], []
    for key in ("tests", "determinism"):
        if key in result:
            md += [f"**{key}**: `{json.dumps(result[key])}`", ""]
    for dtype in dict.fromkeys(r["dtype"] for r in result["records"] if "dtype" in r):
        sub = {
            **result,
            "config": {**result["config"], "dtype": dtype},
            "records": [r for r in result["records"] if r.get("dtype") == dtype],
        }
        md += [f"## {dtype}", "", tables(sub)]
        written += plots(sub, out.with_name(f"{out.stem}-{dtype}"))
    out.with_suffix(".md").write_text("\n".join(md))
    return [out.with_suffix(".md"), *written]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="toy sizes on any backend: what the test suite runs")
    p.add_argument("--out", help="results JSON (default benchmarks/results/<device>-<date>.json)")
    p.add_argument(
        "--budget-s", type=float, default=None, help="the sweep starts no new work after this (default 300 s)"
    )
    p.add_argument("--skip-tests", action="store_true", help="skip step 2 (the tests)")
    p.add_argument("--seq-lens", type=int, nargs="+", help=f"the sweep's lengths (default {FULL['seq_lens']})")
    p.add_argument("--digest", action="store_true", help=argparse.SUPPRESS)  # one process of the determinism check
    args = p.parse_args(argv)
    if args.digest:
        print(gradient_digest())
        return 0

    from benchmarks.run import check_losses, machine, run_worker

    t_start = time.monotonic()
    info = machine()
    if not args.tiny:
        peak = run_worker(["--peak"], timeout=120)
        info["matmul_peak_gflops"] = peak[0].get("matmul_peak_gflops") if peak else None
    sizes = dict(TINY if args.tiny else FULL)
    if args.seq_lens:
        sizes["seq_lens"] = args.seq_lens
    budget = args.budget_s if args.budget_s is not None else 300.0
    out = Path(args.out or f"benchmarks/results/{device_name(info)}-{info['date'][:10]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    log(f"[accelerator] {info['backend']}: {', '.join(info['devices'])}; jax {info['versions'].get('jax')}")

    extra = {}
    if not args.skip_tests:
        # on the accelerator machine's many cores, four processes compile the tests' programs side by side
        log_path = out.with_name(f"{out.stem}-tests.txt")
        if args.tiny:
            extra["tests"] = run_tests(TINY_TESTS, timeout=120, log=log_path)
        else:
            extra["tests"] = run_tests(TESTS, 200, workers=4, log=log_path)
        log(f"[accelerator] tests: {extra['tests']['summary']} ({extra['tests']['seconds']} s)")
    extra["determinism"] = check_determinism(info["backend"], timeout=300)
    log(f"[accelerator] determinism: identical={extra['determinism']['identical']}")

    deadline = time.monotonic() + budget  # the sweep starts no work after this
    # float32 first, all of it, then bfloat16; --tiny times both in one process per implementation
    dtypes = ["float32,bfloat16"] if args.tiny else ["float32", "bfloat16"]
    records = sweep(TINY_SWEEP if args.tiny else by_priority(SWEEP), sizes, dtypes, deadline, info, out, log)
    problems = check_losses_per_dtype(records, check_losses)
    result = write(out, info, sizes, records, problems or "all implementations agree")
    result.update(extra)
    out.write_text(json.dumps(result, indent=1) + "\n")
    files = report(result, out)
    log(f"[accelerator] loss check: {result['loss_check']}")
    log(f"[accelerator] wrote {out} " + " ".join(map(str, files)) + f" in {time.monotonic() - t_start:.0f} s")
    failed = extra.get("tests", {}).get("returncode", 0) != 0 or not extra["determinism"]["identical"] or problems
    return 1 if failed else 0


def check_losses_per_dtype(records: list[dict], check) -> list[str]:
    """The harness's loss check within each dtype (bfloat16 losses differ from float32 ones by design);
    bfloat16 against its own rnnjax default at a looser tolerance."""
    problems = []
    for dtype, rtol in (("float32", 1e-3), ("bfloat16", 5e-2)):
        problems += check([r for r in records if r.get("dtype") == dtype], rtol)
    return problems


if __name__ == "__main__":
    sys.exit(main())
