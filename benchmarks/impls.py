"""The implementations the harness times: rnnjax (and its variants) and the peers.

Every implementation is built from the same canonical weights (rnnjax's init,
seed 0, mapped into the peer's layout) and the same inputs, and computes the
same loss, `mean(ys ** 2)` over all outputs, so the harness can check that the
losses agree before it trusts any timing.

An implementation is `make(kind, T, B, I, H, dtype) -> Impl`, where `Impl`
has `forward()` and `train()` (forward + BPTT + loss, returning gradients),
`loss()` for the agreement check, and, for JAX ones, `jax_fns` so the worker
can time compilation and read XLA's memory analysis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax


@dataclass
class Impl:
    name: str
    forward: Callable[[], Any]
    train: Callable[[], Any]
    loss: Callable[[], float]
    block: Callable[[Any], Any]
    jax_fns: dict[str, tuple[Callable, tuple]] | None = None  # name -> (jitted fn, args)


def canonical(kind: str, I: int, H: int) -> dict[str, np.ndarray]:
    """rnnjax's init of `kind` (seed 0), as float32 NumPy, with non-zero biases."""
    cell = rnnjax.cells.get(kind, hidden_size=H)
    params = cell.init(jax.random.key(0), I)
    rng = np.random.default_rng(0)
    return {
        k: np.asarray(v, np.float32) + (0.1 * rng.standard_normal(v.shape).astype(np.float32) if v.ndim == 1 else 0)
        for k, v in params.items()
    }


def inputs(T: int, B: int, I: int) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)


def matmul_params(params: dict[str, Any]) -> int:
    """Number of weight-matrix entries: each costs one multiply-add per example per step."""
    return int(sum(np.size(v) for v in jax.tree_util.tree_leaves(params) if np.ndim(v) == 2))


def _jax_impl(name: str, loss_fn: Callable, params: Any, xs: jax.Array) -> Impl:
    forward = jax.jit(lambda p, x: loss_fn(p, x))
    train = jax.jit(jax.value_and_grad(loss_fn))
    return Impl(
        name=name,
        forward=lambda: forward(params, xs),
        train=lambda: train(params, xs),
        loss=lambda: float(forward(params, xs)),
        block=jax.block_until_ready,
        jax_fns={"forward": (forward, (params, xs)), "train": (train, (params, xs))},
    )


# --- rnnjax -------------------------------------------------------------------------------


def _cell(kind: str, H: int, dtype: str) -> rnnjax.cells.Cell:
    """The benchmarked cell: multi-head cells with heads of 64 (or one head below H = 64)."""
    kwargs = {"num_heads": max(1, H // 64)} if rnnjax.cells.spec(kind).has_matrix_form else {}
    return rnnjax.cells.get(kind, hidden_size=H, dtype=dtype, **kwargs)


def rnnjax_impl(
    kind: str, T: int, B: int, I: int, H: int, dtype: str, method: Any = None, general: bool = False
) -> Impl:
    """rnnjax's unroll with `method` (a method value, a function of the cell giving one, or None for auto).

    `general`: a matrix cell with a scalar decay per head runs with that decay broadcast to one per key
    dimension, the same function, which the chunkwise form computes by its general algorithm instead of the
    specialised one (the UT transform for the delta rule, the scalar-decay path otherwise)."""
    cell = _cell(kind, H, dtype)
    if general:
        cell = per_key_decay(cell)
    if callable(method):
        method = method(cell)
    if kind in ("lstm", "gru"):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), canonical(kind, I, H))
    else:
        params = cell.init(jax.random.key(0), I)
    xs = jnp.asarray(inputs(T, B, I), dtype)

    def loss_fn(p, x):
        ys = rnnjax.unroll(cell, p, x, method=method)[1]
        return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    name = f"rnnjax{'' if method is None else '[' + repr(method) + ']'}{' (general algorithm)' if general else ''}"
    return _jax_impl(name, loss_fn, params, xs)


def per_key_decay(cell: rnnjax.cells.Cell) -> rnnjax.cells.Cell:
    """The same matrix cell with its log decay broadcast to one per key dimension."""
    if cell.matrix is None or cell.matrix.stabilised:
        raise ValueError(f"a per-key decay needs a matrix cell without a stabiliser; {cell.name!r} is not one")

    def inputs(params, x):
        inp = cell.matrix.inputs(params, x)
        return inp._replace(
            log_decay=jnp.broadcast_to(inp.log_decay, (*inp.log_decay.shape[:-1], cell.matrix.key_size))
        )

    return cell._replace(matrix=cell.matrix._replace(inputs=inputs))


def _parallel(cell, implementation="xla"):
    """The cell's all-steps-at-once form: the linear scan, or a matrix cell's quadratic form (one chunk)."""
    if cell.matrix is not None:
        return rnnjax.Chunkwise(
            chunk_size="sequence" if implementation == "xla" else None, implementation=implementation
        )
    return rnnjax.LinearScan("associative" if implementation == "xla" else "pallas")


def rnnjax_hoisted_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    """LSTM/GRU with the input projection `xs @ W_x + b` done for all steps before the scan."""
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), canonical(kind, I, H))
    xs = jnp.asarray(inputs(T, B, I), dtype)

    def loss_fn(p, x):
        u = x @ p["w_x"] + p["b"]  # [T, B, gates * H], one big matmul

        if kind == "lstm":

            def step(carry, u_t):
                h, c = carry
                a_i, a_f, a_g, a_o = jnp.split(u_t + h @ p["w_h"], 4, axis=-1)
                c = jax.nn.sigmoid(a_f) * c + jax.nn.sigmoid(a_i) * jnp.tanh(a_g)
                h = jax.nn.sigmoid(a_o) * jnp.tanh(c)
                return (h, c), h

            carry = (jnp.zeros((B, H), dtype), jnp.zeros((B, H), dtype))
        else:

            def step(h, u_t):
                u_r, u_z, u_n = jnp.split(u_t, 3, axis=-1)
                v_r, v_z, v_n = jnp.split(h @ p["w_h"], 3, axis=-1)
                r, z = jax.nn.sigmoid(u_r + v_r), jax.nn.sigmoid(u_z + v_z)
                n = jnp.tanh(u_n + r * (v_n + p["b_hn"]))
                h = (1.0 - z) * n + z * h
                return h, h

            carry = jnp.zeros((B, H), dtype)
        ys = jax.lax.scan(step, carry, u)[1]
        return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    return _jax_impl("rnnjax[hoisted input projection]", loss_fn, params, xs)


# --- flax ---------------------------------------------------------------------------------


def flax_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str, optimized: bool = False) -> Impl:
    import flax.linen as nn

    w = canonical(kind, I, H)
    # the params are given; flax >= 0.12 still traces the initialisers' shapes in `apply`, and the default
    # orthogonal one (a QR) does not accept bfloat16
    dtypes = {"dtype": dtype, "param_dtype": dtype, "recurrent_kernel_init": nn.initializers.zeros}
    if kind == "lstm":
        cell = (nn.OptimizedLSTMCell if optimized else nn.LSTMCell)(features=H, **dtypes)
        split = lambda a: np.split(a, 4, axis=-1)  # noqa: E731
        gates = ("i", "f", "g", "o")
        params = {f"i{g}": {"kernel": k} for g, k in zip(gates, split(w["w_x"]), strict=True)}
        params |= {
            f"h{g}": {"kernel": k, "bias": b} for g, k, b in zip(gates, split(w["w_h"]), split(w["b"]), strict=True)
        }
    elif kind == "gru":
        cell = nn.GRUCell(features=H, **dtypes)
        split = lambda a: np.split(a, 3, axis=-1)  # noqa: E731
        params = {
            f"i{g}": {"kernel": k, "bias": b} for g, k, b in zip("rzn", split(w["w_x"]), split(w["b"]), strict=True)
        }
        params |= {f"h{g}": {"kernel": k} for g, k in zip("rz", split(w["w_h"])[:2], strict=True)}
        params["hn"] = {"kernel": split(w["w_h"])[2], "bias": w["b_hn"]}
    else:
        raise ValueError(f"flax has no {kind} cell")
    rnn = nn.RNN(cell, time_major=True)
    variables = {"params": {"cell": jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)}}
    xs = jnp.asarray(inputs(T, B, I), dtype)

    def loss_fn(v, x):
        return jnp.mean(jnp.square(rnn.apply(v, x).astype(jnp.float32)))

    name = f"flax nn.RNN({'OptimizedLSTMCell' if optimized else type(cell).__name__})"
    return _jax_impl(name, loss_fn, variables, xs)


# --- equinox -------------------------------------------------------------------------------


def equinox_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    import equinox as eqx

    w = canonical(kind, I, H)
    key = jax.random.key(0)
    if kind == "lstm":
        cell = eqx.nn.LSTMCell(I, H, key=key, dtype=dtype)
        cell = eqx.tree_at(
            lambda c: (c.weight_ih, c.weight_hh, c.bias),
            cell,
            (jnp.asarray(w["w_x"].T, dtype), jnp.asarray(w["w_h"].T, dtype), jnp.asarray(w["b"], dtype)),
        )
        carry0 = (jnp.zeros((B, H), dtype), jnp.zeros((B, H), dtype))
    elif kind == "gru":
        cell = eqx.nn.GRUCell(I, H, key=key, dtype=dtype)
        cell = eqx.tree_at(
            lambda c: (c.weight_ih, c.weight_hh, c.bias, c.bias_n),
            cell,
            (
                jnp.asarray(w["w_x"].T, dtype),
                jnp.asarray(w["w_h"].T, dtype),
                jnp.asarray(w["b"], dtype),
                jnp.asarray(w["b_hn"], dtype),
            ),
        )
        carry0 = jnp.zeros((B, H), dtype)
    else:
        raise ValueError(f"equinox has no {kind} cell")
    xs = jnp.asarray(inputs(T, B, I), dtype)

    def loss_fn(cell, x):
        batched = jax.vmap(cell)  # equinox cells are per example

        def step(carry, x_t):
            carry = batched(x_t, carry)
            return carry, carry[0] if kind == "lstm" else carry

        ys = jax.lax.scan(step, carry0, x)[1]
        return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    return _jax_impl(f"equinox {type(cell).__name__} + lax.scan", loss_fn, cell, xs)


# --- PyTorch --------------------------------------------------------------------------------


def torch_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}[dtype]
    w = canonical(kind, I, H)
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(I, H)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(w["w_x"].T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(w["w_h"].T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(w["b"]))
        bias_hh = np.zeros_like(w["b"])
        if kind == "gru":
            bias_hh[2 * H :] = w["b_hn"]  # PyTorch's b_hn sits inside r * (W_hn h + b_hn), as rnnjax's
        module.bias_hh_l0.copy_(torch.from_numpy(bias_hh))
    module = module.to(torch_dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module = module.to(device)
    xs = torch.from_numpy(inputs(T, B, I)).to(torch_dtype).to(device)

    def loss_value():
        ys, _ = module(xs)
        return torch.mean(ys.float() ** 2)

    def forward():
        with torch.no_grad():
            return loss_value()

    def train():
        module.zero_grad(set_to_none=True)
        loss = loss_value()
        loss.backward()
        return loss

    def block(out):
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return Impl(
        name=f"PyTorch nn.{'LSTM' if kind == 'lstm' else 'GRU'} ({device})",
        forward=forward,
        train=train,
        loss=lambda: float(forward()),
        block=block,
    )


# --- jax.experimental.rnn (cuDNN) -------------------------------------------------------------


def jax_cudnn_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    """JAX's cuDNN LSTM (`jax.experimental.rnn`), GPU only."""
    if kind != "lstm" or jax.default_backend() != "gpu":
        raise ValueError("jax.experimental.rnn is a cuDNN LSTM: GPU and lstm only")
    from jax.experimental import rnn as jrnn

    w = canonical(kind, I, H)
    # cuDNN layout: per layer W_ih [4H, I], W_hh [4H, H], b_ih [4H], b_hh [4H], gates i, f, g, o
    flat = np.concatenate([w["w_x"].T.ravel(), w["w_h"].T.ravel(), w["b"], np.zeros_like(w["b"])])
    weights = jnp.asarray(flat, dtype)
    xs = jnp.asarray(np.swapaxes(inputs(T, B, I), 0, 1), dtype)  # batch-major
    h0 = jnp.zeros((1, B, H), dtype)
    seq_lengths = jnp.full((B,), T, jnp.int32)

    def loss_fn(weights, x):
        ys, _, _ = jrnn.lstm(
            x, h0, h0, weights, seq_lengths, input_size=I, hidden_size=H, num_layers=1, dropout=0.0, bidirectional=False
        )
        return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    return _jax_impl("jax.experimental.rnn (cuDNN)", loss_fn, weights, xs)


def mlstm_kernels_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    """mlstm-kernels' native JAX chunkwise mLSTM (chunks of 64), fed rnnjax's projections and gates."""
    import os
    import sys
    import types

    import mlstm_kernels.jax

    # its chunkwise package's __init__ imports the Triton kernels (jax_triton, GPU only); the
    # native JAX kernel needs none of them, so import it without running that __init__
    pkg = types.ModuleType("mlstm_kernels.jax.chunkwise")
    pkg.__path__ = [os.path.join(os.path.dirname(mlstm_kernels.jax.__file__), "chunkwise")]
    sys.modules.setdefault("mlstm_kernels.jax.chunkwise", pkg)
    from mlstm_kernels.jax.chunkwise.native import mlstm_chunkwise__native_autograd

    cell = _cell(kind, H, dtype)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.asarray(inputs(T, B, I), dtype)
    heads, dh = cell.matrix.num_heads, cell.matrix.key_size

    def loss_fn(p, x):
        to_heads = lambda a: jnp.moveaxis(a.reshape(T, B, heads, -1), 0, 2)  # noqa: E731  [B, NH, T, DH]
        gate = lambda w, b: jnp.moveaxis(x @ p[w] + p[b], 0, -1)  # noqa: E731  [B, NH, T]
        h = mlstm_chunkwise__native_autograd(
            to_heads(x @ p["w_q"]),
            to_heads(x @ p["w_k"]),  # its qk_scale (dh ** -0.5) is rnnjax's key scaling
            to_heads(x @ p["w_v"]),
            gate("w_i", "b_i"),
            gate("w_f", "b_f"),
            chunk_size=64,
        )
        h = jnp.moveaxis(h, 2, 0).reshape(T, B, heads * dh)
        ys = jax.nn.sigmoid(x @ p["w_o"] + p["b_o"]) * h
        return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    return _jax_impl("mlstm-kernels (native JAX chunkwise, C=64)", loss_fn, params, xs)


def _cell_inputs(kind: str, T: int, B: int, I: int, H: int, dtype: str):
    cell = _cell(kind, H, dtype)
    return cell, cell.init(jax.random.key(0), I), jnp.asarray(inputs(T, B, I), dtype)


def memax_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    """memax's associative scan (`semigroup_scan` over its resettable semigroups, as its own
    modules run it), fed the coefficients rnnjax's cell computes, so that the outputs agree by
    construction and the timing compares the two ways of running the same recurrence.

    DeltaNet and Gated DeltaNet: memax's `GDNSemigroup`, whose combine multiplies [dk, dk]
    transition matrices, `(M_j M_i, M_j X_i + X_j)`, with `M_t = a_t (I - beta_t k_t k_t^T)` and
    `X_t = beta_t k_t v_t^T` (rnnjax's key-major state). The diagonal cells (LRU, S6): its
    `LRUSemigroup` (complex) or `S6Semigroup` (real) over the flattened state.
    """
    from memax.equinox.groups import Resettable
    from memax.equinox.scans import semigroup_scan
    from memax.equinox.semigroups.gdn import GDNSemigroup
    from memax.equinox.semigroups.lru import LRUSemigroup
    from memax.equinox.semigroups.s6 import S6Semigroup

    cell, params, xs = _cell_inputs(kind, T, B, I, H, dtype)

    def scan(semigroup, elems):  # elems: a pytree with leading axis T, for one sequence
        algebra = Resettable(semigroup)
        start = jnp.zeros((T,), bool)
        return semigroup_scan(algebra, algebra.initialize_carry(None), (elems, start))[0]

    if cell.matrix is not None:
        dk = cell.matrix.key_size

        def loss_fn(p, x):
            m = cell.matrix.inputs(p, x)  # q, k, v [T, B, heads, d]; log_decay [T, B, heads, 1]; beta [T, B, heads]
            beta = m.beta[..., None, None]
            eye = jnp.eye(dk, dtype=m.k.dtype)
            M = jnp.exp(m.log_decay)[..., None] * (eye - beta * m.k[..., :, None] * m.k[..., None, :])
            X = beta * m.k[..., :, None] * m.v[..., None, :]
            per_seq = lambda M, X: scan(GDNSemigroup(dk), (M, X))[1]  # noqa: E731
            S = jax.vmap(jax.vmap(per_seq, in_axes=1, out_axes=1), in_axes=1, out_axes=1)(M, X)  # over batch, heads
            o = jnp.einsum("tbhkv,tbhk->tbhv", S, m.q)
            ys = cell.matrix.readout(p, o, None, x)
            return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    elif cell.linear is not None:

        def loss_fn(p, x):
            a, b = cell.linear.coefficients(p, x)
            shape = a.shape
            a, b = a.reshape(T, B, -1), b.reshape(T, B, -1)
            semigroup = (LRUSemigroup if jnp.iscomplexobj(a) else S6Semigroup)(a.shape[-1])
            hs = jax.vmap(lambda a, b: scan(semigroup, (a, b))[1], in_axes=1, out_axes=1)(a, b)
            ys = cell.linear.readout(p, hs.reshape(shape), x)
            return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    else:
        raise ValueError(f"memax's scans need a linear or matrix form; {kind!r} has neither")
    return _jax_impl("memax semigroup_scan (associative)", loss_fn, params, xs)


def recurrentgemma_impl(kind: str, T: int, B: int, I: int, H: int, dtype: str) -> Impl:
    """RecurrentGemma's `scan.linear_scan` (the RG-LRU's scan; on the CPU its native
    `lax.scan`, unrolled 128 steps as its RG-LRU layer calls it), fed rnnjax's coefficients."""
    from recurrentgemma.jax import scan as rg_scan

    cell, params, xs = _cell_inputs(kind, T, B, I, H, dtype)
    if cell.linear is None:
        raise ValueError(f"recurrentgemma's linear_scan needs a linear form; {kind!r} has none")

    def loss_fn(p, x):
        a, b = cell.linear.coefficients(p, x)
        hs, _ = rg_scan.linear_scan(x=jnp.swapaxes(b, 0, 1), a=jnp.swapaxes(a, 0, 1), unroll=128)  # batch-major
        ys = cell.linear.readout(p, jnp.swapaxes(hs, 0, 1), x)
        return jnp.mean(jnp.square(ys.astype(jnp.float32)))

    return _jax_impl("recurrentgemma linear_scan (lax.scan, unroll 128)", loss_fn, params, xs)


IMPLS: dict[str, Callable[..., Impl]] = {
    "rnnjax": rnnjax_impl,
    "rnnjax-scan": lambda *a: rnnjax_impl(*a, method=rnnjax.Scan(kernel=False)),
    # the sequence kernel wherever it applies: the LSTM's cuDNN path on a GPU (float32), the blocked kernels
    "rnnjax-kernel": lambda *a: rnnjax_impl(*a, method=rnnjax.Scan(kernel=True)),
    "rnnjax-unroll4": lambda *a: rnnjax_impl(*a, method=rnnjax.Scan(unroll=4)),
    "rnnjax-unroll16": lambda *a: rnnjax_impl(*a, method=rnnjax.Scan(unroll=16)),
    "rnnjax-remat": lambda *a: rnnjax_impl(*a, method=rnnjax.Scan(remat=True)),
    "rnnjax-parallel": lambda *a: rnnjax_impl(*a, method=_parallel),
    "rnnjax-pallas": lambda *a: rnnjax_impl(*a, method=lambda cell: _parallel(cell, "pallas")),
    "rnnjax-seq": lambda *a: rnnjax_impl(*a, method=rnnjax.Scan()),
    "rnnjax-chunkwise": lambda *a: rnnjax_impl(*a, method=rnnjax.Chunkwise()),
    # the scan when nothing differentiates the call, the chunkwise form when something does
    "rnnjax-train-infer": lambda *a: rnnjax_impl(*a, method=rnnjax.TrainInfer(rnnjax.Chunkwise(), rnnjax.Scan())),
    "rnnjax-general": lambda *a: rnnjax_impl(*a, general=True),
    "rnnjax-chunk16": lambda *a: rnnjax_impl(*a, method=rnnjax.Chunkwise(16)),
    "rnnjax-chunk32": lambda *a: rnnjax_impl(*a, method=rnnjax.Chunkwise(32)),
    "rnnjax-chunk64": lambda *a: rnnjax_impl(*a, method=rnnjax.Chunkwise(64)),
    "rnnjax-chunk128": lambda *a: rnnjax_impl(*a, method=rnnjax.Chunkwise(128)),
    "mlstm-kernels": lambda *a: mlstm_kernels_impl(*a),
    "memax": memax_impl,
    "recurrentgemma": recurrentgemma_impl,
    "rnnjax-hoisted": rnnjax_hoisted_impl,
    "flax": flax_impl,
    "flax-optimized": lambda *a: flax_impl(*a, optimized=True),
    "equinox": equinox_impl,
    "torch": torch_impl,
    "jax-cudnn": jax_cudnn_impl,
}

# the implementations that apply to each kind of cell (rnnjax covers every registered cell)
PEERS_FOR = {
    "lstm": ("flax", "flax-optimized", "equinox", "torch", "jax-cudnn", "rnnjax-hoisted"),
    "gru": ("flax", "equinox", "torch", "rnnjax-hoisted"),
    "mlstm": ("mlstm-kernels",),
    "deltanet": ("memax", "rnnjax-general"),
    "gated_deltanet": ("memax", "rnnjax-general"),
    "gated_deltaproduct": ("rnnjax-general",),
    "lru": ("memax",),
    "s6": ("memax",),
    "rglru": ("recurrentgemma",),
}
