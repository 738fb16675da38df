"""The tracking study's tasks (word problems against compositions computed another way), the backbone's
cell options and hybrid layers, the MNIST-1D experiment's data and models (the paper's sizes), and the
smoke runs of both studies with resume."""

from __future__ import annotations

import dataclasses
import itertools
import json

import jax
import numpy as np
import pytest

from experiments import mnist1d, tracking_study
from experiments.backbone import Backbone, parse_cell_options, parse_layers
from experiments.config import ConfigError
from experiments.tasks.tracking import WordProblem


@pytest.mark.parametrize("kind", ["parity", "mod3", "s3", "s5"])
def test_word_problems_are_running_products(kind):
    """The targets are the running products, composed here directly: bits summed mod 2 or 3, permutations
    applied one after another."""
    problem = WordProblem(kind)
    batch = problem.batch(np.random.default_rng(0), 30, 5)
    xs, ys = batch["xs"], batch["ys"]
    if kind in ("parity", "mod3"):
        np.testing.assert_array_equal(ys, np.cumsum(xs, axis=0) % {"parity": 2, "mod3": 3}[kind])
        return
    n = {"s3": 3, "s5": 5}[kind]
    perms = list(itertools.permutations(range(n)))
    assert problem.classes == problem.tokens == len(perms)
    for b in range(5):
        state = list(range(n))  # where each letter is: apply x_1, then x_2, ...
        for t in range(30):
            state = [perms[xs[t, b]][i] for i in state]
            assert perms[ys[t, b]] == tuple(state), (t, b)


def test_word_problem_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        WordProblem("s4")


def test_cell_options_and_hybrid_layers():
    assert parse_cell_options("householder=2, negative_eigenvalues=True") == (
        ("householder", 2),
        ("negative_eigenvalues", True),
    )
    assert parse_cell_options("") == ()
    with pytest.raises(ValueError, match="expected key=value pairs"):
        parse_cell_options("householder")
    assert parse_layers("1", 2) == (1,)
    with pytest.raises(ValueError, match="names a layer outside 0..1"):
        parse_layers("2", 2)
    hybrid = Backbone("deltanet", 8, 2, 4, 4, num_heads=2, attention_layers=(1,),
                      cell_options=(("negative_eigenvalues", True),))  # fmt: skip
    cells = hybrid.layer_cells()
    assert cells[1] is None and cells[0].config["negative_eigenvalues"] is True
    params = hybrid.init(jax.random.key(0))
    assert hybrid.apply(params, np.zeros((5, 3), np.int32)).shape == (5, 3, 4)
    # the recurrent layer's state (2 heads of 4 x 4 floats) and the attention layer's cache at T = 10
    assert hybrid.state_bytes(params, 10) == 2 * 4 * 4 * 4 + 2 * 10 * 8 * 4
    with pytest.raises(ValueError, match="cell 'gru' takes no"):
        Backbone("gru", 8, 1, 4, 4, cell_options=(("householder", 2),)).cell()


def test_tracking_study_smoke_and_resume(tmp_path):
    result = tracking_study.run(tracking_study.SMOKE, tmp_path, progress=False)
    assert len(result["rows"]) == 2
    for row in result["rows"]:
        assert set(row["last"]) == {"8", "16"} and 0.0 <= row["last"]["16"] <= 1.0
    assert "**parity** (chance 0.500)" in (tmp_path / "tracking.md").read_text()
    assert (tmp_path / "tracking.png").stat().st_size > 0
    again = tracking_study.run(tracking_study.SMOKE, tmp_path, progress=False)  # read back, not retrained
    assert again["table"] == result["table"]
    other = dataclasses.replace(tracking_study.SMOKE, steps=4)  # the same folders, another config: refused
    with pytest.raises(ConfigError, match=r"holds a run of another config \(.*steps: finished run 3, now 4"):
        tracking_study.run(other, tmp_path, progress=False)
    assert tracking_study.slug("gated_deltaproduct n=2 [-1,1]") == "gated_deltaproduct-n2-neg"


def test_mnist1d_data_and_the_papers_model_sizes():
    data = mnist1d.dataset("default", num_samples=500)
    assert data["x"].shape == (400, 40) and data["x_test"].shape == (100, 40)
    shuffled = mnist1d.dataset("shuffled", num_samples=500)
    assert not np.allclose(shuffled["x"], data["x"]) and np.array_equal(shuffled["y"], data["y"])
    sizes = {}
    for name in ("logistic", "mlp", "cnn"):
        init, apply = mnist1d.model(name)
        params = init(jax.random.key(0))
        assert apply(params, data["x"][:3]).shape == (3, 10)
        sizes[name] = sum(a.size for a in jax.tree_util.tree_leaves(params))
    assert sizes == {"logistic": 410, "mlp": 15210, "cnn": 5210}  # the paper's models.py, parameter for parameter


def test_mnist1d_smoke_and_resume(tmp_path):
    result = mnist1d.run(mnist1d.SMOKE, tmp_path, progress=False)
    assert {r["model"] for r in result["rows"]} == {"cnn", "gru"}
    saved = json.loads((tmp_path / "runs" / "default" / "gru-seed0.json").read_text())
    assert saved["test_accuracy"] == next(r for r in result["rows"] if r["model"] == "gru")["test_accuracy"]
    assert "| cnn | 5210 |" in (tmp_path / "mnist1d.md").read_text()
    again = mnist1d.run(mnist1d.SMOKE, tmp_path, progress=False)  # every run read back
    assert again["table"] == result["table"]


def test_the_lru_classifier_is_affine_in_its_input_and_the_gru_one_is_not():
    """Why the LRU scores as logistic regression on MNIST-1D: a linear recurrence read out linearly, with no
    nonlinearity before the classifier's linear map, makes logits affine in the sequence."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3, 40)).astype(np.float32)
    for name, affine in (("lru", True), ("gru", False)):
        init, apply = mnist1d.model(name)
        params = init(jax.random.key(1))
        f = lambda v, params=params, apply=apply: np.asarray(apply(params, v))  # noqa: E731
        gap = np.abs((f(x + y) - f(y)) - (f(x) - f(np.zeros_like(x)))).max()
        assert (gap < 1e-4) == affine, (name, gap)


def test_mnist1d_refuses_an_unknown_model(tmp_path):
    with pytest.raises(ValueError, match="unknown models \\['transformer'\\]"):
        mnist1d.run(mnist1d.StudyConfig(models=("transformer",)), tmp_path, progress=False)
