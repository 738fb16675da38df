"""Short sequences: JAX implementations timed in turn, round-robin, in one process.

    python -m benchmarks.interleaved                                   # LSTM, T = 1 16 64
    python -m benchmarks.interleaved --kind gru --impls rnnjax rnnjax-scan flax equinox --reps 60

At short T one call takes a few milliseconds, and on a shared machine the
background load changes from minute to minute, so two worker processes of
`benchmarks.run` measured minutes apart can disagree by 10%, as much as the
differences being measured. Here every implementation is compiled first, then
each round calls every implementation once, in turn, so a change in the load
hits all of them alike; the table gives the median over the rounds and the
ratio to the first implementation. T = 1 isolates each implementation's fixed
cost per call (weight layout, transposes, launching the loops).

The implementations share the process (and XLA's thread pool, used by one at a
time), so only JAX implementations are accepted; `benchmarks.run` times the
peers with their own thread pools. The losses are checked to agree as there.
Writes `benchmarks/results/interleaved-<kind>-<backend>-<date>.json` and a
markdown table next to it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import impls
from benchmarks.run import applicable, check_losses, machine
from benchmarks.worker import stats


def measure(kind: str, T: int, names: list[str], B: int, I: int, H: int, dtype: str, reps: int) -> list[dict]:
    """One record per implementation at length T: medians of `reps` round-robin rounds."""
    built = {}
    for name in names:
        try:
            impl = impls.IMPLS[name](kind, T, B, I, H, dtype)
        except ImportError as err:
            raise ValueError(f"--impls: {name!r} is not installed (no module {err.name!r})") from None
        if impl.jax_fns is None:
            raise ValueError(f"--impls: {name!r} is not a JAX implementation; time it with benchmarks.run")
        built[name] = impl
    records = {
        name: {
            "impl": name,
            "name": impl.name,
            "kind": kind,
            "T": T,
            "B": B,
            "I": I,
            "H": H,
            "dtype": dtype,
            "loss": impl.loss(),
        }
        for name, impl in built.items()
    }
    for impl in built.values():  # warm-up (compiles both steps)
        impl.block(impl.train())
        impl.block(impl.forward())
    times = {name: {"train": [], "forward": []} for name in built}
    for _ in range(reps):
        for name, impl in built.items():
            for what in ("train", "forward"):
                t0 = time.perf_counter()
                impl.block(getattr(impl, what)())
                times[name][what].append(1e3 * (time.perf_counter() - t0))
    for name, rec in records.items():
        for what, ts in times[name].items():
            rec[what] = stats(ts)
    return list(records.values())


def table(result: dict) -> str:
    recs = {(r["impl"], r["T"]): r for r in result["records"]}
    first = result["config"]["impls"][0]
    Ts = sorted({T for _, T in recs})
    m = result["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']}; {m['date']}; jax {m['versions']['jax']}.",
        f"{result['config']['kind']}, I={result['config']['input']}, H={result['config']['hidden']}, "
        f"B={result['config']['batch']}, {result['config']['dtype']}; medians of {result['config']['reps']} "
        f"round-robin rounds in one process. Loss check: {result['loss_check']}.",
        "",
    ]
    for what, title in (("train", "training step (forward + BPTT + loss)"), ("forward", "forward (inference)")):
        lines += [
            f"#### {title}, median ms (ratio to {first}; > 1 means slower)",
            "",
            "| implementation | " + " | ".join(f"T={T}" for T in Ts) + " |",
            "|---|" + "---|" * len(Ts),
        ]
        for name in result["config"]["impls"]:
            cells = []
            for T in Ts:
                ms, ref = recs[name, T][what]["median_ms"], recs[first, T][what]["median_ms"]
                cells.append(f"{ms:.2f}" + ("" if name == first else f" ({ms / ref:.2f}x)"))
            lines.append(f"| {recs[name, Ts[0]]['name']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", default="lstm")
    p.add_argument(
        "--impls",
        nargs="+",
        default=["rnnjax", "rnnjax-scan", "flax", "flax-optimized", "equinox"],
        help="JAX implementations from benchmarks/impls.py; the first is the reference of the ratios",
    )
    p.add_argument("--seq-lens", nargs="+", type=int, default=[1, 16, 64])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--reps", type=int, default=40)
    p.add_argument("--loss-rtol", type=float, default=1e-3)
    p.add_argument("--out", help="output JSON (default benchmarks/results/interleaved-<kind>-<backend>-<date>.json)")
    args = p.parse_args(argv)
    unknown = [n for n in args.impls if n not in impls.IMPLS]
    if unknown:
        p.error(f"--impls: unknown {unknown}; known: {sorted(impls.IMPLS)}")
    names = [n for n in args.impls if applicable(n, args.kind)]
    if names[:1] != args.impls[:1]:
        p.error(f"--impls: the first implementation ({args.impls[0]!r}) does not apply to {args.kind!r}")
    for n in sorted(set(args.impls) - set(names)):
        print(f"skipped {n}: does not apply to {args.kind!r}")
    records = []
    try:
        for T in args.seq_lens:
            records += measure(args.kind, T, names, args.batch, args.input, args.hidden, args.dtype, args.reps)
    except ValueError as err:  # a peer that is not installed, not a JAX one, or one that needs a GPU
        p.error(str(err))
    info = machine()
    config = {k: v for k, v in vars(args).items() if k != "out"} | {"impls": names}
    result = {
        "machine": info,
        "config": config,
        "loss_check": check_losses(records, args.loss_rtol) or "all implementations agree",
        "records": records,
    }
    out = Path(args.out or f"benchmarks/results/interleaved-{args.kind}-{info['backend']}-{info['date'][:10]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    md = table(result)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0 if result["loss_check"] == "all implementations agree" else 1


if __name__ == "__main__":
    raise SystemExit(main())
