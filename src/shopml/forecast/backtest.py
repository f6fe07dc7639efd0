"""Rolling-origin backtest of AR-MDN, its ablations and the baselines on the same windows.

Windows: with ``T`` the last period of the data and ``H`` the horizon (integer positions of the
frequency, ``frequency.py``), origins are ``c_i = T - (N - i) * H`` for ``i = 0..N-1``; window ``i`` scores ``(c_i, c_i + H]``, so the N
windows tile the last ``N * H`` steps. Scored series: those observed from at least
``3 H + season`` steps before ``c_0`` through ``T`` (enough history for every baseline).

Training: the global models (AR-MDN variants, LightGBM) are trained once on data up to ``c_0``
and then condition on the history up to each origin without refitting; the local statsforecast
models are refit at every origin (that is how they are used); one whose forecast of a series is
non-finite or beyond 3x the series' history falls back to seasonal naive for that series (the
``fallbacks`` column counts them). No target after an origin is ever seen by a forecast made at
that origin. Missing periods (``config.missing="mask"``) are not scored.

Scores: ``wql`` (quantiles 0.1..0.9), ``crps`` (exact from samples for AR-MDN; from the 19-level
quantile grid 0.05..0.95 for quantile-only models; ``crps_grid`` gives the grid version for every
model), ``wmape`` and ``mase`` of the median, central-interval coverage at 50/80/90% (every
model's grid has these levels).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopml.forecast import metrics as M
from shopml.forecast.baselines import (
    QUANTILE_GRID,
    LightGBMQuantiles,
    fall_back,
    statsforecast_quantiles,
)
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.data import build_panel, fill_gaps, validate_frame, validate_static
from shopml.forecast.estimator import ARMDN
from shopml.forecast.frequency import Frequency, parse_freq

Q_INDEX = {q: i for i, q in enumerate(QUANTILE_GRID)}
WQL_IDX = [Q_INDEX[q] for q in M.QUANTILES_WQL]
BASELINES = ("snaive", "ets", "croston", "tsb", "lightgbm")
ABLATIONS = {
    "armdn_1gauss": {"num_components": 1, "select_components": False, "output": "mixture"},
    "armdn_no_assoc": {"use_assoc_mlp": False, "select_components": False},
}
LEVELS = (50, 80, 90)
METRICS_COLUMNS = ["model", "wql", "crps", "wmape", "mase"] + [f"coverage_{v}" for v in LEVELS]


def score_grid(
    y: np.ndarray,
    observed: np.ndarray,
    grid: np.ndarray,
    scale: np.ndarray,
    samples: np.ndarray | None,
) -> dict[str, float]:
    """Scores of one model on the observed actuals. ``y, observed (n, W, H)``,
    ``grid (n, W, H, 19)`` (levels ``QUANTILE_GRID``), ``samples (n, W, H, S)`` or None,
    ``scale (n,)`` MASE scales (the backtest's ``observed`` and ``mase_scale``)."""
    n = y.shape[0]
    yo, go = y[observed], grid[observed]  # (m,), (m, 19)
    median = grid[..., Q_INDEX[0.5]]
    out = {
        "wql": M.weighted_quantile_loss(yo, go[:, WQL_IDX], M.QUANTILES_WQL),
        "crps_grid": float(M.crps_from_quantiles(yo, go, QUANTILE_GRID).sum() / np.abs(yo).sum()),
        "wmape": M.wmape(yo, median[observed]),
        "mase": M.mase(y.reshape(n, -1), median.reshape(n, -1), scale),
    }
    for level in LEVELS:
        a = round((1 - level / 100) / 2, 3)
        lo, hi = go[:, Q_INDEX[round(a, 2)]], go[:, Q_INDEX[round(1 - a, 2)]]
        out[f"coverage_{level}"] = M.coverage(yo, lo, hi)
    out["crps"] = (
        M.weighted_crps(yo, samples[observed]) if samples is not None else out["crps_grid"]
    )
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
        df, static_df: the data (``df`` with covariates, see ``data.py``); gaps are handled as
            ``config.missing`` says (masked actuals are not scored; baselines read the filled
            series).
        config: AR-MDN configuration (``freq`` and ``horizon`` define the windows).
        windows: N rolling origins.
        baselines: subset of ``snaive, ets, croston, tsb, lightgbm``.
        ablations: also run the one-Gaussian and no-associative-MLP AR-MDN variants.
        max_series: score at most this many eligible series (random, seeded) to bound CPU time.
        lightgbm_options: keyword arguments of :class:`LightGBMQuantiles` (``max_rows``,
            ``n_estimators``, ...).

    Returns:
        ``{"metrics": DataFrame (one row per model), "timings": {...}, "series": n,
        "fallbacks": {model: series that fell back to seasonal naive}, "uids" (the scored
        series), "y_true", "observed", "mase_scale", "grids" (what :func:`score_grid` reads),
        ...}``.
    """
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"baselines: expected names in {list(BASELINES)}, found {unknown}")
    if windows < 1:
        raise ValueError(f"windows: expected >= 1, found {windows}")
    fq = parse_freq(config.freq)
    h, season = config.horizon, fq.season
    df = validate_frame(df, "df", config.freq, missing=config.missing)
    static_df = validate_static(static_df)
    full, observed = fill_gaps(df, config.freq, config.missing)
    pos = fq.positions(full["ds"])
    full_pos = pd.Series(pos, index=full.index)
    first = full_pos.groupby(full["unique_id"], sort=True).min()
    last = full_pos.groupby(full["unique_id"], sort=True).max()
    t_end = int(last.max())
    cutoffs = [t_end - (windows - i) * h for i in range(windows)]
    need_start = cutoffs[0] - (3 * h + season - 1)
    elig = first.index[(first <= need_start) & (last == t_end)].to_numpy()
    if len(elig) == 0:
        raise ValueError(
            f"df: no series spans {fq.dates([need_start], full['ds'].iloc[0])[0].date()}.."
            f"{fq.dates([t_end], full['ds'].iloc[0])[0].date()}; expected series with at least "
            f"{3 * h + season} periods before the first origin for windows={windows}, horizon={h}"
        )
    if max_series is not None and len(elig) > max_series:
        elig = np.sort(np.random.default_rng(config.seed).choice(elig, max_series, replace=False))
    keep = full["unique_id"].isin(elig).to_numpy()
    full_e, obs_e, pos_e = full[keep].reset_index(drop=True), observed[keep], pos[keep]
    # history as the model reads it: every period up to the origin, gaps as NaN targets
    hist_e = full_e.assign(y=full_e["y"].where(obs_e))
    n = len(elig)
    win = [(pos_e > c) & (pos_e <= c + h) for c in cutoffs]
    y_true = np.stack([full_e.loc[w, "y"].to_numpy().reshape(n, h) for w in win], axis=1)
    obs_true = np.stack([obs_e[w].reshape(n, h) for w in win], axis=1)  # (n, W, H)
    hist0 = full_e[pos_e <= cutoffs[0]]
    scale = M.seasonal_scale([g.to_numpy() for _, g in hist0.groupby("unique_id")["y"]], season)
    grids: dict[str, np.ndarray] = {}
    samples: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    train_info: dict[str, Any] = {}
    fallbacks: dict[str, int] = {}

    # --- AR-MDN and ablations: train once on data up to c_0 -------------------------------
    variants = {"armdn": {}}
    armdn_model = ARMDN(config)
    if ablations:
        variants.update(ABLATIONS)
    train_df = df[fq.positions(df["ds"]) <= cutoffs[0]]
    for name, change in variants.items():
        t0 = time.perf_counter()
        same = None
        if name == "armdn_1gauss" and config.ensemble == 1:  # selection already fitted it
            same = armdn_model.candidates.get("K=1")
        if same is not None:
            model = same
        else:
            model = ARMDN(config.replace(**change)).fit(train_df, static_df, verbose=verbose)
        smp = []
        for c, w in zip(cutoffs, win, strict=True):
            hist = hist_e[pos_e <= c]
            fut = full_e[w].drop(columns=["y"])
            _, s = model.predict(hist, fut, h, num_samples=num_samples, return_samples=True)
            smp.append(s.transpose(0, 2, 1))  # (n, H, S)
        samples[name] = np.stack(smp, axis=1)  # (n, W, H, S)
        grids[name] = np.moveaxis(np.quantile(samples[name], QUANTILE_GRID, axis=-1), 0, -1)
        timings[name] = time.perf_counter() - t0
        train_info[name] = {k: v for k, v in model.history.items() if k != "curve"}
        train_info[name]["config"] = {
            "num_components": model.config.num_components,
            "output": model.config.output,  # the head chosen on validation ("auto")
            "scaling": model.config.scaling,  # chosen on validation with scaling="auto"
            "scale_floor": model.config.scale_floor,
        }
        if name == "armdn":
            armdn_model = model

    # --- statsforecast: refit at every origin; a series that blows up falls back -----------
    stats = [b for b in baselines if b != "lightgbm"]
    if stats:
        hists = [full_e[pos_e <= c] for c in cutoffs]
        hist_max = np.stack([g.groupby("unique_id", sort=True)["y"].max() for g in hists], 1)
        sf = fq.statsforecast_freq
        snaive = None
        for name in ["snaive", *[s for s in stats if s != "snaive"]]:
            t0 = time.perf_counter()
            grid = np.stack(
                [statsforecast_quantiles(g, h, sf, season, name) for g in hists], axis=1
            )  # (n, W, H, 19)
            if snaive is None:
                snaive = grid
            else:
                flat, bad = fall_back(
                    grid.reshape(n * windows, h, -1),
                    snaive.reshape(n * windows, h, -1),
                    hist_max.reshape(-1),
                )
                grid = flat.reshape(grid.shape)
                fallbacks[name] = int(bad.reshape(n, windows).any(axis=1).sum())
            timings[name] = time.perf_counter() - t0
            if name in stats:
                grids[name] = grid

    # --- LightGBM: trained once on targets up to c_0 ----------------------------------------
    if "lightgbm" in baselines:
        t0 = time.perf_counter()
        spec = armdn_model.spec
        panel = build_panel(full, spec, static_df, armdn_model.train_uids, observed)
        cutoff_pos = np.clip((cutoffs[0] - first).to_numpy() + 1, 0, panel.lengths)
        fixed = fq.kind in ("D", "W", "h")
        lgbm = LightGBMQuantiles(
            h,
            season,
            long_window=28 if fixed else season,
            stride={"D": 7, "W": 7, "h": 24}.get(fq.kind, 1),
            seed=config.seed,
            **(lightgbm_options or {}),
        )
        lgbm.fit(panel, cutoff_pos)
        sidx = pd.Index(panel.uids).get_indexer(elig)
        first_e = first.loc[elig].to_numpy()
        grids["lightgbm"] = np.stack([lgbm.predict(panel, sidx, c - first_e) for c in cutoffs], 1)
        timings["lightgbm"] = time.perf_counter() - t0

    rows = []
    for name, grid in grids.items():
        row = {"model": name, **score_grid(y_true, obs_true, grid, scale, samples.get(name))}
        row["seconds"] = timings.get(name, float("nan"))
        row["fallbacks"] = fallbacks.get(name, 0)
        rows.append(row)
    table = pd.DataFrame(rows)
    origin_dates = fq.dates(cutoffs, full["ds"].iloc[0])
    result = {
        "metrics": table,
        "timings": timings,
        "train": train_info,
        "series": n,
        "fallbacks": fallbacks,
        "cutoffs": [str(c.date()) for c in origin_dates],
        "uids": elig,
        "y_true": y_true,
        "observed": obs_true,
        "mase_scale": scale,
        "grids": grids,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        from shopml.common.io import atomic_path

        with atomic_path(out_dir / "metrics.csv") as tmp:
            table[[*METRICS_COLUMNS, "fallbacks", "seconds"]].to_csv(tmp, index=False)
        if fan_charts > 0:
            result["fan_charts"] = write_fan_charts(
                out_dir, full_e, elig, list(origin_dates), y_true, grids["armdn"], h, fq, fan_charts
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
    fq: Frequency,
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
        c0 = fq.positions([cutoffs[0]])[0]
        tail = series[fq.positions(series["ds"]) > c0 - 3 * horizon]
        fig, ax = plt.subplots(figsize=(9, 3.2))
        ax.plot(tail["ds"], tail["y"], color="black", lw=1, label="actual")
        for w, c in enumerate(cutoffs):
            ds = fq.dates(fq.positions([c])[0] + np.arange(1, horizon + 1), c)
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
