"""Draw docs/chunkwise.png: how the chunkwise form splits the work of a matrix-memory cell.

    python -m benchmarks.chunkwise_figure

Left: which output reads which input (t reads s <= t). The squares on the
diagonal are the intra-chunk part (masked [C, C] matrix products, all chunks
at once); everything below them reaches t through the state carried across
chunk boundaries (one scan step per chunk). Right: what the backward pass
stores, one state per step (sequential) against one per chunk (chunkwise).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(out: str = "docs/chunkwise.png", T: int = 24, C: int = 6) -> Path:
    grid = np.zeros((T, T))
    t, s = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    causal = s <= t
    same_chunk = (t // C) == (s // C)
    grid[causal & ~same_chunk] = 1  # through the carried state
    grid[causal & same_chunk] = 2  # intra-chunk matrix products
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
    cmap = matplotlib.colors.ListedColormap(["white", "#9ecae1", "#fd8d3c"])
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=2)
    for k in range(0, T + 1, C):
        ax.axhline(k - 0.5, color="k", lw=0.6)
        ax.axvline(k - 0.5, color="k", lw=0.6)
    ax.set_xlabel("input step s")
    ax.set_ylabel("output step t")
    ax.set_title(f"who reads whom (T = {T}, C = {C})")
    handles = [
        matplotlib.patches.Patch(color="#fd8d3c", label="intra-chunk: masked [C, C] products, all chunks at once"),
        matplotlib.patches.Patch(color="#9ecae1", label="inter-chunk: through the state S_0 entering the chunk"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, frameon=False)
    steps = np.arange(T + 1)
    ax2.step(steps, steps, where="post", label="sequential: a [dk, dv] state per step")
    ax2.step(steps, steps // C + 1, where="post", label="chunkwise: one per chunk (+ the chunk's inputs)")
    ax2.set_xlabel("steps processed")
    ax2.set_ylabel("states kept for the backward pass")
    ax2.set_title("memory of the backward pass")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    print(f"wrote {main()}")
