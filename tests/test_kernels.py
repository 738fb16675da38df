"""The sequence kernels (rnnjax/_kernels/: the LSTM's and the GRU's) against the plain scan of `cell.step`.

The kernels' VJPs are written by hand, so every gradient here is compared with
`jax.grad` of the scan (`Scan(kernel=False)`) in float64. The NumPy reference BPTT
(tests/test_reference.py) and the cell contract also run through the kernels,
because they are `unroll`'s default for these cells on CPU.
"""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax._kernels import layout
from rnnjax.contract import TOLERANCES

T, I = 7, 3
KINDS = ("lstm", "gru")  # the cells with a sequence kernel


def _setup(kind, H, batch_shape, dtype=jnp.float64, seed=0):
    cell = rnnjax.cells.get(kind, hidden_size=H, dtype=dtype)
    params = cell.init(jax.random.key(seed), I)
    params = jax.tree_util.tree_map(
        lambda a: a + 0.2 * jax.random.normal(jax.random.key(seed + 1), a.shape, a.dtype), params
    )  # non-zero biases everywhere
    xs = jax.random.normal(jax.random.key(seed + 2), (T, *batch_shape, I), dtype)
    carry0 = jax.tree_util.tree_map(lambda a: a + 0.3, cell.initial_carry(params, batch_shape))
    return cell, params, xs, carry0


SCAN, KERNEL = rnnjax.Scan(kernel=False), rnnjax.Scan(kernel=True)  # the plain scan, the sequence kernel


def _loss(cell, lengths, reverse, kernel):
    def loss(params, xs, carry0):
        carry, ys = rnnjax.unroll(
            cell, params, xs, initial_carry=carry0, lengths=lengths, reverse=reverse, method=rnnjax.Scan(kernel=kernel)
        )
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree_util.tree_leaves(carry))

    return loss


CASES = [(6, (4,), reverse, padded) for reverse in (False, True) for padded in (False, True)] + [
    (6, (), True, False),  # unbatched
    (6, (2, 3), True, True),  # two batch axes
    (5, (2, 3), False, True),  # H = 5 cannot be split in two blocks: one block
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("H, batch_shape, reverse, padded", CASES)
def test_kernel_equals_scan_values_and_gradients(x64, small_blocks, kind, H, batch_shape, reverse, padded):
    cell, params, xs, carry0 = _setup(kind, H, batch_shape)
    lengths = None
    if padded:
        lengths = jnp.asarray(np.random.default_rng(0).integers(0, T + 1, batch_shape))
        lengths = lengths.at[(0,) * len(batch_shape)].set(0) if batch_shape else lengths  # a length-0 sequence
    got = jax.value_and_grad(_loss(cell, lengths, reverse, True), argnums=(0, 1, 2))(params, xs, carry0)
    want = jax.value_and_grad(_loss(cell, lengths, reverse, False), argnums=(0, 1, 2))(params, xs, carry0)
    chex.assert_trees_all_close(got, want, **TOLERANCES["float64"])
    out_k = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lengths, reverse=reverse, method=KERNEL)
    out_s = rnnjax.unroll(cell, params, xs, initial_carry=carry0, lengths=lengths, reverse=reverse, method=SCAN)
    chex.assert_trees_all_close(out_k, out_s, **TOLERANCES["float64"])


def test_blocks_reorder_the_gate_columns_by_hidden_unit():
    w = jnp.arange(2 * 16).reshape(2, 16)  # H = 4: gates i|f|g|o, each 4 wide
    first, second = layout.to_blocks(w, 4, 2, 4)
    # block 0 holds units 0, 1 of each gate, block 1 units 2, 3
    np.testing.assert_array_equal(first[0], [0, 1, 4, 5, 8, 9, 12, 13])
    np.testing.assert_array_equal(second[0], [2, 3, 6, 7, 10, 11, 14, 15])
    # the measured default: two blocks from 256 units on the CPU (two chains for two cores), one elsewhere
    assert layout.blocks_for(256) == (2 if jax.default_backend() == "cpu" else 1) and layout.blocks_for(128) == 1
    assert layout.blocks_for(6, 2) == 2 and layout.blocks_for(5, 2) == 1  # 2 must divide H


def _uses_kernel(kind="lstm", **kwargs) -> bool:
    cell = rnnjax.cells.get(kind, hidden_size=4)
    params = cell.init(jax.random.key(0), 2)
    jaxpr = jax.make_jaxpr(lambda p, x: rnnjax.unroll(cell, p, x, **kwargs))(params, jnp.ones((3, 2, 2)))
    return "custom_vjp_call" in str(jaxpr)


def test_the_kernel_is_the_default_on_cpu_and_steps_aside_when_it_does_not_apply():
    from rnnjax._unrolling import KERNEL_BACKENDS

    default = jax.default_backend() in KERNEL_BACKENDS  # the CPU (a GPU run has not made the kernels faster yet)
    assert _uses_kernel() == default and _uses_kernel("gru") == default
    assert _uses_kernel(lengths=jnp.array([1, 3]), reverse=True) == default
    assert _uses_kernel(method=KERNEL)
    assert not _uses_kernel(method=SCAN)
    assert not _uses_kernel(method=rnnjax.Scan(unroll=2))
    assert not _uses_kernel(method=rnnjax.Scan(remat=True))
    assert not _uses_kernel(resets=jnp.zeros((3, 2), bool))


def test_kernel_true_says_why_it_cannot_apply():
    msg = "rnnjax.Scan: kernel=True runs the cell's sequence kernel, which has no unroll factor, remat or truncation"
    for options in ({"unroll": 2}, {"remat": 2}, {"truncation": 3}):
        with pytest.raises(ValueError, match=re.escape(msg)):
            rnnjax.Scan(kernel=True, **options)
    cell = rnnjax.cells.lstm(4)
    params = cell.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=re.escape("Scan(kernel=True), but the sequence kernel takes no `resets`")):
        rnnjax.unroll(cell, params, jnp.ones((3, 2, 2)), resets=jnp.zeros((3, 2), bool), method=KERNEL)


def test_kernel_true_on_a_cell_without_one_and_a_bad_kernel_value():
    for name in ("mgu", "lstm_peephole"):
        cell = rnnjax.cells.get(name, hidden_size=4)
        params = cell.init(jax.random.key(0), 2)
        with pytest.raises(ValueError, match=re.escape(f"cell {cell.name!r} has no sequence kernel")):
            rnnjax.unroll(cell, params, jnp.ones((3, 2, 2)), method=KERNEL)
    with pytest.raises(TypeError, match=re.escape("rnnjax.Scan: `kernel` must be None, True or False, got 'yes'")):
        rnnjax.Scan(kernel="yes")


@pytest.mark.parametrize("kind", KINDS)
def test_kernel_under_vmap_jit_and_second_order_gradients(x64, small_blocks, kind):
    cell, params, xs, carry0 = _setup(kind, 4, (3,))
    ensemble = jax.tree_util.tree_map(lambda a: jnp.stack([a, 0.5 * a]), params)

    def loss(p, kernel):
        return jnp.sum(rnnjax.unroll(cell, p, xs, initial_carry=carry0, method=rnnjax.Scan(kernel=kernel))[1] ** 2)

    grads = {k: jax.jit(jax.vmap(jax.grad(lambda p, k=k: loss(p, k))))(ensemble) for k in (True, False)}
    chex.assert_trees_all_close(grads[True], grads[False], **TOLERANCES["float64"])

    # the hand-written backward pass is itself differentiable (reverse-over-reverse Hessian-vector products)
    def hvp(kernel):
        def g_dot_v(p):
            grads = jax.tree_util.tree_leaves(jax.grad(lambda q: loss(q, kernel))(p))
            return sum(jnp.vdot(g, v) for g, v in zip(grads, jax.tree_util.tree_leaves(params), strict=True))

        return jax.grad(g_dot_v)(params)

    hvp = {k: hvp(k) for k in (True, False)}
    chex.assert_trees_all_close(hvp[True], hvp[False], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_sequence_and_bfloat16(kind):
    cell = rnnjax.cells.get(kind, hidden_size=4)
    params = cell.init(jax.random.key(0), 2)
    carry, ys = rnnjax.unroll(cell, params, jnp.ones((0, 3, 2)))
    assert ys.shape == (0, 3, 4) and all(c.shape == (3, 4) for c in jax.tree_util.tree_leaves(carry))
    cell16 = rnnjax.cells.get(kind, hidden_size=4, dtype=jnp.bfloat16)
    p16 = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params)
    xs = jax.random.normal(jax.random.key(1), (5, 3, 2))
    ys16 = rnnjax.unroll(cell16, p16, xs.astype(jnp.bfloat16))[1]
    assert ys16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ys16, np.float32), rnnjax.unroll(cell, params, xs)[1], atol=3e-2)


# --- the LSTM's GPU kernel: cuDNN through jax.experimental.rnn -------------------------------


@pytest.mark.parametrize("max_steps", [None, 4])  # 4: T = 6 runs as two cuDNN calls, the carry passed on
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("on_device", [False, True])
def test_cudnn_lstm_equals_the_scan(monkeypatch, reverse, on_device, max_steps):
    """The packing, the lengths (0 included) and the reversal of rnnjax/_kernels/cudnn_lstm.py against
    the scan of `lstm.step`, values and gradients (params, inputs, initial carry). On the CPU through
    `jax.experimental.rnn.lstm_ref` (JAX's model of the cuDNN call, float64); on a GPU through cuDNN
    itself in float32 (the GPU check runs this file)."""
    from rnnjax._kernels import cudnn_lstm

    if on_device and jax.default_backend() != "gpu":
        pytest.skip("cuDNN needs a GPU")
    if max_steps:
        monkeypatch.setattr(cudnn_lstm, "MAX_STEPS", max_steps)
    dtype = jnp.float32 if on_device else jnp.float64
    with jax.enable_x64(not on_device):
        cell, params, xs, carry0 = _setup("lstm", 6, (5,), dtype)
        lengths = jnp.array([T, 3, 0, 1, T - 1])
        mask = rnnjax.sequence_mask(lengths, T)

        def kernel_loss(params, xs, carry0):
            hs, h, c = cudnn_lstm.lstm_sequence(params, xs, carry0.h, carry0.c, mask, reverse, reference=not on_device)
            w = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
            return jnp.sum(hs * w) + jnp.sum(jnp.sin(h)) + jnp.sum(jnp.sin(c)), (hs, h, c)

        def scan_loss(params, xs, carry0):
            carry, hs = rnnjax.unroll(
                cell,
                params,
                xs,
                initial_carry=carry0,
                lengths=lengths,
                reverse=reverse,
                method=SCAN,
            )
            w = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
            return jnp.sum(hs * w) + jnp.sum(jnp.sin(carry.h)) + jnp.sum(jnp.sin(carry.c)), (hs, carry.h, carry.c)

        (_, got), g_got = jax.value_and_grad(kernel_loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)
        (_, want), g_want = jax.value_and_grad(scan_loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)
        tol = 1e-4 if on_device else 1e-12
        chex.assert_trees_all_close(got, want, rtol=tol, atol=tol)
        chex.assert_trees_all_close(g_got, g_want, rtol=tol, atol=tol)


def test_cudnn_lstm_packs_rnnjax_params_in_cudnns_layout():
    """Unpacked by JAX's own `unpack_lstm_weights`, the flat vector gives back w_x^T, w_h^T, b and zeros."""
    from jax.experimental import rnn as jrnn

    from rnnjax._kernels import cudnn_lstm

    cell, params, _, _ = _setup("lstm", 4, (2,), jnp.float32)
    W_ih, W_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(cudnn_lstm.pack(params), I, 4, 1, False)
    np.testing.assert_array_equal(W_ih[0], params["w_x"].T)
    np.testing.assert_array_equal(W_hh[0], params["w_h"].T)
    np.testing.assert_array_equal(b_ih[0], params["b"])
    np.testing.assert_array_equal(b_hh[0], np.zeros(16, np.float32))
    assert cudnn_lstm.pack(params).size == jrnn.get_num_params_in_lstm(I, 4, 1, False)
