"""Stacks, dropout, bidirectional, resets, truncated BPTT, remat, streaming, learnable
initial carry: each against an independent path (per-layer or per-segment runs, loops)."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import contract
from rnnjax.cells import registry
from rnnjax.contract import TOLERANCES
from rnnjax.layers import bidirectional, learnable_initial_carry, stack, stacked_unroll, streaming_step

T, B, I, H = 11, 3, 4, 5


def _data(dtype=jnp.float32, T=T):
    xs = jax.random.normal(jax.random.key(1), (T, B, I), dtype)
    return xs, jnp.array([T, 4, 7])


def mixed_stack(hidden_size, *, dtype=jnp.float32):
    return stack(
        [
            rnnjax.cells.lstm(hidden_size, dtype=dtype),
            rnnjax.cells.gru(hidden_size, dtype=dtype),
            rnnjax.cells.mingru(hidden_size, dtype=dtype),
        ],
        residual=True,
    )


# wrappers (learnable_initial_carry, mixed_precision) are held to the unwrapped cell on every registered
# cell and form by the contract (rnnjax.contract.check_wrappers_keep_every_form); a stack is a new cell
WRAPPED = {"mixed_stack": mixed_stack}


@pytest.mark.parametrize("check", contract.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", sorted(WRAPPED))
def test_wrapped_cells_meet_the_cell_contract(name, check):
    if check is contract.check_manual_bptt_equals_autodiff:
        pytest.skip("wrappers are not registered cells: their parts' references are checked with the parts")
    spec = dataclasses.replace(registry.spec("elman"), name=name, factory=WRAPPED[name], defaults={}, reference=None)
    reason = contract.not_applicable(check, spec)
    if reason:
        pytest.skip(reason)
    check(spec)


@pytest.mark.parametrize("residual", [False, True])
def test_stack_in_one_scan_equals_layer_by_layer(x64, residual):
    cells = [rnnjax.cells.lstm(H, dtype=jnp.float64), rnnjax.cells.gru(H, dtype=jnp.float64)]
    cell = stack(cells, residual=residual)
    params = cell.init(jax.random.key(0), I)
    xs, lengths = _data(jnp.float64)
    for reverse in (False, True):
        want = stacked_unroll(cells, params, xs, lengths=lengths, reverse=reverse, residual=residual)
        got = rnnjax.unroll(cell, params, xs, lengths=lengths, reverse=reverse)
        chex.assert_trees_all_close(got, want, **TOLERANCES["float64"])


def test_stack_errors():
    with pytest.raises(TypeError, match="`cells` must be a non-empty sequence of Cells"):
        stack([])
    with pytest.raises(ValueError, match="residual=True needs equal output sizes .* layer 1 output 6"):
        stack([rnnjax.cells.gru(5), rnnjax.cells.gru(6)], residual=True)


def test_dropout_between_layers():
    cells = [rnnjax.cells.gru(H), rnnjax.cells.gru(H)]
    params = stack(cells).init(jax.random.key(0), I)
    xs, lengths = _data()
    plain = stacked_unroll(cells, params, xs, lengths=lengths)
    # evaluation: dropout off, whatever the rate and key
    chex.assert_trees_all_equal(
        stacked_unroll(cells, params, xs, lengths=lengths, dropout=0.5, key=jax.random.key(3)), plain
    )
    a = stacked_unroll(cells, params, xs, dropout=0.5, key=jax.random.key(3), deterministic=False)
    b = stacked_unroll(cells, params, xs, dropout=0.5, key=jax.random.key(3), deterministic=False)
    c = stacked_unroll(cells, params, xs, dropout=0.5, key=jax.random.key(4), deterministic=False)
    chex.assert_trees_all_equal(a, b)  # explicit key: reproducible
    assert not np.allclose(a[1], c[1])
    assert not np.allclose(a[1], stacked_unroll(cells, params, xs)[1])
    with pytest.raises(ValueError, match="`key` is required"):
        stacked_unroll(cells, params, xs, dropout=0.5, deterministic=False)


def _run_alone_reversed(cell, params, x, L):
    _, ys = rnnjax.unroll(cell, params, x[:L][::-1])
    return jnp.concatenate([ys[::-1], jnp.zeros((x.shape[0] - L, ys.shape[-1]), ys.dtype)])


@pytest.mark.parametrize("merge", ["concat", "sum", lambda f, b: f * b])
def test_bidirectional_equals_forward_and_per_sequence_flipped_backward(x64, merge):
    fw, bw = rnnjax.cells.lstm(H, dtype=jnp.float64), rnnjax.cells.gru(H, dtype=jnp.float64)
    params = (fw.init(jax.random.key(0), I), bw.init(jax.random.key(1), I))
    xs, lengths = _data(jnp.float64)
    (c_fw, c_bw), ys = bidirectional(fw, bw, params, xs, lengths=lengths, merge=merge)
    _, ys_fw = rnnjax.unroll(fw, params[0], xs, lengths=lengths)
    ys_bw = jnp.stack([_run_alone_reversed(bw, params[1], xs[:, k], int(L)) for k, L in enumerate(lengths)], axis=1)
    merge_fn = {"concat": lambda f, b: jnp.concatenate([f, b], -1), "sum": jnp.add}.get(merge, merge)
    chex.assert_trees_all_close(ys, merge_fn(ys_fw, ys_bw), **TOLERANCES["float64"])
    with pytest.raises(ValueError, match="`merge` must be one of"):
        bidirectional(fw, bw, params, xs, merge="max")


@pytest.mark.parametrize("name", ["lstm", "mingru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_resets_equal_running_each_segment_alone(x64, name, reverse):
    cell = rnnjax.cells.get(name, hidden_size=H, dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    xs, _ = _data(jnp.float64)
    starts = [[0, 4, 9], [0, 1, 2, 10], [0]]  # segment starts per batch element
    resets = np.zeros((T, B), bool)
    for k, s in enumerate(starts):
        resets[s, k] = True
    methods = [rnnjax.Scan(), rnnjax.LinearScan()] if cell.linear is not None else [rnnjax.Scan()]
    for method in methods:
        carry, ys = rnnjax.unroll(cell, params, xs, resets=jnp.asarray(resets), reverse=reverse, method=method)
        for k, s in enumerate(starts):
            bounds = [*s, T]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                c_seg, y_seg = rnnjax.unroll(cell, params, xs[a:b, k], reverse=reverse)
                chex.assert_trees_all_close(ys[a:b, k], y_seg, **TOLERANCES["float64"])
            # the final carry belongs to the last segment processed
            a, b = (bounds[-2], bounds[-1]) if not reverse else (bounds[0], bounds[1])
            c_last, _ = rnnjax.unroll(cell, params, xs[a:b, k], reverse=reverse)
            chex.assert_trees_all_close(
                jax.tree_util.tree_map(lambda c, k=k: c[k], carry), c_last, **TOLERANCES["float64"]
            )


def test_resets_error_names_the_argument():
    cell = rnnjax.cells.gru(H)
    params = cell.init(jax.random.key(0), I)
    xs, _ = _data()
    with pytest.raises(ValueError, match=r"`resets` must have shape \(11, 3\)"):
        rnnjax.unroll(cell, params, xs, resets=jnp.zeros((T,), bool))
    with pytest.raises(TypeError, match="`resets` must be a boolean array, got dtype int32"):
        rnnjax.unroll(cell, params, xs, resets=jnp.zeros((T, B), jnp.int32))


@pytest.mark.parametrize("K", [1, 4, 11, 20])
def test_truncated_bptt_equals_full_bptt_restricted_to_each_chunk(x64, K):
    cell = rnnjax.cells.lstm(H, dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    xs, lengths = _data(jnp.float64)

    def loss(params, truncation):
        _, ys = rnnjax.unroll(cell, params, xs, lengths=lengths, method=rnnjax.Scan(truncation=truncation))
        return jnp.sum(jnp.sin(ys))

    # forward unchanged
    chex.assert_trees_all_close(
        rnnjax.unroll(cell, params, xs, lengths=lengths, method=rnnjax.Scan(truncation=K)),
        rnnjax.unroll(cell, params, xs, lengths=lengths),
        rtol=1e-12,
        atol=1e-12,
    )
    # independent path: the carries at chunk starts from a plain forward pass, then each chunk's own BPTT
    want = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = cell.initial_carry(params, (B,))
    for start in range(0, T, K):
        stop = min(start + K, T)
        chunk_len = jnp.clip(lengths - start, 0, stop - start)

        def chunk_loss(p, c=carry, a=start, b=stop, L=chunk_len):
            return jnp.sum(jnp.sin(rnnjax.unroll(cell, p, xs[a:b], initial_carry=c, lengths=L)[1]))

        want = jax.tree_util.tree_map(jnp.add, want, jax.grad(chunk_loss)(params))
        carry, _ = rnnjax.unroll(cell, params, xs[start:stop], initial_carry=carry, lengths=chunk_len)
    chex.assert_trees_all_close(jax.grad(loss)(params, K), want, **TOLERANCES["float64"])
    if K < T:  # truncation changes the gradient when there is more than one chunk
        assert not np.allclose(jax.grad(loss)(params, K)["w_h"], jax.grad(loss)(params, None)["w_h"])


@pytest.mark.parametrize("remat", [True, 1, 3, 11, 64])
@pytest.mark.parametrize("reverse", [False, True])
def test_remat_gradients_equal_plain_gradients(x64, remat, reverse):
    cell = rnnjax.cells.gru(H, dtype=jnp.float64)
    params = cell.init(jax.random.key(0), I)
    xs, lengths = _data(jnp.float64)

    def loss(params, xs, remat):
        carry, ys = rnnjax.unroll(cell, params, xs, lengths=lengths, reverse=reverse, method=rnnjax.Scan(remat=remat))
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry**2)

    chex.assert_trees_all_close(
        jax.grad(loss, (0, 1))(params, xs, remat), jax.grad(loss, (0, 1))(params, xs, False), **TOLERANCES["float64"]
    )


def test_remat_keeps_fewer_residuals():
    """XLA's own memory analysis of the compiled gradient: far less temporary memory with remat."""
    cell = rnnjax.cells.lstm(32)
    params = cell.init(jax.random.key(0), 8)
    xs = jnp.zeros((2048, 4, 8))

    def temp_bytes(remat):
        loss = lambda p: jnp.sum(rnnjax.unroll(cell, p, xs, method=rnnjax.Scan(remat=remat))[1])  # noqa: E731
        return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(True) < temp_bytes(False) / 4


def test_streaming_step_equals_full_unroll():
    cell = mixed_stack(H)
    params = cell.init(jax.random.key(0), I)
    xs, _ = _data()
    step = streaming_step(cell)
    carry, ys = cell.initial_carry(params, (B,)), []
    for t in range(T):
        carry, y = step(params, carry, xs[t])
        ys.append(y)
    want_carry, want_ys = rnnjax.unroll(cell, params, xs)
    chex.assert_trees_all_close((carry, jnp.stack(ys)), (want_carry, want_ys), **TOLERANCES["float32"])


def test_learnable_initial_carry_gets_the_batch_summed_gradient():
    base = rnnjax.cells.lstm(H)
    cell = learnable_initial_carry(base)
    params = cell.init(jax.random.key(0), I)
    params["carry"] = jax.tree_util.tree_map(lambda c: c + 0.3, params["carry"])
    xs, lengths = _data()

    def loss_learned(params):
        return jnp.sum(rnnjax.unroll(cell, params, xs, lengths=lengths)[1] ** 2)

    def loss_explicit(carry0):
        return jnp.sum(rnnjax.unroll(base, params["cell"], xs, initial_carry=carry0, lengths=lengths)[1] ** 2)

    carry0 = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (B, H)), params["carry"])
    want = jax.tree_util.tree_map(lambda g: g.sum(0), jax.grad(loss_explicit)(carry0))
    chex.assert_trees_all_close(jax.grad(loss_learned)(params)["carry"], want, **TOLERANCES["float32"])
