"""The generalized delta rule against flash-linear-attention's naive forms (PyTorch loops), read from
tests/fixtures/fla_naive.npz (written by tests/fixtures/make_fla_fixtures.py): KDA with grouped value
heads and negative eigenvalues, the diagonal-plus-low-rank transition as RWKV-7 feeds it, and Gated
DeltaProduct's Householder substeps. Outputs, final states and the gradients of every input and of the
initial state, through rnnjax's sequential scan and its chunkwise form.

Each fixture's inputs go to rnnjax's matrix form unchanged (a cell whose `inputs` only reshape
`x_t`), so this checks the form's conventions (which side of the transition each vector of the
low-rank term goes on, where the decay acts, how substeps and value groups are laid out) against the
field's reference code, independently of rnnjax's own cells and references. The loops there compute in
float32, hence the tolerance: 1e-4 relative to each leaf's largest entry (the float32 rounding of
these sizes is about 1e-6; a convention error is of order 1).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from rnnjax.cells import cell as base

FIXTURE = np.load(Path(__file__).parent / "fixtures" / "fla_naive.npz")
RTOL = 1e-4  # against float32 loops


def raw_cell(fields: dict[str, tuple[int, ...]], build, *, heads: int, dk: int, dv: int, substeps: int = 1):
    """A matrix cell whose input `x_t` is the fields, flattened side by side; `build(fields) -> MatrixInputs`."""
    sizes = [math.prod(shape) for shape in fields.values()]

    def inputs(params, x):
        parts = jnp.split(x, np.cumsum(sizes)[:-1], axis=-1)
        return build({n: p.reshape(*x.shape[:-1], *s) for (n, s), p in zip(fields.items(), parts, strict=True)})

    def readout(params, o, m, x):
        return o.reshape(*o.shape[:-2], heads * dv)

    matrix = base.MatrixRecurrence(inputs, readout, num_heads=heads, key_size=dk, value_size=dv, chunk_size=4,
                                   substeps=substeps)  # fmt: skip
    init = lambda key, input_size: {"w_q": jnp.zeros((input_size, 1), jnp.float64)}  # noqa: E731  (the input size)
    return base.matrix_cell("fla_raw", heads * dv, init=init, matrix=matrix, config={})


def _rel(got, want) -> float:
    return float(np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want)))


def _check(prefix: str, cell, xs, h0, to_fields, o_shape):
    """rnnjax's outputs, final state and gradients against the fixture's, for both forms."""
    f = {k.removeprefix(f"{prefix}_"): FIXTURE[k] for k in FIXTURE.files if k.startswith(f"{prefix}_")}
    params = cell.init(jax.random.key(0), xs.shape[-1])
    for method in (rnnjax.Scan(), rnnjax.Chunkwise(4)):

        def loss(xs, h0, method=method):
            carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=base.MatrixState(h0), time_major=False,
                                      method=method)  # fmt: skip
            o = o_shape(ys)
            return jnp.sum(o * f["w_o"]) + jnp.sum(carry.S * f["w_S"]), (o, carry.S)

        (d_xs, d_h0), (o, S) = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(xs, h0)
        errors = {"o": _rel(o, f["o"]), "S": _rel(S, f["S"]), "d_h0": _rel(d_h0, f["d_h0"])}
        for name, grad in to_fields(d_xs).items():
            errors[f"d_{name}"] = _rel(grad, f[f"d_{name}"])
        assert max(errors.values()) <= RTOL, (prefix, repr(method), errors)


def test_kda_equals_fla_naive_recurrent_kda(x64):
    """`S <- Diag(exp(g)) S; S <- S + beta k (v - k^T S)^T`, q and k shared by groups of two value heads."""
    q, k, v, g, beta, h0 = (FIXTURE[f"kda_{n}"] for n in ("q", "k", "v", "g", "beta", "h0"))
    B, T, H, K = q.shape
    HV, V = v.shape[2:]
    group = HV // H
    fields = {"q": (H, K), "k": (H, K), "v": (HV, V), "g": (HV, K), "beta": (HV,)}
    cell = raw_cell(
        fields,
        lambda p: base.MatrixInputs(
            q=jnp.repeat(p["q"], group, -2), k=jnp.repeat(p["k"], group, -2), v=p["v"], log_decay=p["g"], beta=p["beta"]
        ),  # fmt: skip
        heads=HV,
        dk=K,
        dv=V,
    )
    xs = jnp.concatenate([a.reshape(B, T, -1) for a in (q, k, v, g, beta)], axis=-1)

    def to_fields(d_xs):
        parts = jnp.split(d_xs, np.cumsum([H * K, H * K, HV * V, HV * K]), axis=-1)
        return {n: p.reshape(B, T, *s) for (n, s), p in zip(fields.items(), parts, strict=True)}

    _check("kda", cell, xs, jnp.asarray(h0), to_fields, lambda ys: ys.reshape(B, T, HV, V))


def test_dplr_equals_fla_dplr_recurrence(x64):
    """flash-linear-attention's `S <- S Diag(exp(gk)) + k v^T + beta (alpha^T S)`: its `alpha` reads the state
    and its `beta` writes, i.e. rnnjax's `b` and `a`; fed as RWKV-7 feeds it (`alpha = -kappa`, `beta = kappa
    * a`). Its queries are scaled by `dk^-0.5` inside, rnnjax's not."""
    q, k, v, alpha, beta, gk, h0 = (FIXTURE[f"dplr_{n}"] for n in ("q", "k", "v", "alpha", "beta", "gk", "h0"))
    B, H, L, K = q.shape
    V = v.shape[-1]
    fields = {"q": (H, K), "k": (H, K), "v": (H, V), "alpha": (H, K), "beta": (H, K), "gk": (H, K)}
    cell = raw_cell(
        fields,
        lambda p: base.MatrixInputs(
            q=p["q"] * K**-0.5, k=p["k"], v=p["v"], log_decay=p["gk"], a=p["beta"], b=p["alpha"]
        ),  # fmt: skip
        heads=H,
        dk=K,
        dv=V,
    )
    time_second = lambda a: np.moveaxis(a, 1, 2)  # noqa: E731  [B, H, L, d] -> [B, L, H, d]
    xs = jnp.concatenate([time_second(a).reshape(B, L, -1) for a in (q, k, v, alpha, beta, gk)], axis=-1)

    def to_fields(d_xs):
        parts = jnp.split(d_xs, np.cumsum([H * K, H * K, H * V, H * K, H * K]), axis=-1)
        return {n: np.moveaxis(p.reshape(B, L, *s), 1, 2) for (n, s), p in zip(fields.items(), parts, strict=True)}

    _check("dplr", cell, xs, jnp.asarray(h0), to_fields, lambda ys: jnp.moveaxis(ys.reshape(B, L, H, V), 1, 2))


def test_gated_deltaproduct_equals_fla_naive_recurrent_gated_delta_product(x64):
    """The decay once per token, then n Householder substeps, each with its own key, value and beta."""
    q, k, v, g, beta, h0 = (FIXTURE[f"product_{n}"] for n in ("q", "k", "v", "g", "beta", "h0"))
    B, T, H, K = q.shape
    V = v.shape[-1]
    n = k.shape[1] // T
    fields = {"q": (H, K), "k": (n, H, K), "v": (n, H, V), "g": (H,), "beta": (n, H)}
    cell = raw_cell(
        fields,
        lambda p: base.MatrixInputs(
            q=p["q"],
            k=jnp.moveaxis(p["k"], -3, -2),
            v=jnp.moveaxis(p["v"], -3, -2),
            log_decay=p["g"][..., None],
            beta=jnp.moveaxis(p["beta"], -2, -1),
        ),  # fmt: skip
        heads=H,
        dk=K,
        dv=V,
        substeps=n,
    )
    per_token = lambda a: a.reshape(B, T, -1)  # noqa: E731  [B, T * n, ...] -> [B, T, n * ...], substep-major
    xs = jnp.concatenate([per_token(a) for a in (q, k, v, g, beta)], axis=-1)

    def to_fields(d_xs):
        parts = jnp.split(d_xs, np.cumsum([H * K, n * H * K, n * H * V, H]), axis=-1)
        shapes = {"q": (T, H, K), "k": (T * n, H, K), "v": (T * n, H, V), "g": (T, H), "beta": (T * n, H)}
        return {name: p.reshape(B, *shapes[name]) for name, p in zip(fields, parts, strict=True)}

    _check("product", cell, xs, jnp.asarray(h0), to_fields, lambda ys: ys.reshape(B, T, H, V))
