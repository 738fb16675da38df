"""The diagonal linear scan `h_t = a_t * h_(t-1) + b_t` as a Pallas kernel, with a custom VJP.

One program per block of `block` state elements walks the time axis in order,
keeping its block of `h` in registers, so a step costs one multiply-add per
element and no associative-scan tree (`O(T)` work against the parallel scan's
`O(T log T)`), while blocks run side by side. The backward pass is the same
kernel in the other direction: with `G_t` the total cotangent of `h_t`,

    G_t = g_t + a_(t+1) G_(t+1)       (a linear scan, reversed, of the shifted a)
    db_t = G_t,   da_t = G_t h_(t-1),  dh_(-1) = a_0 G_0

`rnnjax.unroll(..., method=rnnjax.LinearScan("pallas"))` runs a linear cell through it. Off a GPU
it runs in Pallas's interpret mode (`interpret=None` chooses), which is how the
test suite holds it to the pure-JAX paths on the CPU; on a GPU it is lowered
by Pallas's Triton backend (named explicitly, whatever JAX's default), whose
blocks must have a power-of-two size, so the state is padded to a multiple of
one. The test suite lowers it for an H200 without one (tests/test_pallas_scan.py);
the GPU check (`python -m benchmarks.accelerator`) runs and times it. Real
floating dtypes only (the complex LRU stays on the pure-JAX paths).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

DEFAULT_BLOCK = 128  # state elements per program: a power of two (Triton's blocks must be)


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _kernel(a_ref, b_ref, h0_ref, out_ref, *, T: int, reverse: bool):
    def body(i, h):
        t = T - 1 - i if reverse else i
        h = a_ref[pl.ds(t, 1), :] * h + b_ref[pl.ds(t, 1), :]
        out_ref[pl.ds(t, 1), :] = h
        return h

    jax.lax.fori_loop(0, T, body, h0_ref[...])


def _scan_2d(a, b, h0, reverse: bool, block: int, interpret: bool):
    """`a, b: [T, N]`, `h0: [N]`, N a multiple of `block`."""
    T, N = a.shape
    spec = pl.BlockSpec((T, block), lambda j: (0, j))
    return pl.pallas_call(
        functools.partial(_kernel, T=T, reverse=reverse),
        out_shape=jax.ShapeDtypeStruct((T, N), a.dtype),
        grid=(N // block,),
        in_specs=[spec, spec, pl.BlockSpec((1, block), lambda j: (0, j))],
        out_specs=spec,
        interpret=interpret,
        compiler_params=pltriton.CompilerParams(),  # Triton on a GPU (JAX may default to Mosaic GPU)
    )(a, b, h0[None])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _scan(a, b, h0, reverse, block, interpret):
    return _scan_2d(a, b, h0, reverse, block, interpret)


def _scan_fwd(a, b, h0, reverse, block, interpret):
    hs = _scan_2d(a, b, h0, reverse, block, interpret)
    return hs, (a, hs, h0)


def _scan_bwd(reverse, block, interpret, res, g):
    a, hs, h0 = res
    zero = jnp.zeros_like(a[:1])
    if not reverse:
        # G_t = g_t + a_(t+1) G_(t+1): a reversed scan of a shifted up by one step
        a_next = jnp.concatenate([a[1:], zero], axis=0)
        G = _scan_2d(a_next, g, jnp.zeros_like(h0), True, block, interpret)
        h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
        dh0 = a[0] * G[0]
    else:
        a_prev = jnp.concatenate([zero, a[:-1]], axis=0)
        G = _scan_2d(a_prev, g, jnp.zeros_like(h0), False, block, interpret)
        h_prev = jnp.concatenate([hs[1:], h0[None]], axis=0)
        dh0 = a[-1] * G[-1]
    return G * h_prev, G, dh0


_scan.defvjp(_scan_fwd, _scan_bwd)


def linear_scan(
    a: jax.Array,
    b: jax.Array,
    h0: jax.Array,
    *,
    reverse: bool = False,
    block: int | None = None,
    interpret: bool | None = None,
) -> jax.Array:
    """All states of `h_t = a_t * h_(t-1) + b_t` (`h_t = a_t * h_(t+1) + b_t` with `reverse`).

    Args:
      a: `[T, *shape]`, a real floating dtype: the decay of each step.
      b: `[T, *shape]`, the same dtype: the input of each step.
      h0: `[*shape]`, the state before the first step processed.
      reverse: walk from step T - 1 down to 0.
      block: state elements per program, a power of two (default 128, or the
        smallest power of two that holds the state when it is smaller); the
        state is padded to a multiple of it.
      interpret: Pallas's interpret mode; None: on when the backend is not a GPU.

    Returns:
      `hs: [T, *shape]`, the state after each step.
    """
    if a.shape != b.shape or a.shape[1:] != h0.shape:
        raise ValueError(
            f"rnnjax._kernels.pallas_scan.linear_scan: `a` and `b` must be [T, *shape] and `h0` [*shape]; "
            f"got a {a.shape}, b {b.shape}, h0 {h0.shape}"
        )
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise TypeError(f"rnnjax._kernels.pallas_scan.linear_scan: real floating inputs only, got {a.dtype}")
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    T, shape = a.shape[0], a.shape[1:]
    N = max(int(jnp.size(h0)), 1)
    block = block or min(DEFAULT_BLOCK, _power_of_two_at_least(N))
    if block & (block - 1):
        raise ValueError(f"rnnjax._kernels.pallas_scan.linear_scan: `block` must be a power of two, got {block}")
    pad = -N % block
    flat = lambda x: jnp.pad(x.reshape(x.shape[0], N), ((0, 0), (0, pad)))  # noqa: E731
    hs = _scan(flat(a), flat(b), jnp.pad(h0.reshape(N), (0, pad)), reverse, block, interpret)
    return hs[:, :N].reshape(T, *shape)
