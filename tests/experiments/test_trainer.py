"""The trainer, configs, CLI, checkpoints and resume, on the experiments' smoke sizes."""

from __future__ import annotations

import json

import chex
import jax
import numpy as np
import pytest

from experiments import config as config_lib
from experiments import train as train_lib
from experiments.__main__ import main as cli


@pytest.mark.parametrize("name", config_lib.experiment_names())
def test_every_experiment_smoke_runs_from_the_command_line(tmp_path, name, capsys):
    workdir = tmp_path / name
    assert cli(["train", name, "--smoke", "--quiet", "--workdir", str(workdir)]) == 0
    for f in ("config.json", "metrics.jsonl", "summary.json", "curves.png"):
        assert (workdir / f).stat().st_size > 0, f
    summary = json.loads((workdir / "summary.json").read_text())
    assert np.isfinite(summary["eval"]["loss"])
    assert summary["baselines"], "every experiment reports a baseline beside its result"
    records = train_lib.read_metrics(workdir / "metrics.jsonl")
    assert {r["split"] for r in records} == {"train", "eval"}


def test_every_config_docstring_says_how_to_run_it():
    for name in config_lib.experiment_names():
        doc = config_lib.load(name).__doc__
        assert f"python -m experiments train {name}" in doc, name


def _params_and_log(workdir):
    _, _, _, params = train_lib.load_run(workdir)
    return params, (workdir / "metrics.jsonl").read_text()


@pytest.mark.parametrize("stop_after", [1, 3, 4])
def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, stop_after):
    """Bitwise on CPU: the same parameters and the same metric log."""
    cfg = config_lib.resolve(
        "adding", smoke=True, sets=["steps=6", "checkpoint_every=2", "eval_every=3", "log_every=1"]
    )
    train_lib.train(cfg, tmp_path / "full", progress=False, plot=False)
    out = train_lib.train(cfg, tmp_path / "cut", progress=False, plot=False, stop_after=stop_after)
    assert out == {"stopped_at": stop_after}
    train_lib.train(cfg, tmp_path / "cut", resume=True, progress=False, plot=False)
    params_full, log_full = _params_and_log(tmp_path / "full")
    params_cut, log_cut = _params_and_log(tmp_path / "cut")
    chex.assert_trees_all_equal(params_cut, params_full)
    assert log_cut == log_full


def test_resume_with_a_different_config_says_which_keys_differ(tmp_path):
    cfg = config_lib.resolve("adding", smoke=True)
    train_lib.train(cfg, tmp_path, progress=False, plot=False, stop_after=2)
    other = config_lib.override(cfg, {"hidden_size": 9})
    with pytest.raises(config_lib.ConfigError, match=r"hidden_size: checkpoint 8, now 9"):
        train_lib.train(other, tmp_path, resume=True, progress=False)


def test_existing_run_folder_needs_resume_or_overwrite(tmp_path):
    cfg = config_lib.resolve("adding", smoke=True)
    train_lib.train(cfg, tmp_path / "run", progress=False, plot=False)
    with pytest.raises(train_lib.RunFolderError, match="already exists; pass --resume"):
        train_lib.train(cfg, tmp_path / "run", progress=False)


def test_nonfinite_steps_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    from experiments.tasks import adding

    real = adding.batch

    def poisoned(rng, seq_len, batch_size):
        b = real(rng, seq_len, batch_size)
        b["xs"][0, 0, 0] = np.nan
        return b

    cfg = config_lib.resolve("adding", smoke=True, sets=["steps=20", "checkpoint_every=1"])
    # two clean steps with a checkpoint, then only NaN batches
    train_lib.train(cfg, tmp_path, progress=False, plot=False, stop_after=2)
    monkeypatch.setattr(adding, "batch", poisoned)
    with pytest.raises(train_lib.NonFiniteError, match=r"3 consecutive steps .* the last at step 5"):
        train_lib.train(cfg, tmp_path, resume=True, progress=False, max_nonfinite=3)
    _, _, _, params = train_lib.load_run(tmp_path)
    chex.assert_tree_all_finite(params)
    records = train_lib.read_metrics(tmp_path / "metrics.jsonl")
    assert all(np.isnan(r["loss"]) for r in records if r["step"] > 2 and r["split"] == "train")


def test_nonfinite_run_between_sync_points_names_the_step_it_reached_the_limit(tmp_path, monkeypatch):
    """The host reads the non-finite count only at log/eval/checkpoint points; the error still names the
    step at which the run of bad steps reached the limit, and nothing after it is checkpointed."""
    real_make = train_lib.make_task

    def make_task(name, config):
        task = real_make(name, config)

        def train_batch(step):
            b = task.train_batch(step)
            if step >= 2:  # updates 3, 4, 5, ... see NaN
                b["xs"] = np.full_like(b["xs"], np.nan)
            return b

        return task._replace(train_batch=train_batch)

    monkeypatch.setattr(train_lib, "make_task", make_task)
    cfg = config_lib.resolve(
        "adding", smoke=True, sets=["steps=20", "log_every=10", "eval_every=10", "checkpoint_every=10"]
    )
    with pytest.raises(train_lib.NonFiniteError, match=r"3 consecutive steps .* the last at step 5;"):
        train_lib.train(cfg, tmp_path, progress=False, plot=False, max_nonfinite=3)
    assert train_lib.Checkpoints(tmp_path / "checkpoints").latest_step() is None


@pytest.mark.parametrize(
    "sets,message",
    [
        (["colour=red"], "unknown config key 'colour'; valid keys: batch_size, cell,"),
        (["steps=many"], "--set steps=many: expected a value of type int"),
        (["steps"], "--set expects key=value, got 'steps'"),
        (["cell=lstn"], "cell='lstn' is not a registered cell; choose one of:"),
        (["hidden_size=0"], "config key 'hidden_size' must be >= 1, got 0"),
    ],
)
def test_bad_overrides_are_clear_errors(sets, message, capsys):
    assert cli(["train", "adding", "--smoke", "--set", *sets]) == 2
    assert message in capsys.readouterr().err


def test_unknown_experiment_lists_the_available_ones(capsys):
    with pytest.raises(SystemExit):
        cli(["train"])
    assert cli(["train", "addition", "--smoke"]) == 2
    assert (
        "unknown experiment 'addition'; available: adding, charlm, charlm_long, copy, digits, forecast, recall, "
        "segment, sentiment, tracking, translate" in capsys.readouterr().err
    )


def test_sweep_smoke_writes_table_and_plot(tmp_path, capsys):
    assert (
        cli(
            [
                "sweep",
                "adding",
                "--smoke",
                "--cells",
                "elman",
                "gru",
                "--grid",
                "seq_len=5,9",
                "--success-below",
                "0.05",
                "--workdir",
                str(tmp_path),
            ]
        )
        == 0
    )
    table = (tmp_path / "sweep.md").read_text()
    assert "| elman |" in table and "| gru |" in table and "solved" in table
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_vanishing_gradient_study_smoke(tmp_path):
    from experiments import vanishing_gradients as study

    out = study.run(study.SMOKE, tmp_path, smoke=True, progress=False)
    assert (tmp_path / "vanishing.png").stat().st_size > 0
    for cell in study.SMOKE.cells:
        for when in ("init", "trained"):
            norms = np.asarray(out["norms"][cell][when])
            assert norms.shape == (max(study.SMOKE.train_lens),) and np.all(np.isfinite(norms)) and np.all(norms > 0)


def test_hidden_gradient_probe_matches_autodiff_of_a_perturbed_unroll():
    """dL/dh_t from the probe equals jax.grad w.r.t. h_t computed by splitting the unroll at t."""
    import jax.numpy as jnp

    import rnnjax
    from experiments.model import build
    from experiments.tasks import adding, rng_for
    from experiments.tasks import make as make_task
    from experiments.vanishing_gradients import hidden_gradient_norms

    cfg = config_lib.resolve("adding", smoke=True, sets=["cell=elman", "seq_len=7"])
    model = build(make_task("adding", cfg), cfg)
    params = model.init(jax.random.PRNGKey(0))
    batch = adding.batch(rng_for(0, 0), 7, 3)
    norms = hidden_gradient_norms(model, params, batch)
    cell, p = model.cells[0], params["layers"][0]
    xs = jnp.asarray(batch["xs"])
    for t in (0, 3, 6):
        h_t, _ = rnnjax.unroll(cell, p, xs[: t + 1])

        def loss_from(h, t=t):
            h_T, ys = rnnjax.unroll(cell, p, xs[t + 1 :], initial_carry=h)
            last = ys[-1] if ys.shape[0] else h
            pred = last @ params["head"]["w"] + params["head"]["b"]
            return jnp.mean((pred - batch["ys"]) ** 2)

        g = jax.grad(loss_from)(h_t)
        np.testing.assert_allclose(norms[t], np.mean(np.linalg.norm(g, axis=-1)), rtol=1e-5)


def test_bf16_precision_computes_in_bfloat16_and_keeps_float32_params(tmp_path):
    from experiments import model as model_lib
    from experiments.tasks import make as make_task

    cfg = config_lib.resolve("adding", smoke=True, sets=["precision=bf16"])
    task = make_task("adding", cfg)
    model = model_lib.build(task, cfg)
    params = model.init(jax.random.key(0))
    batch = {k: jax.numpy.asarray(v) for k, v in task.train_batch(0).items()}
    f32, _ = model_lib.loss_and_metrics(model, task, params, batch)
    bf16, _ = model_lib.loss_and_metrics(model, task, params, batch, "bf16")
    assert f32 != bf16 and abs(float(f32 - bf16)) <= 2e-2 * abs(float(f32))  # bfloat16 has 8 bits of mantissa
    grads = jax.grad(lambda p: model_lib.loss_and_metrics(model, task, p, batch, "bf16")[0])(params)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(grads)} == {np.dtype("float32")}
    summary = train_lib.train(cfg, tmp_path, progress=False, plot=False)
    assert np.isfinite(summary["eval"]["loss"])
    _, _, _, trained = train_lib.load_run(tmp_path)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(trained)} == {np.dtype("float32")}
