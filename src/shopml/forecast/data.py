"""Long-format input frames, their validation, and on-the-fly training windows.

Frames follow the forecasting ecosystem's long format: ``df`` has ``unique_id, ds, y`` plus
covariate columns (all known in advance: price, discount, promo, event flags...), ``futr_df`` has
``unique_id, ds`` plus the same covariates for the ``horizon`` steps after each series' last
date, and ``static_df`` has ``unique_id`` plus per-series attributes.

Memory: a :class:`Panel` stores every series once, concatenated (``y (N,)``, ``real (N, F)``,
``cat (N, C)``) with ``offsets (S + 1,)`` like a jagged tensor. Training windows of length
``L = context + horizon`` are gathered per batch from random (series, end) pairs, so a panel of
30k series x 2 years costs its own size (about 22M rows), never ``#windows x L``.

Scaling (``ARMDNConfig.scaling``): ``"logmean"`` (default) models ``z = log(1 + y) - log(nu)``
with ``nu = 1 + mean(context y)``, ``"log1p"`` models ``z = log(1 + y)``, ``"mean"`` models
``z = y / nu`` (DeepAR). All feed ``log(nu)`` to the network. Demand multipliers in retail (price
elasticity, promotions, festival lifts) are multiplicative, which Gaussians on a log scale
represent with fixed shapes (on the small world log1p beat mean scaling in 3 of 3 seeds, wQL
0.6765 vs 0.6990, benchmarks/README.md). Centring the log scale on the series' level matters when
levels are far from 1: on Dominick's OJ (weekly sales in the thousands, ``log1p(y)`` about 9) the
validation wQL of the K=3 model was 0.455 after 2 epochs with ``logmean`` against 0.595 after 14
with ``log1p``, whose LSTM inputs and mixture locations had to travel to 9 first. Zeros: draws
below ``y = 0`` are clipped to 0 (``nonneg="clip"``), reading the mixture as a censored Gaussian
with a point mass at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shopml.forecast.features import FeatureSpec, dynamic_features, static_features
from shopml.forecast.frequency import parse_freq

MISSING = ("mask", "zero", "refuse")


def _fail(msg: str) -> None:
    raise ValueError(msg)


def validate_frame(
    df: Any,
    name: str,
    freq: str,
    require_y: bool = True,
    covariates: list[str] | None = None,
    missing: str = "refuse",
) -> pd.DataFrame:
    """Check a long frame and return a sorted copy (by ``unique_id, ds``).

    Checks: a DataFrame; columns ``unique_id, ds`` (and ``y`` when ``require_y``); ``ds`` a
    datetime on the ``freq`` grid (see ``frequency.py``); no duplicate ``(unique_id, ds)``; no NaN
    in a covariate; ``y`` finite and >= 0; the ``covariates`` present when given. Gaps (missing
    periods inside a series) and NaN targets are refused when ``missing="refuse"``; otherwise they
    are left for :func:`fill_gaps` (``"mask"``: unobserved; ``"zero"``: zero sales).

    Raises:
        ValueError: naming the frame, the column, the series and the date, what was expected and
            what was found.
    """
    if not isinstance(df, pd.DataFrame):
        _fail(f"{name}: expected a pandas DataFrame, found {type(df).__name__}")
    fq = parse_freq(freq)
    if missing not in MISSING:
        _fail(f"missing: expected one of {list(MISSING)}, found {missing!r}")
    need = ["unique_id", "ds"] + (["y"] if require_y else []) + list(covariates or [])
    missing_cols = [c for c in need if c not in df.columns]
    if missing_cols:
        _fail(f"{name}: missing column(s) {missing_cols}; found {list(df.columns)}")
    if len(df) == 0:
        _fail(f"{name}: expected at least one row, found an empty frame")
    if not pd.api.types.is_datetime64_any_dtype(df["ds"]):
        _fail(f"{name}: column 'ds' should be datetime64, found dtype {df['ds'].dtype}")
    nan_ok = {"y"} if missing != "refuse" else set()
    nan_cols = [c for c in df.columns if c not in nan_ok and df[c].isna().any()]
    if nan_cols:
        c = nan_cols[0]
        bad = df.loc[df[c].isna(), ["unique_id", "ds"]].iloc[0]
        _fail(
            f"{name}: column {c!r} has {int(df[c].isna().sum())} NaN value(s) "
            f"(first at unique_id={bad['unique_id']}, ds={bad['ds']}); expected none"
        )
    dup = df.duplicated(["unique_id", "ds"])
    if dup.any():
        row = df.loc[dup, ["unique_id", "ds"]].iloc[0]
        _fail(
            f"{name}: {int(dup.sum())} duplicate (unique_id, ds) row(s), first "
            f"unique_id={row['unique_id']}, ds={row['ds']}; expected one row per series and date"
        )
    if require_y:
        if not pd.api.types.is_numeric_dtype(df["y"]):
            _fail(f"{name}: column 'y' should be numeric, found dtype {df['y'].dtype}")
        y = df["y"].to_numpy(np.float64)
        if np.isinf(y).any():
            row = df.loc[np.isinf(y), ["unique_id", "ds"]].iloc[0]
            _fail(
                f"{name}: column 'y' has infinite values (first unique_id={row['unique_id']}, "
                f"ds={row['ds']}); expected finite sales"
            )
        if (y < 0).any():
            row = df.loc[df["y"] < 0, ["unique_id", "ds", "y"]].iloc[0]
            _fail(
                f"{name}: column 'y' has {int((y < 0).sum())} negative value(s) (first "
                f"unique_id={row['unique_id']}, ds={row['ds']}, y={row['y']}); expected sales >= 0"
            )
    out = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    pos = fq.positions(out["ds"], f"{name}.ds")
    if missing == "refuse":
        first = out["unique_id"].ne(out["unique_id"].shift()).to_numpy()
        bad = (~first) & (np.diff(pos, prepend=pos[:1]) != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            _fail(
                f"{name}: series {out['unique_id'].iloc[i]} has missing periods: "
                f"{out['ds'].iloc[i - 1]} is followed by {out['ds'].iloc[i]} on a {freq} grid; "
                "expected consecutive periods (or use missing='mask' / --missing mask)"
            )
        if require_y and out["y"].isna().any():
            row = out.loc[out["y"].isna()].iloc[0]
            _fail(
                f"{name}: column 'y' is NaN at unique_id={row['unique_id']}, ds={row['ds']}; "
                "expected sales (or use missing='mask' / --missing mask)"
            )
    return out


def fill_gaps(df: pd.DataFrame, freq: str, missing: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Put every series of a validated frame on its full grid (first to last date).

    Missing periods get new rows: covariates carried forward from the previous period, ``y``
    carried forward too (the value the network reads as its previous target) but unobserved
    (``missing="mask"``: never scored, not counted in the series' level) or ``y = 0`` observed
    (``missing="zero"``). NaN targets are treated the same way.

    Returns:
        ``(frame, observed)``: the sorted full frame and a ``(N,)`` bool array.
    """
    fq = parse_freq(freq)
    pos = fq.positions(df["ds"])
    uid = df["unique_id"].to_numpy()
    first = np.r_[True, uid[1:] != uid[:-1]]
    has_y = "y" in df.columns
    y_nan = df["y"].isna().to_numpy() if has_y else np.zeros(len(df), bool)
    if (np.diff(pos, prepend=pos[:1])[~first] == 1).all() and not y_nan.any():
        return df, np.ones(len(df), bool)
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(df)]
    lo, hi = pos[starts], pos[ends - 1]
    n_full = hi - lo + 1
    full_pos = np.concatenate([np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)])
    full_uid = np.repeat(uid[starts], n_full)
    series_of_row = np.repeat(np.arange(len(starts)), ends - starts)
    target = np.r_[0, np.cumsum(n_full)][series_of_row] + (pos - np.repeat(lo, ends - starts))
    src = np.full(len(full_pos), -1, np.int64)
    src[target] = np.arange(len(df))
    observed = src >= 0
    src = pd.Series(np.where(observed, src, np.nan)).groupby(full_uid).ffill().to_numpy()
    out = df.iloc[src.astype(np.int64)].reset_index(drop=True)
    out["unique_id"] = full_uid
    out["ds"] = fq.dates(full_pos, df["ds"].iloc[0]).astype(df["ds"].dtype)
    if has_y:
        y_obs = observed.copy()
        y_obs[observed] &= ~y_nan[src[observed].astype(np.int64)]
        y = out["y"].to_numpy(np.float64).copy()
        if missing == "zero":
            y[~y_obs] = 0.0
            y_obs[:] = True
        else:
            y[~y_obs] = np.nan
            y = pd.Series(y).groupby(full_uid).ffill().fillna(0.0).to_numpy()
        out["y"] = y
        observed = y_obs
    return out, observed


def validate_static(static_df: Any) -> pd.DataFrame | None:
    if static_df is None:
        return None
    if not isinstance(static_df, pd.DataFrame):
        _fail(f"static_df: expected a pandas DataFrame, found {type(static_df).__name__}")
    if "unique_id" not in static_df.columns:
        _fail(f"static_df: missing column 'unique_id'; found {list(static_df.columns)}")
    if static_df["unique_id"].duplicated().any():
        _fail("static_df: duplicate unique_id rows; expected one row per series")
    nan_cols = [c for c in static_df.columns if static_df[c].isna().any()]
    if nan_cols:
        _fail(f"static_df: column(s) {nan_cols} have NaN values; expected none")
    return static_df.reset_index(drop=True)


def future_dates(last_ds: pd.Series, horizon: int, freq: str) -> pd.DataFrame:
    """The ``horizon`` dates after each series' last date: ``unique_id, ds`` rows."""
    fq = parse_freq(freq)
    uid = np.repeat(last_ds.index.to_numpy(), horizon)
    k = np.tile(np.arange(1, horizon + 1), len(last_ds))
    pos = np.repeat(fq.positions(last_ds.to_numpy()), horizon) + k
    phase = last_ds.iloc[0] if len(last_ds) else None
    return pd.DataFrame({"unique_id": uid, "ds": fq.dates(pos, phase)})


def validate_futr(
    futr_df: Any, df: pd.DataFrame, horizon: int, freq: str, covariates: list[str]
) -> pd.DataFrame:
    """Check ``futr_df`` against the history ``df`` and return the ``horizon`` future rows of every
    series of ``df`` (sorted), with all ``covariates``.

    Raises:
        ValueError: for unknown series, missing covariate columns, or missing horizon dates.
    """
    last = df.groupby("unique_id", sort=True)["ds"].max()
    grid = future_dates(last, horizon, freq)
    if futr_df is None:
        if covariates:
            _fail(
                f"futr_df: the model uses covariates {covariates}, so their values for the "
                f"{horizon} horizon dates are needed; found futr_df=None"
            )
        return grid
    futr = validate_frame(
        futr_df, "futr_df", freq, require_y=False, covariates=covariates, missing="mask"
    )
    unknown = sorted(set(futr["unique_id"].unique()) - set(last.index))
    if unknown:
        _fail(
            f"futr_df: {len(unknown)} series not in the history df (e.g. {unknown[:5]}); "
            "expected only series that have sales history"
        )
    merged = grid.merge(futr[["unique_id", "ds", *covariates]], on=["unique_id", "ds"], how="left")
    if covariates:
        lack = merged[covariates].isna().any(axis=1)
        if lack.any():
            row = merged.loc[lack].iloc[0]
            n_series = merged.loc[lack, "unique_id"].nunique()
            _fail(
                f"futr_df: covariates missing for {int(lack.sum())} of {len(merged)} horizon rows "
                f"({n_series} series; first unique_id={row['unique_id']}, ds={row['ds']}); "
                f"expected {covariates} for the {horizon} dates after each series' last date"
            )
    return merged


@dataclass
class Panel:
    """All series of a frame, concatenated, with per-series offsets (see module docstring)."""

    uids: list[Any]
    offsets: np.ndarray  # (S + 1,) int64
    y: np.ndarray  # (N,) float32
    real: np.ndarray  # (N, F) float32
    cat: np.ndarray  # (N, C) int64
    static_cat: np.ndarray  # (S, Cs) int64
    static_real: np.ndarray  # (S, Fs) float32
    id_code: np.ndarray  # (S,) int64, 0 = series unseen in training
    observed: np.ndarray  # (N,) bool, False where a missing period was filled

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_series(self) -> int:
        return len(self.uids)


def build_panel(
    df: pd.DataFrame,
    spec: FeatureSpec,
    static_df: pd.DataFrame | None,
    train_uids: list[Any] | None = None,
    observed: np.ndarray | None = None,
) -> Panel:
    """Build a :class:`Panel` from a validated, sorted, gap-free frame (with or without ``y``);
    ``observed (N,)`` marks real targets (default: all, see :func:`fill_gaps`)."""
    counts = df.groupby("unique_id", sort=True).size()
    uids = counts.index.tolist()
    offsets = np.concatenate([[0], np.cumsum(counts.to_numpy())]).astype(np.int64)
    real, cat = dynamic_features(df, spec)
    y = df["y"].to_numpy(np.float32) if "y" in df.columns else np.zeros(len(df), np.float32)
    s_cat, s_real = static_features(uids, static_df, spec)
    known = pd.Index(train_uids if train_uids is not None else uids)
    id_code = (known.get_indexer(pd.Index(uids)) + 1).astype(np.int64)
    obs = np.ones(len(df), bool) if observed is None else np.asarray(observed, bool)
    return Panel(uids, offsets, y, real, cat, s_cat, s_real, id_code, obs)


def gather_windows(
    panel: Panel, series: np.ndarray, end: np.ndarray, length: int
) -> dict[str, np.ndarray]:
    """Gather windows ``[end - length, end)`` of the given series; positions before a series'
    start are zero-padded and masked.

    Args:
        series: ``(B,)`` series indices; end: ``(B,)`` exclusive end position within each series.

    Returns:
        dict with ``y (B, L)``, ``real (B, L, F)``, ``cat (B, L, C)``, ``observed (B, L)`` bool
        (inside the series and not a filled gap),
        ``static_cat (B, Cs)``, ``static_real (B, Fs)``, ``id_code (B,)``.
    """
    pos = end[:, None] - length + np.arange(length)[None, :]  # (B, L)
    inside = pos >= 0
    rows = np.where(inside, panel.offsets[series][:, None] + pos, 0)
    y = np.where(inside, panel.y[rows], 0.0).astype(np.float32)
    real = panel.real[rows] * inside[..., None]
    cat = panel.cat[rows] * inside[..., None]
    observed = inside & panel.observed[rows]
    return {
        "y": y,
        "real": real.astype(np.float32),
        "cat": cat,
        "observed": observed,
        "static_cat": panel.static_cat[series],
        "static_real": panel.static_real[series],
        "id_code": panel.id_code[series],
    }


class WindowSampler:
    """Random training windows across all series (a global model), drawn per batch.

    A window's end is drawn uniformly among the positions that leave at least ``min_target``
    observed steps and end no later than ``len - holdout``; series are drawn with probability
    proportional to their number of admissible ends, i.e. every admissible window is equally likely.
    """

    def __init__(
        self, panel: Panel, length: int, holdout: int, min_target: int, rng: np.random.Generator
    ):
        self.panel, self.length, self.rng = panel, length, rng
        hi = panel.lengths - holdout  # largest admissible exclusive end
        lo = np.full_like(hi, min_target + 1)
        self.lo, self.count = lo, np.clip(hi - lo + 1, 0, None)
        total = self.count.sum()
        if total <= 0:
            raise ValueError(
                f"df: no series is long enough for training windows; expected at least "
                f"{min_target + 1 + holdout} observations in some series, found at most "
                f"{int(panel.lengths.max())}"
            )
        self.cum = np.cumsum(self.count)
        self.total = int(total)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        k = self.rng.integers(0, self.total, size=batch_size)
        series = np.searchsorted(self.cum, k, side="right")
        before = np.concatenate([[0], self.cum])[series]
        end = self.lo[series] + (k - before)
        return gather_windows(self.panel, series, end, self.length)


def validation_windows(panel: Panel, length: int, holdout: int) -> dict[str, np.ndarray] | None:
    """One window per series ending at its last observation; only the last ``holdout`` steps
    are scored (``score_mask``). Series shorter than ``holdout + 2`` are skipped."""
    ok = np.flatnonzero(panel.lengths >= holdout + 2)
    if len(ok) == 0 or holdout <= 0:
        return None
    batch = gather_windows(panel, ok, panel.lengths[ok], length)
    score = np.zeros((len(ok), length), bool)
    score[:, -holdout:] = True
    batch["score_mask"] = score & batch["observed"]
    return batch


# ------------------------------------------------------------------------------------------------
CALENDAR_COLS = ("event", "is_festival", "is_holiday", "days_to_event", "days_since_event")


def is_world_dir(path: Any) -> bool:
    """True when ``path`` is a directory holding ``sales.parquet`` (a world directory)."""
    from pathlib import Path

    p = Path(path)
    return p.is_dir() and (p / "sales.parquet").is_file()


def join_calendar(df: pd.DataFrame, calendar: pd.DataFrame) -> pd.DataFrame:
    """Add the calendar's event columns (known in advance) to ``df`` by ``ds``."""
    cols = [c for c in CALENDAR_COLS if c in calendar.columns and c not in df.columns]
    if not cols:
        return df
    out = df.merge(calendar[["ds", *cols]], on="ds", how="left")
    lack = out[cols].isna().any(axis=1)
    if lack.any():
        _fail(
            f"calendar: no row for {int(lack.sum())} date(s) of the frame (first "
            f"{out.loc[lack, 'ds'].min()}); expected the calendar to cover every date"
        )
    return out


def load_table_or_world(path: Any, name: str = "data") -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read sales from a parquet/CSV file, or from a world directory.

    A world directory gives ``sales.parquet`` joined with ``calendar.parquet`` (event flags) and a
    ``static_df`` from ``catalog.parquet`` (``unique_id`` = product_id, category, brand, list price).
    Files are read and validated by :mod:`shopml.formats.readers`.

    Returns:
        ``(df, static_df or None)``.
    """
    from pathlib import Path

    from shopml.common.io import read_table
    from shopml.formats import readers

    p = Path(path)
    if is_world_dir(p):
        df = readers.read_sales(p, columns=["unique_id", "ds", "y"])
        if (p / "calendar.parquet").is_file():
            df = join_calendar(df, readers.read_calendar(p, columns=["ds"]))
        static = None
        if (p / "catalog.parquet").is_file():
            cat = readers.read_catalog(p, columns=["product_id"], check_images="none")
            keep = [c for c in ("category", "brand", "price") if c in cat.columns]
            static = cat[["product_id", *keep]].rename(columns={"product_id": "unique_id"})
            static = static[static["unique_id"].isin(df["unique_id"].unique())]
            static = static.reset_index(drop=True)
        return df, static
    if p.is_dir():
        _fail(
            f"{name}: expected a parquet/CSV file or a world directory with sales.parquet, found {p}"
        )
    return read_table(p, name), None
