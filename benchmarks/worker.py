"""Time one implementation over a list of sequence lengths, in a process of its own.

Prints one JSON object per sequence length. Run by benchmarks/run.py; run it
by hand to debug one implementation:

    python -m benchmarks.worker --impl flax --kind lstm --seq-lens 16 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback


def _time(fn, block, reps: int, budget_s: float) -> list[float]:
    """Milliseconds of `reps` calls (fewer if the time budget runs out, but at least 2)."""
    times, start = [], time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        block(fn())
        times.append(1e3 * (time.perf_counter() - t0))
        if len(times) >= 2 and time.perf_counter() - start > budget_s:
            break
    return times


def stats(times: list[float]) -> dict[str, float]:
    """Median, min and max of a list of times in ms, and how many there were."""
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "reps": len(times)}


def matmul_peak_gflops(n: int = 1024, reps: int = 10) -> float:
    """The machine's float32 matmul rate through XLA, the roofline's ceiling."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = min(_time(lambda: f(a), jax.block_until_ready, reps, 5.0))
    return 2 * n**3 / (best * 1e-3) / 1e9


def measure(impl_name: str, kind: str, T: int, B: int, I: int, H: int, dtype: str, reps: int, budget_s: float):
    from benchmarks import impls

    impl = impls.IMPLS[impl_name](kind, T, B, I, H, dtype)
    record = {"impl": impl_name, "name": impl.name, "kind": kind, "T": T, "B": B, "I": I, "H": H, "dtype": dtype}
    if impl.jax_fns:
        for what, (fn, args) in impl.jax_fns.items():
            t0 = time.perf_counter()
            compiled = fn.lower(*args).compile()
            record[f"{what}_compile_s"] = time.perf_counter() - t0
            mem = compiled.memory_analysis()
            if mem is not None:
                record[f"{what}_memory_bytes"] = int(
                    mem.temp_size_in_bytes
                    + mem.argument_size_in_bytes
                    + mem.output_size_in_bytes
                    - mem.alias_size_in_bytes
                )
    record["loss"] = impl.loss()  # also the warm-up of the forward pass
    impl.block(impl.train())  # warm-up of the training step
    for what in ("forward", "train"):
        record[what] = stats(_time(getattr(impl, what), impl.block, reps, budget_s))
    record["tokens_per_s_train"] = T * B / (record["train"]["median_ms"] * 1e-3)
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", help="an implementation name from benchmarks/impls.py")
    p.add_argument("--kind", default="lstm")
    p.add_argument("--seq-lens", nargs="+", type=int, default=[16, 64])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dtype", default="float32", help="a dtype, or several separated by commas")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=20.0, help="stop repeating after this long (>= 2 reps)")
    p.add_argument("--peak", action="store_true", help="measure the matmul peak and exit")
    args = p.parse_args(argv)
    if args.peak:
        print(json.dumps({"matmul_peak_gflops": matmul_peak_gflops()}), flush=True)
        return 0
    for dtype in args.dtype.split(","):  # "float32,bfloat16": both in this one process
        for T in args.seq_lens:
            try:
                rec = measure(
                    args.impl, args.kind, T, args.batch, args.input, args.hidden, dtype, args.reps, args.budget_s
                )
            except ImportError as err:  # a peer that is not installed is skipped, not an error
                rec = {"impl": args.impl, "kind": args.kind, "T": T, "skipped": f"not installed: {err.name}"}
            except ValueError as err:  # an implementation that does not apply here (e.g. cuDNN on CPU)
                rec = {"impl": args.impl, "kind": args.kind, "T": T, "skipped": str(err)}
            except Exception as err:  # noqa: BLE001 - out of memory and the like: record and go on
                rec = {
                    "impl": args.impl,
                    "kind": args.kind,
                    "T": T,
                    "error": f"{type(err).__name__}: {err}"[:500],
                    "traceback": traceback.format_exc()[-2000:],
                }
            rec.setdefault("dtype", dtype)
            print(json.dumps(rec), flush=True)
            if "skipped" in rec or "error" in rec:
                break  # longer sequences will not do better
    return 0


if __name__ == "__main__":
    sys.exit(main())
