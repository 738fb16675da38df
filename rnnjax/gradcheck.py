"""Hold `jax.grad` of `rnnjax.unroll` against the hand-written NumPy BPTT.

`reference_agreement` runs one comparison and returns the relative error of
every output and gradient leaf; `python -m rnnjax.gradcheck` prints the worst
error per cell over a grid of sequence lengths, sizes and batch shapes, in
float64 and float32.

Relative error of a leaf: `max|autodiff - reference| / max|reference|`
(the infinity norm of the difference over that of the truth).
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import reference
from rnnjax._unrolling import unroll
from rnnjax.cells import registry
from rnnjax.methods import Scan

# below this magnitude a reference leaf is rounding noise around zero (the problems are scaled ~1)
ZERO_BELOW = 1e-12


def relative_error(got: Any, want: Any) -> float:
    """max |got - want| / max |want|; the absolute difference where the reference leaf is zero to
    rounding (max |want| < ZERO_BELOW: e.g. LSTM-with-layer-norm's initial-cell gradient at one
    hidden unit, which is exactly zero, since a layer norm over one unit is constant)."""
    kind = np.complex128 if np.iscomplexobj(got) or np.iscomplexobj(want) else np.float64
    got, want = np.asarray(got, kind), np.asarray(want, kind)
    if got.shape != want.shape:
        raise ValueError(f"relative_error: shapes differ, {got.shape} vs {want.shape}")
    if want.size == 0:
        return 0.0
    scale = np.max(np.abs(want))
    diff = np.max(np.abs(got - want))
    return float(diff / scale) if scale >= ZERO_BELOW else float(diff)


def random_problem(cell, *, T: int, batch_shape: tuple[int, ...], input_size: int, seed: int, lengths: bool):
    """Random params (every bias non-zero), inputs, initial carry, cotangents and lengths.

    Drawn with NumPy on the shapes `cell.init` would make, so that a grid of
    many shapes costs no XLA compilations outside the unroll under test.
    """
    rng = np.random.default_rng(seed)

    def normal(like, scale):
        draw = rng.standard_normal(like.shape)
        if jnp.issubdtype(like.dtype, jnp.complexfloating):  # complex carries: both parts random
            draw = draw + 1j * rng.standard_normal(like.shape)
        return jnp.asarray(scale * draw, like.dtype)

    shapes = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
    # weights ~ N(0, 1/fan_in) (fan_in = first axis), vectors ~ N(0, 0.1^2)
    params = jax.tree_util.tree_map(lambda s: normal(s, 1 / np.sqrt(s.shape[0]) if len(s.shape) > 1 else 0.1), shapes)
    dtype = cell.input_spec(params)[1]
    xs = jnp.asarray(rng.standard_normal((T, *batch_shape, input_size)), dtype)
    carry_like = jax.eval_shape(lambda p: cell.initial_carry(p, batch_shape), params)
    carry0 = jax.tree_util.tree_map(lambda s: normal(s, 0.5), carry_like)
    dys = jnp.asarray(rng.standard_normal((T, *batch_shape, cell.output_size)), dtype)
    d_carry = jax.tree_util.tree_map(lambda s: normal(s, 1.0), carry_like)
    lens = jnp.asarray(rng.integers(0, T + 1, size=batch_shape), jnp.int32) if lengths else None
    return params, xs, carry0, dys, d_carry, lens


def reference_agreement(
    name: str,
    *,
    T: int,
    hidden_size: int,
    batch_shape: tuple[int, ...] = (),
    lengths: bool = False,
    reverse: bool = False,
    input_size: int = 3,
    dtype=jnp.float64,
    seed: int = 0,
    **options: Any,
) -> dict[str, float]:
    """Relative error of each output/gradient leaf of `jax.vjp(unroll)` vs the manual BPTT.

    float64 needs x64 on (`with jax.enable_x64(True):`). In float32 the JAX
    side runs in float32 and the reference in float64 on the same values.
    `options` are the cell factory's, over the registered example's (e.g.
    `negative_eigenvalues=True`).
    """
    spec = registry.spec(name)
    if spec.reference is None:
        raise ValueError(f"cell {name!r} has no manual-BPTT reference")
    # the example's other settings (e.g. heads), the options over them
    cell = spec.example_cell(hidden_size=hidden_size, dtype=dtype, **options)
    params, xs, carry0, dys, d_carry, lens = random_problem(
        cell, T=T, batch_shape=batch_shape, input_size=input_size, seed=seed, lengths=lengths
    )

    @jax.jit  # one compilation per case instead of one per eager op
    def forward_and_vjp(params, carry0, xs, lens, cotangents):
        # the sequential path (with a cell's sequence kernel where it has one) is the truth the other forms
        # are held to (tests/test_chunkwise.py, the contract); here it is held to the hand-written BPTT
        run = lambda p, c, x: unroll(  # noqa: E731
            cell, p, x, initial_carry=c, lengths=lens, reverse=reverse, method=Scan()
        )
        outputs, vjp = jax.vjp(run, params, carry0, xs)
        return outputs, vjp(cotangents)

    (carry, ys), (d_params, d_carry0, d_xs) = forward_and_vjp(params, carry0, xs, lens, (d_carry, dys))

    def as_np(tree):
        tree = jax.tree_util.tree_map(lambda a: np.asarray(a, np.result_type(a.dtype, np.float64)), tree)
        return tuple(tree) if isinstance(tree, tuple) else tree  # NamedTuple carries as plain tuples

    ref = reference.bptt(
        spec.reference,
        as_np(params),
        as_np(xs),
        as_np(carry0),
        as_np(dys),
        as_np(d_carry),
        lengths=None if lens is None else np.asarray(lens),
        reverse=reverse,
        **cell.config,
    )
    leaves = lambda c: [a for a in (c if isinstance(c, tuple) else [c]) if a is not None]  # noqa: E731
    errors = {"ys": relative_error(ys, ref.ys), "d_xs": relative_error(d_xs, ref.d_xs)}
    for i, (got, want) in enumerate(zip(leaves(carry), leaves(ref.carry), strict=True)):
        errors[f"carry[{i}]"] = relative_error(got, want)
    for i, (got, want) in enumerate(zip(leaves(d_carry0), leaves(ref.d_carry), strict=True)):
        errors[f"d_carry[{i}]"] = relative_error(got, want)
    for key, want in ref.d_params.items():
        errors[f"d_params[{key}]"] = relative_error(d_params[key], want)
    return errors


GRID = {"T": (1, 2, 7, 50), "hidden_size": (1, 4, 16), "batch_shape": ((), (3,)), "lengths": (False, True)}


def hidden_sizes(name: str) -> tuple[int, ...]:
    """The grid's hidden sizes for a cell: (1, 4, 16), or (2, 4, 16) for a cell that refuses one unit
    (LSTM with layer norm); multi-head cells take 2, 4 and 8 units per head of their example
    ((4, 8, 16) for two heads). Not one: an L2-normalised key or query of one dimension is the constant
    +-1, so the gradient of its projection is only the normaliser's epsilon term, ~1e-6 of the others,
    and a relative error on it measures rounding (DeltaNet's, at one unit per head: 1.2e-10 in
    float64, 2e-2 in float32; 1e-14 and 1e-6 from two units on)."""
    spec = registry.spec(name)
    heads = spec.example.get("num_heads")
    if heads is not None:
        return (2 * heads, 4 * heads, 8 * heads)
    try:
        spec.example_cell(hidden_size=1)
    except ValueError:  # e.g. a layer norm over the state needs two units
        return (2, *GRID["hidden_size"][1:])
    return GRID["hidden_size"]


def grid_cases(name: str | None = None):
    grid = dict(GRID) if name is None else {**GRID, "hidden_size": hidden_sizes(name)}
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def worst_agreement(name: str, dtype, reverse_too: bool = True) -> tuple[float, int]:
    """Largest relative error over the grid (and reverse=True), and the number of cases."""
    worst, n = 0.0, 0
    for case in grid_cases(name):
        for reverse in (False, True) if reverse_too else (False,):
            errors = reference_agreement(name, reverse=reverse, dtype=dtype, **case)
            worst = max(worst, max(errors.values()))
            n += 1
    return worst, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="*", default=None, help="registered cells (default: all with a reference)")
    args = parser.parse_args(argv)
    names = args.cells or [s.name for s in registry.specs() if s.reference is not None]
    print(
        f"manual BPTT (NumPy float64) vs jax.vjp(rnnjax.unroll); grid {GRID} x reverse in (False, True); "
        "multi-head cells take 2, 4 and 8 units per head"
    )
    print("| cell | cases | worst rel. error, float64 | worst rel. error, float32 |")
    print("|---|---|---|---|")
    for name in names:
        with jax.enable_x64(True):
            w64, n = worst_agreement(name, jnp.float64)
        w32, _ = worst_agreement(name, jnp.float32)
        print(f"| {name} | {n} | {w64:.1e} | {w32:.1e} |", flush=True)


if __name__ == "__main__":
    main()
