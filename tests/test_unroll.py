"""rnnjax.unroll: directions, layouts, edge cases and the error messages (pinned)."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.cells import LSTMState
from rnnjax.contract import TOLERANCES

T, B, I, H = 6, 3, 4, 5


@pytest.fixture
def lstm():
    cell = rnnjax.cells.lstm(H)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    return cell, params, xs


def test_reverse_without_lengths_equals_forward_over_flipped_input(lstm):
    cell, params, xs = lstm
    carry_r, ys_r = rnnjax.unroll(cell, params, xs, reverse=True)
    carry_f, ys_f = rnnjax.unroll(cell, params, xs[::-1])
    chex.assert_trees_all_close(carry_r, carry_f, rtol=1e-6)
    chex.assert_trees_all_close(ys_r, ys_f[::-1], rtol=1e-6)


def test_reverse_with_lengths_reverses_within_each_valid_length(x64, lstm):
    # float64: in float32 a batch of 3 and a batch of 1 round their matmuls differently, by machine (1e-6
    # relative on an AMD EPYC; more on a GPU, whose float32 matmuls may use TF32)
    cell, params, xs = lstm
    params, xs = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), (params, xs))
    lengths = jnp.array([6, 2, 4])
    carry, ys = rnnjax.unroll(cell, params, xs, lengths=lengths, reverse=True)
    for k, L in enumerate(lengths.tolist()):
        c_k, ys_k = rnnjax.unroll(cell, params, xs[:L, k][::-1])
        tol = dict(**TOLERANCES["float64"])
        chex.assert_trees_all_close(ys[:L, k], ys_k[::-1], **tol)
        chex.assert_trees_all_close(jax.tree_util.tree_map(lambda c, k=k: c[k], carry), c_k, **tol)
        assert not np.any(np.asarray(ys[L:, k]))


def test_batch_major_layout_is_the_transpose(lstm):
    cell, params, xs = lstm
    lengths = jnp.array([6, 2, 4])
    want = rnnjax.unroll(cell, params, xs, lengths=lengths)
    carry, ys = rnnjax.unroll(cell, params, jnp.swapaxes(xs, 0, 1), lengths=lengths, time_major=False)
    chex.assert_trees_all_close((carry, jnp.swapaxes(ys, 0, 1)), want, rtol=1e-6)


def test_zero_length_returns_initial_carry_and_zero_outputs(lstm):
    cell, params, xs = lstm
    carry0 = LSTMState(h=jnp.full((B, H), 0.3), c=jnp.full((B, H), -0.2))
    for reverse in (False, True):
        carry, ys = rnnjax.unroll(
            cell, params, xs, initial_carry=carry0, lengths=jnp.zeros(B, jnp.int32), reverse=reverse
        )
        chex.assert_trees_all_equal(carry, carry0)
        assert not np.any(np.asarray(ys))


def test_empty_sequence(lstm):
    cell, params, xs = lstm
    carry, ys = rnnjax.unroll(cell, params, xs[:0])
    chex.assert_shape(ys, (0, B, H))
    chex.assert_trees_all_equal(carry, cell.initial_carry(params, (B,)))


def test_traced_lengths_under_jit(lstm):
    cell, params, xs = lstm
    lengths = jnp.array([6, 2, 4])
    want = rnnjax.unroll(cell, params, xs, lengths=lengths)
    got = jax.jit(lambda l: rnnjax.unroll(cell, params, xs, lengths=l))(lengths)
    chex.assert_trees_all_close(got, want, rtol=1e-6)


def test_vmap_over_a_batch_of_sequences_equals_batched_unroll(lstm):
    cell, params, xs = lstm
    want_carry, want_ys = rnnjax.unroll(cell, params, xs)
    carry, ys = jax.vmap(lambda x: rnnjax.unroll(cell, params, x), in_axes=1, out_axes=(0, 1))(xs)
    chex.assert_trees_all_close((carry, ys), (want_carry, want_ys), rtol=1e-6)


def test_sequence_mask():
    mask = rnnjax.sequence_mask(jnp.array([0, 2, 3]), 3)
    np.testing.assert_array_equal(mask, [[False, True, True], [False, True, True], [False, False, True]])


# --- error messages: which argument, what was expected, what came -------------------------


def _raises(exc, *fragments):
    pattern = ".*".join(re.escape(f) for f in fragments)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


def test_error_wrong_rank(lstm):
    cell, params, xs = lstm
    with _raises(ValueError, "rnnjax.unroll", "`xs`", "rank >= 2", "[T, *batch, input_size]", "got shape (4,)"):
        rnnjax.unroll(cell, params, xs[0, 0])


def test_error_input_size_does_not_match_params(lstm):
    cell, params, xs = lstm
    with _raises(ValueError, "`xs` last axis", "input size 4", "got shape (6, 3, 7)"):
        rnnjax.unroll(cell, params, jnp.ones((T, B, 7)))


def test_error_mixed_dtypes(lstm):
    cell, params, xs = lstm
    with _raises(TypeError, "mixed dtypes", "`xs` is bfloat16", "`params` are float32"):
        rnnjax.unroll(cell, params, xs.astype(jnp.bfloat16))


def test_error_integer_inputs(lstm):
    cell, params, xs = lstm
    with _raises(TypeError, "`xs` must be floating", "got int32"):
        rnnjax.unroll(cell, params, jnp.ones((T, B, I), jnp.int32))


def test_error_params_of_another_cell(lstm):
    cell, _, xs = lstm
    gru_params = rnnjax.cells.gru(H).init(jax.random.key(0), I)
    with _raises(ValueError, "`params` do not match cell 'lstm'", "expected leaves", "['b']", "got", "['b_hn']"):
        rnnjax.unroll(cell, gru_params, xs)


def test_error_params_wrong_hidden_size(lstm):
    cell, _, xs = lstm
    params = rnnjax.cells.lstm(H + 1).init(jax.random.key(0), I)
    with _raises(ValueError, "`params['b']` expected shape (20,)", "hidden_size=5", "got (24,)"):
        rnnjax.unroll(cell, params, xs)


def test_error_carry_wrong_shape(lstm):
    cell, params, xs = lstm
    bad = LSTMState(h=jnp.zeros((B, H + 1)), c=jnp.zeros((B, H)))
    with _raises(ValueError, "`initial_carry.h` expected shape (3, 5)", "batch_shape (3,)", "got (3, 6)"):
        rnnjax.unroll(cell, params, xs, initial_carry=bad)


def test_error_carry_wrong_dtype(lstm):
    cell, params, xs = lstm
    bad = LSTMState(h=jnp.zeros((B, H), jnp.bfloat16), c=jnp.zeros((B, H)))
    with _raises(TypeError, "mixed dtypes", "`initial_carry.h` expected dtype float32", "got bfloat16"):
        rnnjax.unroll(cell, params, xs, initial_carry=bad)


def test_error_carry_wrong_structure(lstm):
    cell, params, xs = lstm
    with _raises(ValueError, "`initial_carry` must have the structure", "LSTMState"):
        rnnjax.unroll(cell, params, xs, initial_carry=jnp.zeros((B, H)))


def test_error_lengths_wrong_shape(lstm):
    cell, params, xs = lstm
    with _raises(ValueError, "`lengths` must have the batch shape (3,)", "got shape (2,)"):
        rnnjax.unroll(cell, params, xs, lengths=jnp.array([1, 2]))


def test_error_lengths_wrong_dtype(lstm):
    cell, params, xs = lstm
    with _raises(TypeError, "`lengths` must be an integer array", "got dtype float32"):
        rnnjax.unroll(cell, params, xs, lengths=jnp.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("bad,where", [(7, "lengths[1] = 7"), (-1, "lengths[1] = -1")])
def test_error_lengths_out_of_range(lstm, bad, where):
    cell, params, xs = lstm
    with _raises(ValueError, "`lengths` must lie in [0, T=6]", where):
        rnnjax.unroll(cell, params, xs, lengths=jnp.array([1, bad, 3]))


def test_error_not_a_cell(lstm):
    _, params, xs = lstm
    with _raises(TypeError, "`cell` must be an rnnjax.cells.Cell", "got function"):
        rnnjax.unroll(rnnjax.cells.lstm, params, xs)


def test_error_parallel_method_for_a_nonlinear_cell(lstm):
    cell, params, xs = lstm
    with _raises(ValueError, "method=LinearScan() needs a cell with a linear recurrence",
                 "cell 'lstm' has none; methods for it: Scan()"):  # fmt: skip
        rnnjax.unroll(cell, params, xs, method=rnnjax.LinearScan())


def test_error_unknown_method(lstm):
    cell, params, xs = lstm
    with _raises(
        TypeError, "`method` must be None or one of rnnjax.Scan, LinearScan, Chunkwise, Sharded", "got 'fast'"
    ):
        rnnjax.unroll(cell, params, xs, method="fast")


@pytest.mark.parametrize(
    "old,new",
    [
        ({"method": "sequential"}, "method='sequential' is now spelled method=rnnjax.Scan()"),
        ({"method": "parallel"}, "method='parallel' is now spelled method=rnnjax.LinearScan() (linear cells) or"),
        ({"unroll": 4}, "`unroll=` is now spelled method=rnnjax.Scan(unroll=...)"),
        ({"kernel": False}, "`kernel=` is now spelled method=rnnjax.Scan(kernel=...)"),
        ({"time_axis_name": "seq"}, "`time_axis_name=` is now spelled method=rnnjax.Sharded(axis_name, inner)"),
    ],
)
def test_old_spellings_name_the_new_one(lstm, old, new):
    cell, params, xs = lstm
    with _raises(TypeError, new):
        rnnjax.unroll(cell, params, xs, **old)


def test_methods_hash_and_compare_by_value():
    """Frozen values: static jit arguments and dictionary keys."""
    assert rnnjax.Scan(remat=True) == rnnjax.Scan(remat=True) and rnnjax.Scan() != rnnjax.Scan(unroll=2)
    assert len({rnnjax.Chunkwise(16), rnnjax.Chunkwise(16), rnnjax.Sharded("seq"), rnnjax.LinearScan()}) == 3
    cell = rnnjax.cells.mingru(H)
    run = jax.jit(lambda p, x, method: rnnjax.unroll(cell, p, x, method=method), static_argnums=2)
    with jax.enable_x64(True):  # float64: the two methods agree to rounding on any backend
        params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), I))
        xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
        chex.assert_trees_all_close(
            run(params, xs, rnnjax.LinearScan()), run(params, xs, rnnjax.Scan()), **TOLERANCES["float64"]
        )


def test_auto_says_what_it_runs(monkeypatch):
    assert rnnjax.auto(rnnjax.cells.gla(8, num_heads=2)) == rnnjax.Chunkwise()
    assert rnnjax.auto(rnnjax.cells.gru(4)) == rnnjax.Scan()
    assert rnnjax.auto(rnnjax.cells.mingru(4), backend="gpu") == rnnjax.LinearScan()
    assert rnnjax.auto(rnnjax.cells.mingru(4), carry_size=1024, backend="cpu") == rnnjax.LinearScan()
    assert rnnjax.auto(rnnjax.cells.mingru(4), carry_size=8192, backend="cpu") == rnnjax.Scan()


def test_train_infer_runs_the_inference_method_unless_differentiated(x64):
    """`TrainInfer(train, infer)`: the scan's values and gradients (params, inputs, initial carry; lengths,
    resets, reverse), with the inference method's program when nothing differentiates the call (a scan
    over the 9 steps) and the training method's under `jax.grad` (a scan over 3 chunks of 4)."""
    import re

    cell = rnnjax.cells.get("gated_deltanet", hidden_size=8, num_heads=2)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), I))
    xs = jax.random.normal(jax.random.key(1), (9, 2, I), jnp.float64)
    carry0 = cell.initial_carry(params, (2,))._replace(S=jax.random.normal(jax.random.key(2), (2, 2, 4, 4)))
    kw = dict(lengths=jnp.array([9, 5]), resets=jnp.zeros((9, 2), bool).at[3, 1].set(True))
    method = rnnjax.TrainInfer(train=rnnjax.Chunkwise(4), infer=rnnjax.Scan())

    for reverse in (False, True):

        def loss(params, xs, carry0, method, reverse=reverse):
            carry, ys = rnnjax.unroll(cell, params, xs, initial_carry=carry0, reverse=reverse, method=method, **kw)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.S**2), (carry, ys)

        want = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0, rnnjax.Scan())
        got = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0, method)
        chex.assert_trees_all_close(got, want, **TOLERANCES["float64 algorithm"])
        chex.assert_trees_all_close(loss(params, xs, carry0, method), loss(params, xs, carry0, rnnjax.Scan()))

    def scan_lengths(fn):
        return set(re.findall(r"length=(\d+)", str(jax.make_jaxpr(fn)(params))))

    forward = lambda p: loss(p, xs, carry0, method)[0]  # noqa: E731
    assert scan_lengths(forward) == {"9"} and scan_lengths(jax.grad(forward)) == {"3"}
    with _raises(TypeError, "`train` must be a Scan, LinearScan or Chunkwise value, got Sharded(axis_name='t')"):
        rnnjax.TrainInfer(train=rnnjax.Sharded("t"), infer=rnnjax.Scan())
    lstm = rnnjax.cells.lstm(H)
    with _raises(ValueError, "needs a cell with a matrix memory (MatrixRecurrence), and cell 'lstm' has none"):
        rnnjax.unroll(lstm, lstm.init(jax.random.key(0), I), jnp.ones((T, B, I), jnp.float32),
                      method=rnnjax.TrainInfer(rnnjax.Chunkwise(), rnnjax.Scan()))  # fmt: skip


def test_methods_from_their_repr():
    from rnnjax.methods import from_string

    for method in (
        rnnjax.Scan(unroll=4, remat=True),
        rnnjax.Chunkwise(16),
        rnnjax.LinearScan("pallas"),
        rnnjax.TrainInfer(train=rnnjax.Chunkwise(16), infer=rnnjax.Scan(unroll=2)),
    ):
        assert from_string(repr(method)) == method
    assert from_string("auto") is None and from_string("Chunkwise(chunk_size='sequence')") == rnnjax.Chunkwise(
        "sequence"
    )
    with _raises(ValueError, "method 'fast(2)': expected 'auto' or one of Scan(...), LinearScan(...), Chunkwise(...)"):
        from_string("fast(2)")


@pytest.mark.parametrize(
    "kwargs,exc,fragments",
    [
        ({"hidden_size": 0}, ValueError, ("rnnjax.cells.lstm", "`hidden_size` must be a positive int", "got 0")),
        ({"hidden_size": 4.5}, ValueError, ("`hidden_size` must be a positive int", "got 4.5")),
        ({"hidden_size": 4, "dtype": jnp.int32}, TypeError, ("`dtype` must be a floating dtype", "got int32")),
        ({"hidden_size": 4, "dtype": jnp.float64}, ValueError, ("`dtype` float64 needs 64-bit mode",)),
    ],
)
def test_factory_errors(kwargs, exc, fragments):
    with _raises(exc, *fragments):
        rnnjax.cells.lstm(**kwargs)


def test_error_unknown_activation():
    with _raises(ValueError, "`activation` must be one of ['relu', 'sigmoid', 'tanh']", "got 'gelu'"):
        rnnjax.cells.elman(4, activation="gelu")


def test_error_bad_input_size_at_init():
    with _raises(ValueError, "Cell.init: `input_size` must be a positive int", "got 0"):
        rnnjax.cells.gru(4).init(jax.random.key(0), 0)


def test_error_unknown_cell_name_lists_the_registered_ones():
    with _raises(KeyError, "unknown cell 'lstn'", "lstm"):
        rnnjax.cells.get("lstn", hidden_size=4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"remat": -2}, "`remat` must be False, True or a positive chunk length, got -2"),
        ({"truncation": 0}, "`truncation` must be a positive int, got 0"),
        ({"remat": 4, "truncation": 5}, "`remat` chunk 4 and `truncation` 5 must be equal"),
    ],
)
def test_error_remat_and_truncation(kwargs, message):
    with _raises(ValueError, "rnnjax.Scan: " + message):
        rnnjax.Scan(**kwargs)


def test_a_cell_hashes_and_is_a_static_jit_argument():
    cell = rnnjax.cells.lstm(H)
    assert hash(cell) == hash(cell) and {cell: 1}[cell] == 1
    params = cell.init(jax.random.key(0), I)
    run = jax.jit(lambda c, p, x: rnnjax.unroll(c, p, x), static_argnums=0)
    xs = jnp.ones((T, B, I))
    chex.assert_trees_all_close(run(cell, params, xs), rnnjax.unroll(cell, params, xs))
