"""Summaries of a world directory: ``describe_world(dir) -> dict`` and ``print_summary``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DOW_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _quantiles(x: np.ndarray, qs=(0.1, 0.5, 0.9, 0.99)) -> dict[str, float]:
    if x.size == 0:
        return {}
    out = {f"p{round(q * 100)}": float(np.quantile(x, q)) for q in qs}
    out["min"] = float(x.min())
    out["max"] = float(x.max())
    out["mean"] = float(x.mean())
    return out


def _sales_aggregates(sales: pd.DataFrame) -> dict[str, Any]:
    """Additive aggregates of one batch of sales rows (combine batches with _combine)."""
    y = sales["y"]
    return {
        "per_series": sales.groupby("unique_id", sort=False)["y"].agg(["sum", "size"]),
        "per_day": sales.groupby("ds", sort=False)["y"].agg(["sum", "size"]),
        "zeros": int((y == 0).sum()),
        "promo": int(sales["promo"].sum()) if "promo" in sales.columns else None,
        "discounted": int((sales["discount"] > 0).sum()) if "discount" in sales.columns else None,
    }


def _combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    def opt_sum(key):
        vals = [p[key] for p in parts]
        return None if any(v is None for v in vals) else int(sum(vals))

    return {
        "per_series": pd.concat([p["per_series"] for p in parts]).groupby(level=0).sum(),
        "per_day": pd.concat([p["per_day"] for p in parts]).groupby(level=0).sum().sort_index(),
        "zeros": sum(p["zeros"] for p in parts),
        "promo": opt_sum("promo"),
        "discounted": opt_sum("discounted"),
    }


def _stats(agg: dict[str, Any], calendar: pd.DataFrame | None) -> dict[str, Any]:
    per, day = agg["per_series"], agg["per_day"]
    rows = int(per["size"].sum())
    tot = np.sort(per["sum"].to_numpy())[::-1]
    top = max(1, int(np.ceil(0.1 * tot.size)))
    dow = pd.DatetimeIndex(day.index).dayofweek.to_numpy()
    by_dow = np.bincount(dow, weights=day["sum"].to_numpy(), minlength=7) / np.maximum(
        np.bincount(dow, weights=day["size"].to_numpy(), minlength=7), 1
    )
    out: dict[str, Any] = {
        "rows": rows,
        "series": int(per.shape[0]),
        "days": int(day.shape[0]),
        "first_day": str(pd.Timestamp(day.index.min()).date()),
        "last_day": str(pd.Timestamp(day.index.max()).date()),
        "total_units": float(tot.sum()),
        "zero_share": agg["zeros"] / max(rows, 1),
        "series_mean_quantiles": _quantiles((per["sum"] / per["size"]).to_numpy()),
        "top10_share": float(tot[:top].sum() / max(tot.sum(), 1e-12)),
        "history_days_quantiles": _quantiles(per["size"].to_numpy().astype(float)),
        "dow_factors": dict(
            zip(DOW_NAMES, (by_dow / by_dow.mean()).round(3).tolist(), strict=True)
        ),
    }
    if agg["promo"] is not None:
        out["promo_share"] = agg["promo"] / max(rows, 1)
    if agg["discounted"] is not None:
        out["discount_share"] = agg["discounted"] / max(rows, 1)
    if calendar is not None:
        fest = day.index.isin(calendar.loc[calendar["is_festival"] == 1, "ds"])
        plain = ~day.index.isin(calendar.loc[calendar["event"] != "", "ds"])
        if fest.any() and plain.any():
            m_fest = day["sum"][fest].sum() / day["size"][fest].sum()
            m_plain = day["sum"][plain].sum() / day["size"][plain].sum()
            out["festival_lift"] = float(m_fest / max(m_plain, 1e-12))
    return out


def sales_statistics(sales: pd.DataFrame, calendar: pd.DataFrame | None = None) -> dict[str, Any]:
    """M5-style statistics of a sales frame (``unique_id, ds, y`` and optional covariates):
    zero share, per-series mean quantiles, top-10% volume share, day-of-week factors, festival lift."""
    return _stats(_combine([_sales_aggregates(sales)]), calendar)


def _parquet(path: Path):
    """A pyarrow ParquetFile; ValueError naming the file when it is not one."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:
        raise ValueError(f"{path.name}: could not read {path} as a table ({exc})") from exc


def _batches(path: Path, columns: list[str], batch_rows: int = 2_000_000):
    """Record batches of a parquet file as DataFrames; ValueError naming the file on bad input."""
    name = path.name
    f = _parquet(path)
    have = f.schema_arrow.names
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected {columns}, found {have}")
    for batch in f.iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pandas()


def sales_statistics_file(
    path: str | os.PathLike[str],
    calendar: pd.DataFrame | None = None,
    batch_rows: int = 2_000_000,
) -> dict[str, Any]:
    """:func:`sales_statistics` of a sales.parquet, streamed in batches (bounded memory)."""
    path = Path(path)
    names = _parquet(path).schema_arrow.names
    cols = ["unique_id", "ds", "y"] + [c for c in ("promo", "discount") if c in names]
    parts = [_sales_aggregates(b) for b in _batches(path, cols, batch_rows)]
    if not parts:
        raise ValueError(f"{path.name}: expected sales rows, found none")
    return _stats(_combine(parts), calendar)


def describe_world(world_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, sales statistics and history-length distribution of a world directory.

    The catalog, street photos, calendar and users go through the validating readers (images only
    checked for existence); sales, events and impressions are streamed in batches for statistics
    (bounded memory at the large scale) and not fully validated: use the readers for that.

    Raises:
        ValueError: if a file is missing or invalid (message from the reader).
    """
    from shopml.formats import readers
    from shopml.world.generate import world_meta

    d = Path(world_dir)
    if not d.is_dir():
        raise ValueError(
            f"world_dir: expected a directory, found {'a file' if d.exists() else 'nothing'} at {d}"
        )
    meta = world_meta(d)
    cat = readers.read_catalog(d, check_images="exists")
    summary: dict[str, Any] = {"path": str(d), "scale": meta.get("scale"), "seed": meta.get("seed")}
    counts: dict[str, Any] = {
        "products": int(len(cat)),
        "categories": int(cat["category"].nunique()),
        "brands": int(cat["brand"].nunique()),
        "styles": int(cat["style_id"].nunique()),
        "launched_in_window": int(
            (cat["launch_date"] >= pd.Timestamp(meta.get("start", "1970-01-01"))).sum()
        ),
        "delisted": int(cat["delist_date"].notna().sum()),
    }
    if (d / "street.parquet").is_file():
        st = readers.read_street(d, check_images="exists")
        counts["street_photos"] = int(len(st))
        counts["street_products"] = int(st["product_id"].nunique())
    calendar = readers.read_calendar(d) if (d / "calendar.parquet").is_file() else None
    if (d / "sales.parquet").is_file():
        summary["sales"] = sales_statistics_file(d / "sales.parquet", calendar)
        counts["sales_rows"] = summary["sales"]["rows"]
    if calendar is not None:
        ev = calendar.loc[calendar["event"] != "", "event"]
        summary["calendar"] = {
            "days": int(len(calendar)),
            "event_days": {k: int(v) for k, v in ev.value_counts().sort_index().items()},
        }
    if (d / "users.parquet").is_file():
        counts["users"] = int(len(readers.read_users(d)))
    if (d / "events.parquet").is_file():
        per_user, actions = [], []
        for b in _batches(d / "events.parquet", ["user_id", "action"]):
            per_user.append(b["user_id"].value_counts(sort=False))
            actions.append(b["action"].value_counts(sort=False))
        lens = (
            pd.concat(per_user).groupby(level=0).sum().to_numpy().astype(float)
            if per_user
            else np.zeros(0)
        )
        counts["events"] = int(lens.sum())
        summary["history_lengths"] = _quantiles(lens)
        summary["history_lengths"]["users_over_1000"] = int((lens > 1000).sum())
        act = pd.concat(actions).groupby(level=0).sum() if actions else pd.Series(dtype=int)
        summary["actions"] = {str(k): int(v) for k, v in act.sort_index().items()}
    if (d / "impressions.parquet").is_file():
        rows = train = test = clicks = 0
        for b in _batches(d / "impressions.parquet", ["label", "split"]):
            rows += len(b)
            train += int((b["split"] == "train").sum())
            test += int((b["split"] == "test").sum())
            clicks += int(b["label"].sum())
        counts["impressions"] = rows
        summary["impressions"] = {
            "rows": rows,
            "train": train,
            "test": test,
            "click_rate": clicks / rows if rows else 0.0,
        }
    summary["counts"] = counts
    return summary


def print_summary(summary: dict[str, Any], console=None) -> None:
    """Print a :func:`describe_world` summary as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(
        title=f"world {summary.get('path', '')} (scale {summary.get('scale')}, seed {summary.get('seed')})"
    )
    t.add_column("count")
    t.add_column("value", justify="right")
    for k, v in summary.get("counts", {}).items():
        t.add_row(k, f"{v:,}")
    console.print(t)
    s = summary.get("sales")
    if s:
        t = Table(title="daily sales")
        t.add_column("statistic")
        t.add_column("value", justify="right")
        t.add_column("M5 reference", justify="right")
        q = s["series_mean_quantiles"]
        t.add_row("days", f"{s['days']} ({s['first_day']} .. {s['last_day']})", "")
        t.add_row("zero share", f"{s['zero_share']:.3f}", "0.544")
        t.add_row(
            "series mean units/day p10/p50/p90",
            f"{q['p10']:.2f} / {q['p50']:.2f} / {q['p90']:.2f}",
            "0.11 / 0.64 / 3.11",
        )
        t.add_row("top 10% series share of units", f"{s['top10_share']:.3f}", "0.515")
        t.add_row(
            "day-of-week factors Mon..Sun",
            " ".join(f"{v:.2f}" for v in s["dow_factors"].values()),
            "0.97 0.90 0.87 0.87 0.99 1.20 1.21",
        )
        if "festival_lift" in s:
            t.add_row("festival-day lift", f"{s['festival_lift']:.2f}", "")
        if "promo_share" in s:
            t.add_row(
                "promo / discounted days", f"{s['promo_share']:.3f} / {s['discount_share']:.3f}", ""
            )
        h = s["history_days_quantiles"]
        t.add_row(
            "history days p10/p50/max", f"{h['p10']:.0f} / {h['p50']:.0f} / {h['max']:.0f}", ""
        )
        console.print(t)
    h = summary.get("history_lengths")
    if h:
        t = Table(title="behaviour history length (events per user)")
        for k in ("min", "p10", "p50", "p90", "p99", "max", "mean", "users_over_1000"):
            t.add_column(k, justify="right")
        t.add_row(
            *(
                f"{h[k]:.0f}" if k != "mean" else f"{h[k]:.1f}"
                for k in ("min", "p10", "p50", "p90", "p99", "max", "mean", "users_over_1000")
            )
        )
        console.print(t)
    im = summary.get("impressions")
    if im:
        t = Table(title="impressions")
        for k in ("rows", "train", "test", "click_rate"):
            t.add_column(k, justify="right")
        t.add_row(
            f"{im['rows']:,}", f"{im['train']:,}", f"{im['test']:,}", f"{im['click_rate']:.3f}"
        )
        console.print(t)


def _quiet_days(calendar: pd.DataFrame, margin: int = 10) -> pd.Series:
    """Days at least ``margin`` days away from any event (no event, dip or hangover effects)."""
    q = (
        (calendar["event"] == "")
        & (calendar["days_to_event"] > margin)
        & (calendar["days_since_event"] > margin)
    )
    return calendar.loc[q, "ds"]


def price_elasticity(sales: pd.DataFrame, calendar: pd.DataFrame) -> float:
    """Own-price elasticity by a log-log regression, from observed sales only.

    On quiet, non-promo days, each product's full-price mean is its baseline; for each discount
    level the pooled ratio (units sold) / (baseline units expected) is regressed, in logs, on
    log(price / list price) = log(1 - discount). Discount timing is independent of the other demand
    factors, so the slope estimates the (average) elasticity.
    """
    s = sales[sales["ds"].isin(_quiet_days(calendar)) & (sales["promo"] == 0)]
    full = s[s["discount"] == 0].groupby("unique_id")["y"].mean()
    s = s[s["unique_id"].isin(full.index[full > 0])]
    base = s["unique_id"].map(full).to_numpy()
    d = s["discount"].round(2).to_numpy()
    levels = np.unique(d)
    x, r = [], []
    for lv in levels:
        m = d == lv
        if m.sum() < 50:
            continue
        x.append(np.log1p(-lv))
        r.append(np.log(s["y"].to_numpy()[m].sum() / base[m].sum()))
    if len(x) < 3:
        raise ValueError(
            f"sales: expected at least 3 discount levels with 50+ quiet days, found {len(x)}"
        )
    return float(np.polyfit(np.asarray(x), np.asarray(r), 1)[0])


def event_effects(sales: pd.DataFrame, calendar: pd.DataFrame, window: int = 7) -> dict[str, float]:
    """Mean units on festival days, in the ``window`` days before and after, relative to quiet days."""
    cal = calendar.set_index("ds")
    fest = cal["is_festival"] == 1
    before = (cal["event"] == "") & (cal["days_to_event"] <= window)
    after = (cal["event"] == "") & (cal["days_since_event"] <= window)
    # Restrict "before/after" to the festival's neighbourhood: the nearest event is the festival.
    fest_days = cal.index[fest]
    near = pd.Series(False, index=cal.index)
    for day in fest_days:
        near |= (cal.index >= day - pd.Timedelta(days=window)) & (
            cal.index <= day + pd.Timedelta(days=window)
        )
    quiet = sales["ds"].isin(_quiet_days(calendar))
    base = sales.loc[quiet, "y"].mean()
    out = {}
    for name, mask in (("festival", fest), ("before", before & near), ("after", after & near)):
        days = cal.index[mask]
        out[name] = float(sales.loc[sales["ds"].isin(days), "y"].mean() / base)
    return out
