"""How `rnnjax.unroll` runs a cell over time: one frozen, hashable value per method.

`unroll(cell, params, xs, ..., method=...)` takes the data and its layout as
arguments and *how* to run it as one value, which owns its options and
checks them once::

    rnnjax.unroll(cell, params, xs)                                  # method=None: rnnjax.auto(cell) picks
    rnnjax.unroll(cell, params, xs, method=rnnjax.Scan(remat=True))  # lax.scan, rematerialised
    rnnjax.unroll(cell, params, xs, method=rnnjax.Chunkwise(16))     # matrix memory, chunks of 16
    rnnjax.auto(cell)                                                # what method=None runs, to print or log

- `Scan(unroll, remat, truncation, kernel)`: `lax.scan` of `cell.step` (or
  the cell's sequence kernel); every cell.
- `LinearScan(implementation)`: `h_t = a_t h_(t-1) + b_t` from every step's
  coefficients at once (`lax.associative_scan` or a Pallas kernel); cells
  with a `LinearRecurrence`.
- `Chunkwise(chunk_size, implementation)`: matrix products inside chunks, a
  scan across them (`chunk_size="sequence"`: one chunk, the quadratic
  form); cells with a `MatrixRecurrence`.
- `Sharded(axis_name, inner)`: the time axis split over a mesh axis inside
  `jax.shard_map`, `inner` on each device's slice; linear and matrix cells.
- `TrainInfer(train, infer)`: `train` when the call is differentiated,
  `infer` when it is not (the fastest forward need not be the fastest to
  differentiate).

Each method's `check(cell)` says, before anything is traced, why a cell
cannot use it (naming the cell, the method and the form it lacks). Values
are frozen dataclasses: equal options compare and hash equal, so a method
is a static argument of `jax.jit` and a key of a cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax

from rnnjax._forms import Cell

# the Cell fields a method needs, in words for error messages
FORMS = {
    "linear": "a linear recurrence h_t = a_t * h_(t-1) + b_t (LinearRecurrence)",
    "matrix": "a matrix memory (MatrixRecurrence)",
}

IMPLEMENTATIONS = ("xla", "pallas")


def _fn(method: Any) -> str:
    return f"rnnjax.unroll: method={method!r}"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Method:
    """The base of the methods: `check(cell)` refuses a cell without the form the method runs."""

    form: str | None = None  # the Cell field the method runs (None: `step`, which every cell has)

    def __repr__(self) -> str:
        """The constructor call with the options that differ from their defaults, e.g. `Scan(remat=True)`."""
        options = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.default is dataclasses.MISSING or getattr(self, f.name) != f.default
        ]
        return f"{type(self).__name__}({', '.join(options)})"

    def check(self, cell: Cell) -> None:
        """Raise a ValueError naming the cell, this method and the form it lacks, if it lacks one."""
        if self.form is not None and getattr(cell, self.form) is None:
            raise ValueError(
                f"{_fn(self)} needs a cell with {FORMS[self.form]}, and cell {cell.name!r} has none; "
                f"methods for it: {', '.join(available(cell))}"
            )


@dataclasses.dataclass(frozen=True, repr=False)
class Scan(Method):
    """`jax.lax.scan` of `cell.step`: the truth every other method is held to.

    Attributes:
      unroll: the scan's unroll factor (steps per loop iteration), or True for all.
      remat: rematerialise over time: True for chunks of about sqrt(T) steps,
        or an int chunk length K. Only the carry at chunk boundaries is kept
        for the backward pass (`jax.checkpoint`), so training memory grows
        like T/K + K instead of T, for about one extra forward.
      truncation: truncated BPTT with chunks of K steps: the forward pass is
        unchanged, the carry's gradient is stopped at every chunk boundary (a
        loss on chunk k trains through chunk k's steps only). With `remat`,
        the chunks are the same (`remat=True` then means K).
      kernel: whether to run the cell's sequence kernel (`cell.sequence`, e.g.
        the LSTM's, rnnjax/_kernels/lstm.py) instead of scanning `cell.step`:
        same function, same gradients, faster where measured. None: where the
        cell has one, the backend is in `rnnjax._unrolling.KERNEL_BACKENDS`
        (the CPU) and nothing the kernel lacks is asked for (`unroll=1`, no
        `remat`, `truncation` or `resets`). True: the kernel, or a ValueError
        saying why not. False: always the scan (use it for forward-mode
        autodiff: the kernels' VJPs are hand-written).
    """

    unroll: int | bool = 1
    remat: bool | int = False
    truncation: int | None = None
    kernel: bool | None = None

    def __post_init__(self):
        if not (isinstance(self.unroll, bool) or _positive_int(self.unroll)):
            raise ValueError(f"rnnjax.Scan: `unroll` must be a positive int or a bool, got {self.unroll!r}")
        if self.truncation is not None and not _positive_int(self.truncation):
            raise ValueError(f"rnnjax.Scan: `truncation` must be a positive int, got {self.truncation!r}")
        if not (isinstance(self.remat, bool) or _positive_int(self.remat)):
            raise ValueError(f"rnnjax.Scan: `remat` must be False, True or a positive chunk length, got {self.remat!r}")
        if self.remat not in (False, True) and self.truncation is not None and self.remat != self.truncation:
            raise ValueError(
                f"rnnjax.Scan: `remat` chunk {self.remat} and `truncation` {self.truncation} must be equal "
                "(they cut time into the same chunks); pass remat=True to use the truncation length"
            )
        if self.kernel not in (None, True, False):
            raise TypeError(f"rnnjax.Scan: `kernel` must be None, True or False, got {self.kernel!r}")
        if self.kernel is True and (self.unroll not in (1, False) or self.remat or self.truncation is not None):
            raise ValueError(
                f"rnnjax.Scan: kernel=True runs the cell's sequence kernel, which has no unroll factor, remat or "
                f"truncation; got unroll={self.unroll!r}, remat={self.remat!r}, truncation={self.truncation!r}"
            )

    def chunk(self, T: int) -> int:
        """The chunk length of `remat` / `truncation` for T steps (0: neither)."""
        if self.truncation is not None:
            chunk = self.truncation
        elif self.remat is True:
            chunk = max(1, round(T**0.5))
        else:
            chunk = int(self.remat)
        return min(chunk, max(T, 1)) if chunk else 0  # a chunk longer than the sequence is the sequence

    def check(self, cell: Cell) -> None:
        if self.kernel is True and cell.sequence is None:
            raise ValueError(f"{_fn(self)}: cell {cell.name!r} has no sequence kernel")


@dataclasses.dataclass(frozen=True, repr=False)
class LinearScan(Method):
    """`h_t = a_t * h_(t-1) + b_t` computed from every step's coefficients at once.

    Attributes:
      implementation: "associative" (`jax.lax.associative_scan`: O(T log T)
        work in O(log T) depth) or "pallas" (a Pallas kernel that walks the
        steps with the state on chip, rnnjax/_kernels/pallas_scan.py; real
        floating states; interpret mode off a GPU).
    """

    implementation: Literal["associative", "pallas"] = "associative"
    form = "linear"

    def __post_init__(self):
        if self.implementation not in ("associative", "pallas"):
            raise ValueError(
                f"rnnjax.LinearScan: `implementation` must be 'associative' or 'pallas', got {self.implementation!r}"
            )


SEQUENCE = "sequence"  # Chunkwise(chunk_size=SEQUENCE): the whole sequence as one chunk (the quadratic form)


@dataclasses.dataclass(frozen=True, repr=False)
class Chunkwise(Method):
    """The chunkwise-parallel form of a matrix-memory cell (rnnjax/_chunkwise.py).

    Attributes:
      chunk_size: steps per chunk; None for the cell's `matrix.chunk_size`
        (chosen by measurement), or "sequence" for one chunk of all T steps
        (the quadratic, attention-like form). Any T works: the last chunk is
        padded with identity steps.
      implementation: "xla" (masked matrix products, a `lax.scan` across
        chunks) or "pallas" (the Pallas kernels of the same form,
        rnnjax/_kernels/pallas_chunkwise.py; no `resets`; interpret mode off a GPU).
    """

    chunk_size: int | Literal["sequence"] | None = None
    implementation: Literal["xla", "pallas"] = "xla"
    form = "matrix"

    def __post_init__(self):
        if not (self.chunk_size is None or self.chunk_size == SEQUENCE or _positive_int(self.chunk_size)):
            raise ValueError(
                f"rnnjax.Chunkwise: `chunk_size` must be a positive int, None or 'sequence', got {self.chunk_size!r}"
            )
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"rnnjax.Chunkwise: `implementation` must be 'xla' or 'pallas', got {self.implementation!r}"
            )

    def size(self, cell: Cell, T: int) -> int:
        """The chunk length for this cell and T steps."""
        if self.chunk_size == SEQUENCE:
            return max(T, 1)
        return cell.matrix.chunk_size if self.chunk_size is None else self.chunk_size


@dataclasses.dataclass(frozen=True, repr=False)
class Sharded(Method):
    """The time axis sharded over the mesh axis `axis_name`; call `unroll` inside `jax.shard_map`.

    `xs` (and `resets`) are the device's contiguous slice of the time axis,
    device k holding steps `[k T_local, (k + 1) T_local)`; `lengths` count
    steps of the whole sequence; `initial_carry` is replicated. Each device
    runs `inner` on its slice from a zero state and summarises the slice by
    its map of the state; the maps are gathered over the axis and each device
    corrects its states with the state entering its slice. Returns the
    device's outputs and the global final carry (the same on every device).

    Attributes:
      axis_name: the mesh axis the time axis is split over.
      inner: `LinearScan()` (cells with a linear form) or `Chunkwise(...)`
        (matrix-memory cells; `chunk_size="sequence"`: one chunk per device);
        None for the one the cell has. XLA implementations only.
    """

    axis_name: str
    inner: LinearScan | Chunkwise | None = None

    def __post_init__(self):
        if not isinstance(self.axis_name, str) or not self.axis_name:
            raise ValueError(f"rnnjax.Sharded: `axis_name` must be a mesh axis name, got {self.axis_name!r}")
        if self.inner is not None and not isinstance(self.inner, (LinearScan, Chunkwise)):
            raise TypeError(f"rnnjax.Sharded: `inner` must be LinearScan(), Chunkwise(...) or None, got {self.inner!r}")
        if self.inner is not None and self.inner.implementation == "pallas":
            raise ValueError(f"rnnjax.Sharded: `inner` runs XLA's implementation only, got {self.inner!r}")

    def inner_for(self, cell: Cell) -> LinearScan | Chunkwise:
        """`inner`, or the parallel form the cell has."""
        if self.inner is not None:
            return self.inner
        return Chunkwise() if cell.matrix is not None else LinearScan()

    def check(self, cell: Cell) -> None:
        if cell.linear is None and cell.matrix is None:
            raise ValueError(
                f"{_fn(self)} needs a cell with {FORMS['linear']} or {FORMS['matrix']}, and cell {cell.name!r} "
                f"has neither; methods for it: {', '.join(available(cell))}"
            )
        inner = self.inner_for(cell)
        if isinstance(inner, LinearScan) and cell.matrix is not None:
            raise ValueError(f"{_fn(self)}: cell {cell.name!r} is a matrix-memory cell; use inner=Chunkwise(...)")
        inner.check(cell)


@dataclasses.dataclass(frozen=True, repr=False)
class TrainInfer(Method):
    """One method for a call that is differentiated and another for one that is not.

    `train` runs (forward and backward) when something differentiates the
    unroll (`jax.grad`, `jax.vjp`); `infer` runs when nothing does. Both
    compute the same function, to rounding, so only the time differs: on the
    2-core CPU a matrix-memory cell's sequential scan is the faster forward
    at T <= 4096, while its chunkwise form is the faster to differentiate
    (docs/unroll.md has the numbers). Built on `jax.custom_vjp`, whose primal
    runs when nothing differentiates it: under differentiation the outputs
    are `train`'s, and forward-mode autodiff (`jax.jvp`) is refused, as for
    every custom VJP (use `train` itself there).

    Attributes:
      train: the method under `jax.grad` / `jax.vjp` (`Scan`, `LinearScan` or `Chunkwise`).
      infer: the method otherwise (`Scan`, `LinearScan` or `Chunkwise`).
    """

    train: Scan | LinearScan | Chunkwise
    infer: Scan | LinearScan | Chunkwise

    def __post_init__(self):
        for name in ("train", "infer"):
            value = getattr(self, name)
            if not isinstance(value, (Scan, LinearScan, Chunkwise)):
                raise TypeError(
                    f"rnnjax.TrainInfer: `{name}` must be a Scan, LinearScan or Chunkwise value, got {value!r}"
                )

    def check(self, cell: Cell) -> None:
        self.train.check(cell)
        self.infer.check(cell)


def available(cell: Cell) -> list[str]:
    """The methods `cell` can run, by name."""
    out = ["Scan()"]
    if cell.linear is not None:
        out.append("LinearScan()")
    if cell.matrix is not None:
        out.append("Chunkwise()")
    if cell.linear is not None or cell.matrix is not None:
        out.append("Sharded(axis_name)")
    return out


# on the CPU, `auto` runs a linear cell's LinearScan up to this many carry elements per step
PARALLEL_CPU_MAX_CARRY = 4096


def auto(cell: Cell, *, carry_size: int | None = None, backend: str | None = None) -> Method:
    """The method `unroll(..., method=None)` runs for this cell, backend and call.

    Rule (the measurements are in docs/benchmarks.md and docs/modern.md):
    matrix-memory cells take `Chunkwise()` (faster than their sequential
    scan in training from T = 256 on, on the 2-core CPU, and it stores one
    state per chunk; on an H200 13-67x faster in training and 6-28x in
    inference). Cells with a linear form take `LinearScan()` (O(log T)
    depth) on a non-CPU backend, where many cores wait for work (on an H200
    54-118x faster than the sequential scan in training), and on the CPU when a step's carry is small,
    `carry_size <= PARALLEL_CPU_MAX_CARRY` elements over the batch: there the
    sequential scan's per-step cost is overhead, not arithmetic. On the
    2-core CPU the parallel scan trained 1.2-3.3x faster with 1,024 elements
    per step (RG-LRU, LRU, S5 at batch 4) and the sequential scan 1.4-2.1x
    faster with 8,192 (LRU, minGRU at batch 32) and 16,384 (S6 at batch 4);
    the threshold lies between. Everything else, and a linear cell on the CPU
    without `carry_size`, takes `Scan()`.

    Args:
      cell: the cell.
      carry_size: elements of the carry over the whole batch (`unroll` passes it).
      backend: default `jax.default_backend()`.
    """
    backend = jax.default_backend() if backend is None else backend
    if cell.matrix is not None:
        return Chunkwise()
    if cell.linear is None:
        return Scan()
    if backend != "cpu":
        return LinearScan()
    small = carry_size is not None and carry_size <= PARALLEL_CPU_MAX_CARRY
    return LinearScan() if small else Scan()


# the spellings before methods were values, and what replaces them (unroll raises naming it)
OLD_METHODS = {
    "sequential": "method=rnnjax.Scan()",
    "parallel": "method=rnnjax.LinearScan() (linear cells) or rnnjax.Chunkwise(chunk_size='sequence') (matrix cells)",
    "chunkwise": "method=rnnjax.Chunkwise(chunk_size)",
    "pallas": "method=rnnjax.LinearScan(implementation='pallas') or rnnjax.Chunkwise(implementation='pallas')",
    "auto": "method=None (rnnjax.auto(cell) says what it picks)",
}
OLD_KEYWORDS = {
    "unroll": "method=rnnjax.Scan(unroll=...)",
    "remat": "method=rnnjax.Scan(remat=...)",
    "truncation": "method=rnnjax.Scan(truncation=...)",
    "kernel": "method=rnnjax.Scan(kernel=...)",
    "chunk_size": "method=rnnjax.Chunkwise(chunk_size=...)",
    "time_axis_name": "method=rnnjax.Sharded(axis_name, inner)",
}


def check_method(method: Any) -> Method | None:
    """`method` if it is None or a Method; otherwise a TypeError naming what replaces an old spelling."""
    if method is None or isinstance(method, Method):
        return method
    if isinstance(method, str) and method in OLD_METHODS:
        raise TypeError(f"rnnjax.unroll: method={method!r} is now spelled {OLD_METHODS[method]}")
    raise TypeError(
        f"rnnjax.unroll: `method` must be None or one of rnnjax.Scan, LinearScan, Chunkwise, Sharded; got {method!r}"
    )


_BY_NAME = {"Scan": Scan, "LinearScan": LinearScan, "Chunkwise": Chunkwise, "TrainInfer": TrainInfer}


def from_string(text: str) -> Method | None:
    """A method from its `repr`, for configs and command lines: `"Scan(unroll=4)"`, `"Chunkwise(chunk_size=16)"`,
    `"LinearScan()"`, `"TrainInfer(train=Chunkwise(), infer=Scan())"`; `"auto"` (or `""`) is None,
    `rnnjax.auto`'s choice. Options are Python literals or methods.
    (`Sharded` comes from the trainer's `--seq-devices`, not from a string.)"""
    import ast

    def build(node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _BY_NAME:
            args = [build(a) for a in node.args]
            return _BY_NAME[node.func.id](*args, **{k.arg: build(k.value) for k in node.keywords})
        if isinstance(node, ast.Call):
            raise ValueError("not a method call")
        return ast.literal_eval(node)

    text = text.strip()
    if text in ("", "auto"):
        return None
    try:
        node = ast.parse(text, mode="eval").body
        if not isinstance(node, ast.Call):
            raise ValueError
        return build(node)
    except (SyntaxError, ValueError, TypeError) as err:
        raise ValueError(
            f"method {text!r}: expected 'auto' or one of {', '.join(f'{n}(...)' for n in _BY_NAME)} with literal "
            f"options, e.g. 'Scan(unroll=4)' or 'Chunkwise(chunk_size=16)' ({err or 'not a method call'})"
        ) from None
