"""Worker of tests/test_sequence_parallel.py: the time axis sharded over this process's devices
against one device, in float64, for the cells named on the command line; prints the largest errors as JSON.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/workers/sequence_parallel.py lru gla

The device count is fixed when JAX starts, hence a process per count. Every cell is checked with
lengths, resets, reverse and a given initial carry; with 4 devices or more also the LRU on a 2-D
(data x seq) mesh with gradients reduced over both axes.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import rnnjax


def to64(a):
    return a.astype(jnp.complex128 if jnp.iscomplexobj(a) else jnp.float64)


def check_cell(name: str, mesh: Mesh, n: int) -> dict[str, float]:
    """The largest differences (outputs, carry, gradients relative to their scale) of one cell."""
    T, B, I = 4 * n, 3, 5
    spec = rnnjax.cells.spec(name)
    cell = rnnjax.cells.get(name, **({"hidden_size": 6} if spec.has_linear_form else dict(spec.example)))
    params = jax.tree_util.tree_map(to64, cell.init(jax.random.key(0), I))
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
    h0 = jax.tree_util.tree_map(lambda c: 0.3 + 0.1 * c, cell.initial_carry(params, (B,)))
    if cell.matrix is not None:  # a state of varied entries (and the mLSTM's stabiliser)
        h0 = jax.tree_util.tree_map(lambda c: 0.3 * jax.random.normal(jax.random.key(4), c.shape, c.dtype), h0)
    lengths = jnp.array([T, T - 3, 2])
    resets = jnp.zeros((T, B), bool).at[5, 0].set(True).at[4 * (n // 2), 1].set(True).at[1, 2].set(True)
    worst = {"ys": 0.0, "carry": 0.0, "grad": 0.0}
    w = jax.random.normal(jax.random.key(2), (T, B, cell.output_size), jnp.float64)
    for reverse in (False, True):
        kw = dict(lengths=lengths, reverse=reverse)

        def single(params, xs, h0, kw=kw):
            return rnnjax.unroll(cell, params, xs, initial_carry=h0, method=rnnjax.Scan(), resets=resets, **kw)

        def sharded(params, xs, h0, kw=kw):
            def body(xs_local, resets_local):
                # matrix cells: chunks of 3 steps, so a slice of 4 holds a full chunk and a padded one
                method = rnnjax.Sharded("seq", rnnjax.Chunkwise(3) if cell.matrix is not None else None)
                return rnnjax.unroll(cell, params, xs_local, initial_carry=h0, resets=resets_local, method=method, **kw)

            mapped = jax.shard_map(body, mesh=mesh, in_specs=(P("seq"), P("seq")), out_specs=(P(), P("seq")),
                                   check_vma=False)  # fmt: skip
            return mapped(xs, resets)

        def loss(run):
            # on the outputs and the final carry (its real part: the LRU's carry is complex); outputs as aux
            def f(p, x, h):
                c, y = run(p, x, h)
                leaves = jax.tree_util.tree_leaves(c)
                return jnp.sum(w * y) + sum(jnp.sum(jnp.real(jnp.sin(a))) for a in leaves), (c, y)

            return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

        (_, (c1, y1)), g1 = loss(single)(params, xs, h0)
        (_, (c2, y2)), g2 = loss(sharded)(params, xs, h0)
        worst["ys"] = max(worst["ys"], float(jnp.max(jnp.abs(y1 - y2))))
        for a, b in zip(jax.tree_util.tree_leaves(c1), jax.tree_util.tree_leaves(c2), strict=True):
            worst["carry"] = max(worst["carry"], float(jnp.max(jnp.abs(a - b))))
        for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
            scale = max(float(jnp.max(jnp.abs(a))), 1.0)
            worst["grad"] = max(worst["grad"], float(jnp.max(jnp.abs(a - b))) / scale)
    return worst


def check_mesh_2d(devices: np.ndarray) -> dict[str, float]:
    """The LRU with batch over "data" and time over "seq", gradients reduced over both."""
    n, I = len(devices), 5
    mesh2 = Mesh(devices.reshape(2, n // 2), ("data", "seq"))
    cell = rnnjax.cells.get("lru", hidden_size=6)
    params = jax.tree_util.tree_map(to64, cell.init(jax.random.key(0), I))
    xs = jax.random.normal(jax.random.key(3), (2 * (n // 2), 4, I), jnp.float64)
    lengths = jnp.array([xs.shape[0], 3, 1, xs.shape[0] - 1])

    def loss_single(p):
        return jnp.mean(rnnjax.unroll(cell, p, xs, lengths=lengths)[1] ** 2)

    def loss_2d(p):
        def body(xs_l, len_l):
            _, ys = rnnjax.unroll(cell, p, xs_l, lengths=len_l, method=rnnjax.Sharded("seq"))
            return jax.lax.psum(jnp.sum(ys**2), ("data", "seq"))

        total = jax.shard_map(body, mesh=mesh2, in_specs=(P("seq", "data"), P("data")), out_specs=P(),
                              check_vma=False)(xs, lengths)  # fmt: skip
        return total / (xs.shape[0] * xs.shape[1] * cell.output_size)

    l1, g1 = jax.value_and_grad(loss_single)(params)
    l2, g2 = jax.jit(jax.value_and_grad(loss_2d))(params)
    grads = zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True)
    return {"loss": abs(float(l1 - l2)), "grad": max(float(jnp.max(jnp.abs(a - b))) for a, b in grads)}


def main(names: list[str]) -> dict:
    jax.config.update("jax_enable_x64", True)
    devices = np.array(jax.devices())
    mesh = Mesh(devices, ("seq",))
    out = {name: check_cell(name, mesh, len(devices)) for name in names}
    if len(devices) >= 4:
        out["mesh2d"] = check_mesh_2d(devices)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
