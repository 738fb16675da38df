"""Turn a benchmark results JSON into markdown tables and log-log plots.

    python -m benchmarks.report benchmarks/results/cpu-2026-11-25.json

Writes `<results>.md` (tables: training step and forward time per
implementation and T, with each peer's time as a ratio to rnnjax's default,
compile time, XLA memory estimate, tokens/s and achieved GFLOP/s as a
fraction of the machine's measured matmul peak) and `<results>-<kind>.png`
(time and memory against T, log-log).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _flops_per_step(rec: dict) -> float:
    """The FLOPs of one forward step over the batch: the cell's weight matrices (a multiply-add per entry),
    and for a matrix-memory cell its state's work as the sequential step does it, per head `2 dk dv` to
    read `S^T q` and as much to write `k v^T`, and for the delta rule or a low-rank term another `4 dk dv`
    per (sub)step to read the state with a key and erase along it. The same count for every form of a cell,
    so a faster form shows as more GFLOP/s (counting a form's own arithmetic would reward doing more of it)."""
    import jax

    from benchmarks.impls import _cell

    cell = _cell(rec["kind"], rec["H"], "float32")  # the cell the benchmark built (heads of 64)
    params = jax.eval_shape(lambda k: cell.init(k, rec["I"]), jax.random.key(0))
    entries = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(params) if len(s.shape) == 2)
    flops = 2.0 * entries
    m = cell.matrix
    if m is not None:
        x = jax.ShapeDtypeStruct((rec["I"],), np.float32)
        inp = jax.eval_shape(m.inputs, params, x)
        erases = m.substeps if (inp.beta is not None or inp.a is not None) else 0
        flops += m.num_heads * m.key_size * m.value_size * (4.0 + 4.0 * erases)
    return rec["B"] * flops


def tables(result: dict) -> str:
    m = result["machine"]
    peak = m.get("matmul_peak_gflops")
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, backend {m['backend']} ({', '.join(m['devices'])}); "
        f"measured float32 matmul peak {f'{peak:.1f} GFLOP/s' if peak else 'not measured'}; {m['date']}; "
        f"versions {', '.join(f'{k} {v}' for k, v in m['versions'].items() if v)}.",
        f"Shapes: I={result['config']['input']}, H={result['config']['hidden']}, B={result['config']['batch']}, "
        f"{result['config']['dtype']}. Loss check: {result['loss_check']}.",
        *([f"Note: {result['note']}"] if result.get("note") else []),
        "",
    ]
    recs = [r for r in result["records"] if "train" in r]
    for kind in dict.fromkeys(r["kind"] for r in recs):
        kr = [r for r in recs if r["kind"] == kind]
        Ts = sorted({r["T"] for r in kr})
        names = list(dict.fromkeys(r["name"] for r in kr))
        by = {(r["name"], r["T"]): r for r in kr}
        for what, title in (("train", "training step (forward + BPTT + loss)"), ("forward", "forward (inference)")):
            lines += [
                f"### {kind}: {title}, median ms (ratio to rnnjax default; > 1 means slower than rnnjax)",
                "",
                "| implementation | " + " | ".join(f"T={T}" for T in Ts) + " |",
                "|---|" + "---|" * len(Ts),
            ]
            for name in names:
                cells = []
                for T in Ts:
                    r, base = by.get((name, T)), by.get(("rnnjax", T))
                    if r is None:
                        cells.append("-")
                        continue
                    text = f"{r[what]['median_ms']:.1f}"
                    if base is not None and name != "rnnjax":
                        text += f" ({r[what]['median_ms'] / base[what]['median_ms']:.2f}x)"
                    cells.append(text)
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [
            f"### {kind}: compile time of the training step (s), XLA memory estimate of the training step (MB), "
            "training tokens/s, achieved GFLOP/s (fraction of matmul peak)",
            "",
            "| implementation | T | compile s | memory MB | tokens/s | GFLOP/s | of peak |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in names:
            for T in Ts:
                r = by.get((name, T))
                if r is None:
                    continue
                gflops = 3 * _flops_per_step(r) * T / (r["train"]["median_ms"] * 1e-3) / 1e9  # backward ~ 2x forward
                compile_s = f"{r['train_compile_s']:.2f}" if "train_compile_s" in r else "n/a (eager)"
                mem = f"{r['train_memory_bytes'] / 2**20:.1f}" if "train_memory_bytes" in r else "n/a"
                frac = f"{gflops / peak:.1%}" if peak else "n/a"
                lines.append(
                    f"| {name} | {T} | {compile_s} | {mem} | {r['tokens_per_s_train']:.0f} | {gflops:.2f} | {frac} |"
                )
        lines.append("")
    skipped = [
        f"{r['impl']} ({r['kind']}): {r.get('skipped') or r.get('error')}"
        for r in result["records"]
        if "train" not in r
    ]
    if skipped:
        lines += ["Not measured: " + "; ".join(dict.fromkeys(skipped)), ""]
    return "\n".join(lines)


PEER_GROUPS = {"flax": ("flax", "flax-optimized"), "Equinox": ("equinox",), "PyTorch": ("torch",)}


def headline(result: dict, T: int) -> dict[tuple[str, str], float]:
    """`(what, peer) -> peer's median / rnnjax's median` at sequence length T (> 1: rnnjax faster).

    `what` is "training" or "inference"; for a peer with several
    implementations (flax's `LSTMCell` and `OptimizedLSTMCell`) the fastest
    counts. The README's benchmark summary is these numbers (tests/docs/test_readme.py).
    """
    by = {(r["impl"], r["T"]): r for r in result["records"] if "train" in r}
    out = {}
    for what, key in (("training", "train"), ("inference", "forward")):
        mine = by[("rnnjax", T)][key]["median_ms"]
        for peer, impls in PEER_GROUPS.items():
            times = [by[(i, T)][key]["median_ms"] for i in impls if (i, T) in by]
            if times:
                out[(what, peer)] = min(times) / mine
    return out


def plots(result: dict, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outs = []
    m = result["machine"]
    device = f"{m['backend']}: {m['devices'][0]}" if m["backend"] != "cpu" else f"cpu: {m['cpu']}, {m['cores']} cores"
    recs = [r for r in result["records"] if "train" in r]
    for kind in dict.fromkeys(r["kind"] for r in recs):
        kr = [r for r in recs if r["kind"] == kind]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for name in dict.fromkeys(r["name"] for r in kr):
            pts = sorted((r["T"], r) for r in kr if r["name"] == name)
            Ts = [T for T, _ in pts]
            axes[0].loglog(Ts, [r["train"]["median_ms"] for _, r in pts], "o-", label=name)
            axes[1].loglog(Ts, [r["forward"]["median_ms"] for _, r in pts], "o-", label=name)
            mem = [(T, r["train_memory_bytes"] / 2**20) for T, r in pts if "train_memory_bytes" in r]
            if mem:
                axes[2].loglog(*zip(*mem, strict=True), "o-", label=name)
        for ax, title, unit in zip(
            axes, ("training step", "forward", "training memory (XLA estimate)"), ("ms", "ms", "MB"), strict=True
        ):
            ax.set_title(f"{kind}: {title} [{device}]")
            ax.set_xlabel("sequence length T")
            ax.set_ylabel(unit)
            ax.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        out = stem.with_name(f"{stem.name}-{kind}.png")
        fig.savefig(out, dpi=100)
        plt.close(fig)
        outs.append(out)
    return outs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="a JSON file written by benchmarks.run")
    args = p.parse_args(argv)
    path = Path(args.results)
    result = json.loads(path.read_text())
    md = tables(result)
    path.with_suffix(".md").write_text(md)
    pngs = plots(result, path.with_suffix(""))
    print(md)
    print("wrote", path.with_suffix(".md"), *pngs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
