"""Multi-step forecasting of a real series: an RNN against naive, seasonal-naive and exponential smoothing.

Data: weekly Mauna Loa CO2 (statsmodels), or `data_path` (CSV or .npy). The
first 80% is for training (its last `val_fraction` of forecast origins held
out for evaluation during training), the last 20% for the test.

The RNN reads the `context` most recent values and predicts the next
`horizon` values at once (direct multi-step). It sees the window relative to
its last value and predicts changes from it, so the rising level of the series
never leaves the range it was trained on.

Test protocol: forecasts from every `stride`-th origin in the test part, for
each method: naive (last value), seasonal naive (the value one season
earlier), Holt-Winters exponential smoothing with additive trend and season
(statsmodels; smoothing parameters fitted on the training part, then the
model is run with those parameters through the data up to each origin), and
the RNN. Errors:
MAE, RMSE and MASE (MAE over the in-sample MAE of the seasonal naive forecast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments.tasks import Task, rng_for
from experiments.tasks import data as data_lib


def make(config) -> Task:
    y = data_lib.series_file(config.data_path, config.column) if config.data_path else data_lib.co2_weekly()
    L, H, m = config.context, config.horizon, config.season
    n = len(y)
    split = int(0.8 * n)
    if split - L - H < 10:
        raise data_lib.DataError(f"series of {n} values is too short for context={L} and horizon={H}")
    scale = float(np.std(y[H:split] - y[: split - H])) or 1.0  # typical change over one horizon
    origins = np.arange(L - 1, split - H)  # origin t: inputs y[t-L+1 .. t], targets y[t+1 .. t+H]
    n_val = max(int(len(origins) * config.val_fraction), 1)
    fit_origins, val_origins = origins[:-n_val], origins[-n_val:]

    def windows(ts: np.ndarray) -> dict[str, np.ndarray]:
        past = np.stack([y[t - L + 1 : t + 1] for t in ts], axis=1)  # [L, B]
        last = past[-1]
        future = np.stack([y[t + 1 : t + H + 1] for t in ts], axis=0)  # [B, H]
        return {
            "xs": ((past - last) / scale)[..., None].astype(np.float32),
            "ys": ((future - last[:, None]) / scale).astype(np.float32),
        }

    def rnn_forecast(model, params, ts: np.ndarray) -> np.ndarray:
        past = np.stack([y[t - L + 1 : t + 1] for t in ts], axis=1)
        pred = np.asarray(model.apply(params, jnp.asarray(((past - past[-1]) / scale)[..., None], jnp.float32)))
        return past[-1][:, None] + scale * pred

    def report(model, params, workdir) -> dict[str, Any]:
        import statsmodels.api as sm

        test_origins = np.arange(max(split - 1, L - 1), n - H, config.stride)
        truth = np.stack([y[t + 1 : t + H + 1] for t in test_origins])
        steps = np.arange(1, H + 1)
        forecasts = {
            "naive": np.stack([np.full(H, y[t]) for t in test_origins]),
            "seasonal_naive": np.stack([y[t + steps - m * np.ceil(steps / m).astype(int)] for t in test_origins]),
        }

        def holt_winters(series):
            return sm.tsa.ExponentialSmoothing(
                series, trend="add", seasonal="add", seasonal_periods=m, initialization_method="heuristic"
            )

        fitted = holt_winters(y[:split]).fit().params  # smoothing parameters fitted on the training part only
        fixed = {k: fitted[k] for k in ("smoothing_level", "smoothing_trend", "smoothing_seasonal")}
        forecasts["exp_smoothing"] = np.stack(
            [holt_winters(y[: t + 1]).fit(optimized=False, **fixed).forecast(H) for t in test_origins]
        )
        forecasts["rnn"] = rnn_forecast(model, params, test_origins)
        mase_scale = np.mean(np.abs(y[m:split] - y[: split - m]))
        errors = {
            name: {
                "mae": float(np.mean(np.abs(f - truth))),
                "rmse": float(np.sqrt(np.mean((f - truth) ** 2))),
                "mase": float(np.mean(np.abs(f - truth)) / mase_scale),
            }
            for name, f in forecasts.items()
        }
        _plot(Path(workdir) / "forecast.png", y, split, test_origins, forecasts, H)
        return {"test_origins": len(test_origins), "horizon": H, "errors": errors}

    return Task(
        name="forecast",
        input_size=1,
        vocab_size=None,
        output_size=H,
        loss="mse",
        readout="last",
        train_batch=lambda step: windows(rng_for(config.seed, step).choice(fit_origins, config.batch_size)),
        eval_batches=[windows(val_origins)],
        baselines={"mse": float(np.mean(windows(val_origins)["ys"] ** 2))},  # predicting "no change"
        report=report,
    )


def _plot(out: Path, y, split, origins, forecasts, H) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5))
    ax = axes[0]
    ax.plot(np.arange(len(y)), y, c="k", lw=0.8, label="series")
    ax.axvline(split, c="gray", ls=":", label="train | test")
    for name, f in forecasts.items():
        ax.plot(np.arange(origins[0] + 1, origins[0] + H + 1), f[0], label=f"{name}, first test origin")
    ax.set_xlim(split - 3 * H, len(y))
    ax.set_title("forecasts from the first test origin")
    ax.legend(fontsize=8)
    ax = axes[1]
    truth = np.stack([y[t + 1 : t + H + 1] for t in origins])
    for name, f in forecasts.items():
        ax.plot(np.arange(1, H + 1), np.mean(np.abs(f - truth), axis=0), label=name)
    ax.set_xlabel("steps ahead")
    ax.set_ylabel("MAE over test origins")
    ax.set_title("error against horizon")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
