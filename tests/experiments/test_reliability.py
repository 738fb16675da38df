"""Reliability: kill-and-resume, determinism, non-finite values, bad input everywhere, long sequences.

Figures reported on the docs' Reliability page (docs/reliability.md) come from these tests
(`pytest tests/experiments/test_reliability.py -s` prints them; `-m slow` runs the long variants).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnjax
from experiments import config as config_lib
from experiments import train as train_lib
from experiments.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[2]
# one XLA thread: the bitwise guarantee is stated for single-threaded CPU execution
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
KILL_SETS = ["checkpoint_every=1", "eval_every=10", "log_every=1", "hidden_size=16", "batch_size=16"]


def _cmd(workdir: Path, resume: bool, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments",
        "train",
        "adding",
        "--smoke",
        "--set",
        f"steps={steps}",
        *KILL_SETS,
        "--quiet",
        "--workdir",
        str(workdir),
        *(["--resume"] if resume else []),
    ]


def _env() -> dict[str, str]:
    flags = f"{os.environ.get('XLA_FLAGS', '')} {ONE_THREAD}".strip()
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


def _last_logged_step(workdir: Path) -> int:
    steps = []
    path = workdir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                steps.append(json.loads(line)["step"])
            except json.JSONDecodeError:
                pass
    return max(steps, default=0)


def _kill_and_resume(tmp_path: Path, kills: int, seed: int, steps: int) -> dict:
    """Run to completion while SIGKILLing the trainer `kills` times at random moments."""
    rng = random.Random(seed)
    reference = tmp_path / "uninterrupted"
    subprocess.run(
        _cmd(reference, resume=False, steps=steps), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=600
    )
    workdir = tmp_path / "killed"
    done_kills, lost, mid_save = 0, [], 0
    first = True
    while True:
        proc = subprocess.Popen(
            _cmd(workdir, resume=not first, steps=steps),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = False
        if done_kills < kills:
            # kill once the run has logged a random later step, after a random few milliseconds: the
            # log is written just before each step's checkpoint, so kills often land mid-save
            done = _last_logged_step(workdir)
            target = rng.randint(done + 1, done + max((steps - done) // (kills - done_kills + 1), 1))
            deadline = time.monotonic() + 120
            while proc.poll() is None and _last_logged_step(workdir) < target and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.05))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                before = _last_logged_step(workdir)  # what the killed run had done
                done_kills += 1
                entries = list((workdir / "checkpoints").iterdir()) if (workdir / "checkpoints").exists() else []
                ckpt_steps = [int(p.name) for p in entries if p.name.isdigit()]
                # orbax's temporary folder left behind: this kill interrupted a checkpoint write
                mid_save += any("tmp" in p.name for p in entries)
                lost.append(before - max(ckpt_steps, default=0))
                continue
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        if (workdir / "summary.json").exists():
            break
    # (a) no partial checkpoint is ever picked up: the restore succeeded every time and left only whole ones
    # (b) same parameters and same metric log as the uninterrupted run, bit for bit
    chex.assert_trees_all_equal(train_lib.load_run(workdir)[3], train_lib.load_run(reference)[3])
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    # (c) at most one save interval of work lost at each kill (checkpoint_every=1)
    assert all(n <= 1 for n in lost), lost
    return {"kills": done_kills, "steps_lost_per_kill": lost, "kills_during_a_save": mid_save}


def test_kill_and_resume(tmp_path):
    out = _kill_and_resume(tmp_path, kills=4, seed=0, steps=40)
    print(
        f"\nkill-and-resume: {out['kills']} SIGKILLs survived ({out['kills_during_a_save']} during a checkpoint "
        f"write); steps lost per kill: {out['steps_lost_per_kill']}"
    )
    assert out["kills"] == 4


@pytest.mark.slow
def test_kill_and_resume_many(tmp_path):
    out = _kill_and_resume(tmp_path, kills=25, seed=1, steps=150)
    print(
        f"\nkill-and-resume (long): {out['kills']} SIGKILLs survived ({out['kills_during_a_save']} during a "
        f"checkpoint write); max steps lost {max(out['steps_lost_per_kill'])}"
    )
    assert out["kills"] == 25


def test_partial_checkpoint_folder_is_ignored(tmp_path):
    """A half-written checkpoint (orbax's temporary folder) is never chosen for resuming."""
    cfg = config_lib.resolve("adding", smoke=True, sets=["steps=6", "checkpoint_every=2"])
    train_lib.train(cfg, tmp_path, progress=False, plot=False, stop_after=3)
    partial = tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-1234567890"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_text("half a checkpoint")
    ckpt = train_lib.Checkpoints(tmp_path / "checkpoints")
    assert ckpt.latest_step() == 2
    ckpt.close()
    train_lib.train(cfg, tmp_path, resume=True, progress=False, plot=False)
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 6


def test_metric_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    cfg = config_lib.resolve("adding", smoke=True, sets=["steps=6", "checkpoint_every=2"])
    train_lib.train(cfg, tmp_path / "full", progress=False, plot=False)
    train_lib.train(cfg, tmp_path / "cut", progress=False, plot=False, stop_after=3)
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "split": "tr')  # killed mid-write
    train_lib.train(cfg, tmp_path / "cut", resume=True, progress=False, plot=False)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


def test_checkpoint_holds_everything_needed(tmp_path):
    cfg = config_lib.resolve("adding", smoke=True)
    train_lib.train(cfg, tmp_path, progress=False, plot=False)
    ckpt = train_lib.Checkpoints(tmp_path / "checkpoints")
    meta = ckpt.read_meta(ckpt.latest_step())
    ckpt.close()
    assert meta["step"] == meta["data_position"] == cfg.steps
    assert meta["config"]["hidden_size"] == cfg.hidden_size and meta["versions"]["jax"] == jax.__version__
    state_dir = next((tmp_path / "checkpoints" / str(cfg.steps)).glob("state"))
    assert state_dir.is_dir()
    _, _, _, params = train_lib.load_run(tmp_path)
    chex.assert_tree_all_finite(params)


def test_resuming_under_another_version_says_so(tmp_path, monkeypatch, capsys):
    cfg = config_lib.resolve("adding", smoke=True)
    train_lib.train(cfg, tmp_path, progress=False, plot=False, stop_after=2)
    monkeypatch.setattr(rnnjax, "__version__", "9.9.9")
    train_lib.train(cfg, tmp_path, resume=True, progress=True, plot=False)
    assert "checkpoint written by rnnjax 0.1.0, resuming with 9.9.9" in capsys.readouterr().out


def test_same_seed_same_run_bitwise(tmp_path):
    cfg = config_lib.resolve("copy", smoke=True)
    for name in ("a", "b"):
        train_lib.train(cfg, tmp_path / name, progress=False, plot=False)
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    chex.assert_trees_all_equal(train_lib.load_run(tmp_path / "a")[3], train_lib.load_run(tmp_path / "b")[3])
    other = config_lib.override(cfg, {"seed": 1})
    train_lib.train(other, tmp_path / "c", progress=False, plot=False)
    assert (tmp_path / "c" / "metrics.jsonl").read_text() != (tmp_path / "a" / "metrics.jsonl").read_text()


def test_debug_nans_switch_raises_at_the_first_nan(tmp_path, monkeypatch):
    from experiments.tasks import adding

    real = adding.batch

    def poisoned(rng, seq_len, batch_size):
        b = real(rng, seq_len, batch_size)
        b["xs"][0, 0, 0] = np.nan
        return b

    monkeypatch.setattr(adding, "batch", poisoned)
    cfg = config_lib.resolve("adding", smoke=True)
    with pytest.raises(FloatingPointError, match="(?i)nan"):
        train_lib.train(cfg, tmp_path, progress=False, plot=False, debug_nans=True)
    assert not jax.config.jax_debug_nans  # switched off again


@pytest.mark.parametrize("name", rnnjax.cells.names())
def test_ten_thousand_steps_forward_and_backward_stay_finite(name):
    cell = rnnjax.cells.get(name, hidden_size=8)
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (10_000, 2, 4))

    @jax.jit
    def run(params):
        loss = lambda p: jnp.mean(rnnjax.unroll(cell, p, xs)[1] ** 2)  # noqa: E731
        return jax.value_and_grad(loss)(params)

    loss, grads = run(params)
    assert np.isfinite(float(loss))
    chex.assert_tree_all_finite(grads)


# --- bad input, property-based ----------------------------------------------------------------

CELL = rnnjax.cells.lstm(5)
PARAMS = CELL.init(jax.random.key(0), 3)
ERROR_WORDS = ("expected", "must", "got")


def _assert_clear(err: Exception, argument: str) -> None:
    text = str(err)
    assert f"`{argument}`" in text or argument in text, f"message does not name {argument!r}: {text}"
    assert any(w in text for w in ERROR_WORDS), text
    assert "Traceback" not in text and "XlaRuntimeError" not in type(err).__name__


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=4),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16, jnp.int32, jnp.float16]),
    lengths=st.one_of(st.none(), st.lists(st.integers(-3, 9), min_size=0, max_size=3)),
    lengths_float=st.booleans(),
    carry_h=st.one_of(st.none(), st.integers(1, 7)),
)
def test_unroll_bad_input_is_a_clear_error_or_a_correct_result(shape, dtype, lengths, lengths_float, carry_h):
    xs = jnp.zeros(shape, dtype)
    kwargs = {}
    if lengths is not None:
        kwargs["lengths"] = jnp.asarray(lengths, jnp.float32 if lengths_float else jnp.int32)
    if carry_h is not None:
        batch = tuple(shape[1:-1]) if len(shape) >= 2 else ()
        kwargs["initial_carry"] = rnnjax.cells.LSTMState(h=jnp.zeros((*batch, carry_h)), c=jnp.zeros((*batch, 5)))
    try:
        carry, ys = rnnjax.unroll(CELL, PARAMS, xs, **kwargs)
    except (TypeError, ValueError) as err:
        names = {"xs", "lengths", "initial_carry"}
        assert any(f"`{n}" in str(err) for n in names), str(err)
        _assert_clear(err, next(n for n in names if f"`{n}" in str(err)))
        return
    # accepted: then it must have been valid, and the result is right-shaped and finite
    assert len(shape) >= 2 and shape[-1] == 3 and dtype == jnp.float32
    assert ys.shape == (*shape[:-1], 5)
    assert bool(jnp.all(jnp.isfinite(ys)))
    if lengths is not None:
        assert np.all(np.asarray(lengths) >= 0) and np.all(np.asarray(lengths) <= shape[0]) and not lengths_float


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(["steps", "hidden_size", "cell", "learning_rate", "colour", "seq_len", "grad_clip"]),
    value=st.sampled_from(["", "-1", "0", "abc", "1e400", "nan", "3.5", "lstn", "  ", "1,2"]),
)
def test_command_line_bad_config_is_a_clear_error(key, value):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            config = config_lib.resolve("adding", smoke=True, sets=[f"{key}={value}"])
        except config_lib.ConfigError as e:
            assert key in str(e) or value in str(e), str(e)
            rc = cli(["train", "adding", "--smoke", "--set", f"{key}={value}", "--workdir", os.devnull])
            assert rc == 2 and "error:" in err.getvalue()
            return
    # accepted: the value parsed to the field's type and passed the value checks
    assert isinstance(getattr(config, key), type(getattr(config_lib.load("adding").Config(), key)))
    if key in ("steps", "hidden_size", "seq_len"):
        assert getattr(config, key) >= 1
    if key in ("learning_rate", "grad_clip"):
        assert np.isfinite(getattr(config, key)) and getattr(config, key) > 0
