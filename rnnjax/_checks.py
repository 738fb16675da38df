"""Input checks for the public API, run on shapes and dtypes before tracing.

Every message names the function and the argument, says what was expected and
what came, so that a user never has to read an XLA shape error. The checks
look only at static facts (shapes, dtypes, tree structure) and at values that
are concrete, so they cost nothing inside `jax.jit`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._forms import Cell


def _fmt(shape_dtype: Any) -> str:
    return f"{tuple(shape_dtype.shape)} {jnp.dtype(shape_dtype.dtype).name}"


def _fmt_leaf(a: Any) -> str:
    return _fmt(jnp.asarray(a)) if hasattr(a, "shape") else repr(a)


def is_concrete(x: Any) -> bool:
    """True when `x` holds values we can read now (not a tracer under jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check_cell(fn: str, cell: Any) -> None:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{fn}: `cell` must be an rnnjax.cells.Cell (e.g. rnnjax.cells.lstm(64)), got {type(cell).__name__}"
        )


def check_params(fn: str, cell: Cell, params: Any, input_size: int) -> None:
    """`params` must have the tree structure and shapes that `cell.init` makes.

    A `None` in `init`'s params is a slot filled at run time (the source an
    attention decoder attends to, `rnnjax.seq2seq.attach`): whatever is there is not checked.
    """
    expected = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
    exp_paths = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    slots = [
        p for p, leaf in jax.tree_util.tree_flatten_with_path(expected, is_leaf=lambda x: x is None)[0] if leaf is None
    ]
    try:
        got_paths = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    except Exception as err:  # pragma: no cover - exotic pytrees
        raise TypeError(f"{fn}: `params` must be a pytree of arrays, got {type(params).__name__}") from err
    got_paths = {p: v for p, v in got_paths.items() if not any(p[: len(s)] == s for s in slots)}
    if set(exp_paths) != set(got_paths):
        names = lambda ps: sorted(jax.tree_util.keystr(p) for p in ps)  # noqa: E731
        raise ValueError(
            f"{fn}: `params` do not match cell {cell.name!r}: expected leaves {names(exp_paths)}, "
            f"got {names(got_paths)} (were they made by this cell's init?)"
        )
    for path, exp in exp_paths.items():
        got = got_paths[path]
        if tuple(np.shape(got)) != tuple(exp.shape):
            raise ValueError(
                f"{fn}: `params{jax.tree_util.keystr(path)}` expected shape {tuple(exp.shape)} for cell "
                f"{cell.name!r} with hidden_size={cell.hidden_size} and input_size={input_size}, "
                f"got {tuple(np.shape(got))}"
            )


def check_inputs(fn: str, cell: Cell, params: Any, xs: Any, time_major: bool) -> tuple[int, tuple[int, ...]]:
    """Check `xs` against the cell; return `(T, batch_shape)`."""
    layout = "[T, *batch, input_size]" if time_major else "[*batch, T, input_size]"
    if not hasattr(xs, "shape") or not hasattr(xs, "dtype"):
        raise TypeError(f"{fn}: `xs` must be an array {layout}, got {type(xs).__name__}")
    if xs.ndim < 2:
        raise ValueError(f"{fn}: `xs` must have rank >= 2, laid out {layout}; got shape {tuple(xs.shape)}")
    input_size, dtype = cell.input_spec(params)
    if xs.shape[-1] != input_size:
        raise ValueError(
            f"{fn}: `xs` last axis must be the input size {input_size} that `params` were made for, "
            f"got shape {tuple(xs.shape)} (layout {layout})"
        )
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise TypeError(f"{fn}: `xs` must be floating ({jnp.dtype(dtype).name} for these params), got {xs.dtype}")
    if xs.dtype != dtype:
        raise TypeError(
            f"{fn}: mixed dtypes: `xs` is {jnp.dtype(xs.dtype).name} but `params` are "
            f"{jnp.dtype(dtype).name} (expected `xs` in {jnp.dtype(dtype).name}); cast one, "
            f"e.g. `xs.astype(jnp.{jnp.dtype(dtype).name})`"
        )
    check_params(fn, cell, params, input_size)
    if time_major:
        return int(xs.shape[0]), tuple(xs.shape[1:-1])
    return int(xs.shape[-2]), tuple(xs.shape[:-2])


def check_carry(fn: str, cell: Cell, params: Any, carry: Any, batch_shape: tuple[int, ...], name: str) -> None:
    """`carry` must match `cell.initial_carry(params, batch_shape)` leaf by leaf."""
    expected = jax.eval_shape(lambda p: cell.initial_carry(p, batch_shape), params)
    exp_leaves, exp_tree = jax.tree_util.tree_flatten_with_path(expected)
    got_leaves, got_tree = jax.tree_util.tree_flatten_with_path(carry)
    if [p for p, _ in exp_leaves] != [p for p, _ in got_leaves] or len(exp_leaves) != len(got_leaves):
        raise ValueError(
            f"{fn}: `{name}` must have the structure of cell.initial_carry(params, batch_shape={batch_shape}), "
            f"i.e. {jax.tree_util.tree_map(_fmt, expected)}; got {jax.tree_util.tree_map(_fmt_leaf, carry)}"
        )
    for (path, exp), (_, got) in zip(exp_leaves, got_leaves, strict=True):
        where = f"{name}{jax.tree_util.keystr(path)}"
        if not hasattr(got, "shape") or tuple(got.shape) != tuple(exp.shape):
            raise ValueError(
                f"{fn}: `{where}` expected shape {tuple(exp.shape)} (batch_shape {batch_shape} + state), "
                f"got {tuple(np.shape(got))}"
            )
        if got.dtype != exp.dtype:
            raise TypeError(
                f"{fn}: mixed dtypes: `{where}` expected dtype {jnp.dtype(exp.dtype).name} (the params' dtype), "
                f"got {jnp.dtype(got.dtype).name}"
            )


def check_lengths(fn: str, lengths: Any, T: int, batch_shape: tuple[int, ...]) -> None:
    """`lengths` must be integers of shape `batch_shape` with values in [0, T]."""
    if not hasattr(lengths, "shape") or not hasattr(lengths, "dtype"):
        lengths = np.asarray(lengths)
    if tuple(lengths.shape) != tuple(batch_shape):
        raise ValueError(
            f"{fn}: `lengths` must have the batch shape {batch_shape} of `xs`, got shape {tuple(lengths.shape)}"
        )
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"{fn}: `lengths` must be an integer array, got dtype {lengths.dtype}")
    if is_concrete(lengths):
        values = np.asarray(lengths)
        bad = np.argwhere((values < 0) | (values > T))
        if bad.size:
            idx = tuple(int(i) for i in bad[0])
            raise ValueError(
                f"{fn}: `lengths` must lie in [0, T={T}], got lengths{list(idx)} = {int(values[idx])}"
                + (f" ({len(bad)} entries out of range)" if len(bad) > 1 else "")
            )


def check_resets(fn: str, resets: Any, T: int, batch_shape: tuple[int, ...], time_major: bool) -> Any:
    """`resets` must be booleans laid out like the time and batch axes of `xs`."""
    if not hasattr(resets, "shape"):
        resets = np.asarray(resets)
    want = (T, *batch_shape) if time_major else (*batch_shape, T)
    if tuple(resets.shape) != want:
        layout = "[T, *batch]" if time_major else "[*batch, T]"
        raise ValueError(f"{fn}: `resets` must have shape {want} ({layout} of `xs`), got {tuple(resets.shape)}")
    if resets.dtype != bool:
        raise TypeError(f"{fn}: `resets` must be a boolean array, got dtype {resets.dtype}")
    return resets
