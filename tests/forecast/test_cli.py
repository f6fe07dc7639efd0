"""``shopml forecast train|predict|backtest`` on the tiny world, and CLI errors (exit code 2)."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from shopml.cli import app

FAST = ["--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16"]


def test_train_predict_backtest_on_tiny_world(tiny_world, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "forecast",
            "train",
            "--data",
            str(tiny_world),
            "--freq",
            "D",
            "--horizon",
            "7",
            "--out",
            str(run),
            "--hidden",
            "8",
            "--device",
            "cpu",
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    assert (run / "model.safetensors").is_file() and (run / "history.json").is_file()

    # future covariates: the last 7 days of sales act as the "future" of the earlier history
    sales = pd.read_parquet(tiny_world / "sales.parquet")
    last = sales.groupby("unique_id")["ds"].transform("max")
    hist = sales[sales["ds"] <= last - pd.Timedelta(days=7)]
    futr = sales[sales["ds"] > last - pd.Timedelta(days=7)].drop(columns=["y"])
    hist.to_parquet(tmp_path / "hist.parquet")
    futr.to_parquet(tmp_path / "futr.parquet")
    world_like = tmp_path / "world_hist"
    world_like.mkdir()
    hist.to_parquet(world_like / "sales.parquet")
    (world_like / "calendar.parquet").write_bytes((tiny_world / "calendar.parquet").read_bytes())
    res = runner.invoke(
        app,
        [
            "forecast",
            "predict",
            "--model",
            str(run),
            "--data",
            str(world_like),
            "--futr",
            str(tmp_path / "futr.parquet"),
            "--out",
            str(tmp_path / "fc.parquet"),
            "--num-samples",
            "20",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    fc = pd.read_parquet(tmp_path / "fc.parquet")
    assert len(fc) == 7 * hist["unique_id"].nunique()
    assert {"mean", "median", "q0.1", "q0.9"} <= set(fc.columns)

    out = tmp_path / "bt"
    res = runner.invoke(
        app,
        [
            "forecast",
            "backtest",
            "--data",
            str(tiny_world),
            "--freq",
            "D",
            "--horizon",
            "7",
            "--windows",
            "2",
            "--baselines",
            "snaive,lightgbm",
            "--max-series",
            "30",
            "--num-samples",
            "20",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--lgbm-rows",
            "3000",
            "--lgbm-trees",
            "10",
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == [
        "model", "wql", "crps", "wmape", "mase", "coverage_50", "coverage_80", "coverage_90",
        "fallbacks", "seconds",
    ]  # fmt: skip
    assert metrics["model"].tolist() == ["armdn", "snaive", "lightgbm"]
    assert metrics[["wql", "crps", "wmape"]].notna().all().all()
    assert len(list(out.glob("fan_*.png"))) >= 1


def test_cli_errors_exit_2(tmp_path):
    runner = CliRunner()
    bad = pd.DataFrame(
        {"unique_id": [1, 1], "ds": pd.to_datetime(["2024-01-01"] * 2), "y": [1.0, 2.0]}
    )
    bad.to_parquet(tmp_path / "bad.parquet")
    res = runner.invoke(
        app,
        [
            "forecast",
            "train",
            "--data",
            str(tmp_path / "bad.parquet"),
            "--horizon",
            "2",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 2 and "duplicate" in res.output
    res = runner.invoke(
        app,
        [
            "forecast",
            "train",
            "--data",
            str(tmp_path / "nope.parquet"),
            "--horizon",
            "2",
            "--out",
            str(tmp_path / "r"),
            "--freq",
            "W",
        ],
    )
    assert res.exit_code == 2 and "expected a file" in res.output
    res = runner.invoke(
        app,
        [
            "forecast",
            "train",
            "--data",
            str(tmp_path / "bad.parquet"),
            "--horizon",
            "2",
            "--out",
            str(tmp_path / "r"),
            "--freq",
            "5min",
        ],
    )
    assert res.exit_code == 2 and "--freq: expected one of D, W" in res.output


def test_monthly_world_and_weekly_panel_with_gaps_backtest_end_to_end(tiny_world, tmp_path):
    """The world aggregated to months (MS) and a weekly panel with missing weeks both go through
    ``shopml forecast backtest`` with every baseline following the frequency."""
    sales = pd.read_parquet(tiny_world / "sales.parquet")
    monthly = (
        sales.assign(ds=sales["ds"].dt.to_period("M").dt.to_timestamp())
        .groupby(["unique_id", "ds"], as_index=False)
        .agg(y=("y", "sum"), price=("price", "mean"), promo=("promo", "mean"))
    )
    monthly.to_parquet(tmp_path / "monthly.parquet")
    weekly = (
        sales.assign(ds=sales["ds"].dt.to_period("W-SUN").dt.start_time)
        .groupby(["unique_id", "ds"], as_index=False)
        .agg(y=("y", "sum"), price=("price", "mean"))
    )
    weekly = weekly.sample(frac=0.9, random_state=0)  # about 10% of the weeks go missing
    weekly.to_parquet(tmp_path / "weekly.parquet")
    runner = CliRunner()
    for name, freq, horizon, windows in (("monthly", "MS", 2, 1), ("weekly", "W-MON", 4, 2)):
        out = tmp_path / f"bt_{name}"
        res = runner.invoke(
            app,
            [
                "forecast", "backtest", "--data", str(tmp_path / f"{name}.parquet"),
                "--freq", freq, "--horizon", str(horizon), "--windows", str(windows),
                "--baselines", "snaive,ets,lightgbm", "--num-samples", "20", "--out", str(out),
                "--device", "cpu", "--lgbm-rows", "2000", "--lgbm-trees", "5", "--max-series", "20",
                *FAST,
            ],
        )  # fmt: skip
        assert res.exit_code == 0, (name, res.output)
        metrics = pd.read_csv(out / "metrics.csv").set_index("model")
        assert list(metrics.index) == ["armdn", "snaive", "ets", "lightgbm"], name
        assert metrics[["wql", "wmape", "coverage_80"]].notna().all().all(), name
    res = runner.invoke(
        app,
        [
            "forecast", "backtest", "--data", str(tmp_path / "weekly.parquet"), "--freq", "W-MON",
            "--horizon", "4", "--missing", "refuse", "--out", str(tmp_path / "r"),
        ],
    )  # fmt: skip
    assert res.exit_code == 2 and "has missing periods" in res.output
