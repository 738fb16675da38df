"""Loaders for the user's own data: they work, and bad files are clear errors naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import config as config_lib
from experiments import train as train_lib
from experiments.tasks import data


def test_text_label_csv_reads_and_maps_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"Great, loved it",pos\nawful,neg\nfine,pos\n')
    texts, labels, classes = data.text_label_csv(path)
    assert texts[0] == "Great, loved it" and classes == ["neg", "pos"] and labels.tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("review,score\nok,1\nbad,0\n", "needs columns 'text' and 'label'; missing ['label', 'text']"),
        ("text,label\n", "has a header but no rows"),
        ("text,label\nok,a\nfine,a\n", "the label column has one value ('a'); need at least two classes"),
        ("text,label\nok,a\n,b\n", "empty text or label on line 3"),
    ],
)
def test_text_label_csv_errors(tmp_path, content, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(
        data.DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
        data.text_label_csv(path)
    assert str(path) in str(pytest.raises(data.DataError, data.text_label_csv, path).value)


def test_series_loaders(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(20.0))
    assert data.series_file(tmp_path / "s.npy").shape == (20,)
    (tmp_path / "s.csv").write_text("date,value\n" + "".join(f"d{i},{i * 1.5}\n" for i in range(12)))
    assert data.series_file(tmp_path / "s.csv")[-1] == 16.5
    assert data.series_file(tmp_path / "s.csv", column="value")[1] == 1.5
    with pytest.raises(data.DataError, match="no column 'price'; columns are \\['date', 'value'\\]"):
        data.series_file(tmp_path / "s.csv", column="price")
    (tmp_path / "two.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(data.DataError, match="expected one numeric column, found \\['a', 'b'\\]"):
        data.series_file(tmp_path / "two.csv")
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan] * 10))
    with pytest.raises(data.DataError, match="need at least 8 finite values, got 20 \\(10 not finite\\)"):
        data.series_file(tmp_path / "nan.npy")


def test_text_file_errors(tmp_path):
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(data.DataError, match="need at least 100 characters"):
        data.text_file(tmp_path / "short.txt")


def test_user_data_trains_end_to_end(tmp_path):
    """Each experiment's data_path: a user CSV of reviews, a user series, a user text."""
    rng = np.random.default_rng(0)
    words = ["good", "bad", "tasty", "awful", "fine", "meh"]
    rows = [f'"{" ".join(rng.choice(words, 5))}",{"yes" if k % 2 else "no"}' for k in range(60)]
    (tmp_path / "r.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    np.save(tmp_path / "s.npy", np.sin(np.arange(300) / 5.0))
    (tmp_path / "t.txt").write_text("To be, or not to be, that is the question. " * 30)
    for name, sets in [
        ("sentiment", [f"data_path={tmp_path / 'r.csv'}"]),
        ("forecast", [f"data_path={tmp_path / 's.npy'}", "season=31"]),
        ("charlm", [f"data_path={tmp_path / 't.txt'}", "eval_chars=200"]),
    ]:
        cfg = config_lib.resolve(name, smoke=True, sets=sets)
        summary = train_lib.train(cfg, tmp_path / name, progress=False, plot=False)
        assert np.isfinite(summary["eval"]["loss"]) and summary["report"]


def test_missing_user_file_from_the_command_line(capsys):
    from experiments.__main__ import main as cli

    assert cli(["train", "sentiment", "--smoke", "--set", "data_path=/no/such.csv", "--workdir", "/tmp/x-none"]) == 2
    assert "data file /no/such.csv does not exist" in capsys.readouterr().err
