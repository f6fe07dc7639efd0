"""Rolling-origin backtest of AR-MDN, its ablations and the baselines on the same windows.

Windows: with ``T`` the last date of the data and ``H`` the horizon, origins are
``c_i = T - (N - i) * H`` for ``i = 0..N-1``; window ``i`` scores ``(c_i, c_i + H]``, so the N
windows tile the last ``N * H`` steps. Scored series: those observed from at least
``3 H + season`` steps before ``c_0`` through ``T`` (enough history for every baseline).

Training: the global models (AR-MDN variants, LightGBM) are trained once on data up to ``c_0``
and then condition on the history up to each origin without refitting; the local statsforecast
models are refit at every origin (that is how they are used). No target after an origin is ever
seen by a forecast made at that origin.

Scores: ``wql`` (quantiles 0.1..0.9), ``crps`` (exact from samples for AR-MDN; from the 19-level
quantile grid 0.05..0.95 for quantile-only models; ``crps_grid`` gives the grid version for every
model), ``wmape`` and ``mase`` of the median, interval coverage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopml.forecast import metrics as M
from shopml.forecast.baselines import QUANTILE_GRID, LightGBMQuantiles, statsforecast_quantiles
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.data import FREQ_STEP, validate_frame, validate_static

Q_INDEX = {q: i for i, q in enumerate(QUANTILE_GRID)}
WQL_IDX = [Q_INDEX[q] for q in M.QUANTILES_WQL]
BASELINES = ("snaive", "ets", "croston", "tsb", "lightgbm")
ABLATIONS = {
    "armdn_1gauss": {"num_components": 1},
    "armdn_no_assoc": {"use_assoc_mlp": False},
}
METRICS_COLUMNS = ["model", "wql", "crps", "wmape", "mase", "coverage_80"]


def season_of(freq: str) -> int:
    return 7 if freq == "D" else 52


def _score(
    y: np.ndarray, grid: np.ndarray, scale: np.ndarray, samples: np.ndarray | None
) -> dict[str, float]:
    """Scores of one model. ``y (n, W, H)``, ``grid (n, W, H, 19)``, ``samples (n, W, H, S)``."""
    n = y.shape[0]
    median = grid[..., Q_INDEX[0.5]]
    out = {
        "wql": M.weighted_quantile_loss(y, grid[..., WQL_IDX], M.QUANTILES_WQL),
        "crps_grid": float(M.crps_from_quantiles(y, grid, QUANTILE_GRID).sum() / np.abs(y).sum()),
        "wmape": M.wmape(y, median),
        "mase": M.mase(y.reshape(n, -1), median.reshape(n, -1), scale),
        "coverage_50": M.coverage(y, grid[..., Q_INDEX[0.25]], grid[..., Q_INDEX[0.75]]),
        "coverage_80": M.coverage(y, grid[..., Q_INDEX[0.1]], grid[..., Q_INDEX[0.9]]),
        "coverage_95": float("nan"),
    }
    if samples is not None:
        out["crps"] = M.weighted_crps(y, samples)
        lo, hi = np.quantile(samples, [0.025, 0.975], axis=-1)
        out["coverage_95"] = M.coverage(y, lo, hi)
    else:
        out["crps"] = out["crps_grid"]
    return out


def backtest(
    df: pd.DataFrame,
    static_df: pd.DataFrame | None,
    config: ARMDNConfig,
    windows: int,
    baselines: list[str],
    out_dir: str | Path | None = None,
    ablations: bool = False,
    num_samples: int = 200,
    max_series: int | None = None,
    fan_charts: int = 4,
    verbose: bool = False,
    lightgbm_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the backtest; write ``out_dir/metrics.csv`` and fan charts when ``out_dir`` is given.

    Args:
        df, static_df: the data (``df`` with covariates, see ``data.py``).
        config: AR-MDN configuration (``freq`` and ``horizon`` define the windows).
        windows: N rolling origins.
        baselines: subset of ``snaive, ets, croston, tsb, lightgbm``.
        ablations: also run the one-Gaussian and no-associative-MLP AR-MDN variants.
        max_series: score at most this many eligible series (random, seeded) to bound CPU time.
        lightgbm_options: keyword arguments of :class:`LightGBMQuantiles` (``max_rows``,
            ``n_estimators``, ...).

    Returns:
        ``{"metrics": DataFrame (one row per model), "timings": {...}, "series": n, ...}``.
    """
    from shopml.forecast.model import ARMDN

    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"baselines: expected names in {list(BASELINES)}, found {unknown}")
    if windows < 1:
        raise ValueError(f"windows: expected >= 1, found {windows}")
    freq, h = config.freq, config.horizon
    step, season = FREQ_STEP[freq], season_of(freq)
    df = validate_frame(df, "df", freq)
    static_df = validate_static(static_df)
    t_end = df["ds"].max()
    cutoffs = [t_end - (windows - i) * h * step for i in range(windows)]
    first = df.groupby("unique_id")["ds"].min()
    last = df.groupby("unique_id")["ds"].max()
    need_start = cutoffs[0] - (3 * h + season - 1) * step
    elig = first.index[(first <= need_start) & (last == t_end)].to_numpy()
    if len(elig) == 0:
        raise ValueError(
            f"df: no series spans {need_start.date()}..{t_end.date()}; expected series with at "
            f"least {3 * h + season} observations before the first origin for windows={windows}, "
            f"horizon={h}"
        )
    if max_series is not None and len(elig) > max_series:
        elig = np.sort(np.random.default_rng(config.seed).choice(elig, max_series, replace=False))
    df_e = df[df["unique_id"].isin(elig)].reset_index(drop=True)
    n = len(elig)
    y_true = np.stack(
        [
            df_e.loc[(df_e["ds"] > c) & (df_e["ds"] <= c + h * step), "y"].to_numpy().reshape(n, h)
            for c in cutoffs
        ],
        axis=1,
    )  # (n, W, H)
    hist0 = df_e[df_e["ds"] <= cutoffs[0]]
    scale = M.seasonal_scale([g.to_numpy() for _, g in hist0.groupby("unique_id")["y"]], season)
    grids: dict[str, np.ndarray] = {}
    samples: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    train_info: dict[str, Any] = {}

    # --- AR-MDN and ablations: train once on data up to c_0 -------------------------------
    variants = {"armdn": {}}
    if ablations:
        variants.update(ABLATIONS)
    train_df = df[df["ds"] <= cutoffs[0]]
    for name, change in variants.items():
        t0 = time.perf_counter()
        model = ARMDN(config.replace(**change)).fit(train_df, static_df, verbose=verbose)
        smp = []
        for c in cutoffs:
            hist = df_e[df_e["ds"] <= c]
            fut = df_e[(df_e["ds"] > c) & (df_e["ds"] <= c + h * step)].drop(columns=["y"])
            _, s = model.predict(hist, fut, h, num_samples=num_samples, return_samples=True)
            smp.append(s.transpose(0, 2, 1))  # (n, H, S)
        samples[name] = np.stack(smp, axis=1)  # (n, W, H, S)
        grids[name] = np.moveaxis(np.quantile(samples[name], QUANTILE_GRID, axis=-1), 0, -1)
        timings[name] = time.perf_counter() - t0
        train_info[name] = {k: v for k, v in model.history.items() if k != "curve"}
        if name == "armdn":
            armdn_model = model

    # --- statsforecast: refit at every origin ----------------------------------------------
    stats = [b for b in baselines if b != "lightgbm"]
    if stats:
        t0 = time.perf_counter()
        per_window = [
            statsforecast_quantiles(df_e[df_e["ds"] <= c], h, freq, season, stats) for c in cutoffs
        ]
        for name in stats:
            grids[name] = np.stack([w[name] for w in per_window], axis=1)
        timings["statsforecast"] = time.perf_counter() - t0

    # --- LightGBM: trained once on targets up to c_0 ----------------------------------------
    if "lightgbm" in baselines:
        from shopml.forecast.data import build_panel

        t0 = time.perf_counter()
        spec = armdn_model.spec
        panel = build_panel(df, spec, static_df, armdn_model.train_uids)
        pos_c0 = (cutoffs[0] - df.groupby("unique_id", sort=True)["ds"].min()) // step + 1
        cutoff_pos = np.clip(pos_c0.to_numpy().astype(np.int64), 0, panel.lengths)
        lgbm = LightGBMQuantiles(h, season, seed=config.seed, **(lightgbm_options or {}))
        lgbm.fit(panel, cutoff_pos)
        sidx = pd.Index(panel.uids).get_indexer(elig)
        first_e = pd.DatetimeIndex(first.loc[elig].to_numpy())
        grids["lightgbm"] = np.stack(
            [
                lgbm.predict(panel, sidx, np.asarray((c - first_e) // step, dtype=np.int64))
                for c in cutoffs
            ],
            axis=1,
        )
        timings["lightgbm"] = time.perf_counter() - t0

    rows = []
    for name, grid in grids.items():
        row = {"model": name, **_score(y_true, grid, scale, samples.get(name))}
        row["seconds"] = timings.get(name, timings.get("statsforecast", float("nan")))
        rows.append(row)
    table = pd.DataFrame(rows)
    result = {
        "metrics": table,
        "timings": timings,
        "train": train_info,
        "series": n,
        "cutoffs": [str(c.date()) for c in cutoffs],
        "y_true": y_true,
        "grids": grids,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        from shopml.common.io import atomic_path

        with atomic_path(out_dir / "metrics.csv") as tmp:
            table[METRICS_COLUMNS].to_csv(tmp, index=False)
        if fan_charts > 0:
            result["fan_charts"] = write_fan_charts(
                out_dir, df_e, elig, cutoffs, y_true, grids["armdn"], h, step, fan_charts
            )
    return result


def write_fan_charts(
    out_dir: Path,
    df: pd.DataFrame,
    uids: np.ndarray,
    cutoffs: list[pd.Timestamp],
    y_true: np.ndarray,
    grid: np.ndarray,
    horizon: int,
    step: pd.Timedelta,
    count: int,
) -> list[str]:
    """Fan charts (10-90% and 25-75% bands, median) of the highest-volume series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shopml.common.io import atomic_path

    top = np.argsort(-y_true.sum(axis=(1, 2)))[:count]
    paths = []
    for i in top:
        uid = uids[i]
        series = df[df["unique_id"] == uid]
        tail = series[series["ds"] > cutoffs[0] - 3 * horizon * step]
        fig, ax = plt.subplots(figsize=(9, 3.2))
        ax.plot(tail["ds"], tail["y"], color="black", lw=1, label="actual")
        for w, c in enumerate(cutoffs):
            ds = pd.date_range(c + step, periods=horizon, freq=step)
            g = grid[i, w]
            ax.fill_between(
                ds,
                g[:, Q_INDEX[0.1]],
                g[:, Q_INDEX[0.9]],
                color="C0",
                alpha=0.25,
                label="10-90%" if w == 0 else None,
            )
            ax.fill_between(
                ds,
                g[:, Q_INDEX[0.25]],
                g[:, Q_INDEX[0.75]],
                color="C0",
                alpha=0.45,
                label="25-75%" if w == 0 else None,
            )
            ax.plot(ds, g[:, Q_INDEX[0.5]], color="C0", lw=1.2, label="median" if w == 0 else None)
            ax.axvline(c, color="grey", lw=0.6, ls=":")
        ax.set_title(f"AR-MDN fan chart, series {uid}")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path = out_dir / f"fan_{uid}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=90)
        plt.close(fig)
        paths.append(str(path))
    return paths
