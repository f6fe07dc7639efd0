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


def sales_statistics(sales: pd.DataFrame, calendar: pd.DataFrame | None = None) -> dict[str, Any]:
    """M5-style statistics of a sales frame (``unique_id, ds, y`` and optional covariates)."""
    y = sales["y"].to_numpy()
    per = sales.groupby("unique_id", sort=True)["y"].agg(["mean", "size", "sum"])
    tot = np.sort(per["sum"].to_numpy())[::-1]
    top = max(1, int(np.ceil(0.1 * tot.size)))
    dow = sales["ds"].dt.dayofweek.to_numpy()
    by_dow = np.bincount(dow, weights=y, minlength=7) / np.maximum(np.bincount(dow, minlength=7), 1)
    out: dict[str, Any] = {
        "rows": int(len(sales)),
        "series": int(per.shape[0]),
        "days": int(sales["ds"].nunique()),
        "first_day": str(sales["ds"].min().date()),
        "last_day": str(sales["ds"].max().date()),
        "total_units": float(y.sum()),
        "zero_share": float((y == 0).mean()),
        "series_mean_quantiles": _quantiles(per["mean"].to_numpy()),
        "top10_share": float(tot[:top].sum() / max(tot.sum(), 1e-12)),
        "history_days_quantiles": _quantiles(per["size"].to_numpy().astype(float)),
        "dow_factors": dict(
            zip(DOW_NAMES, (by_dow / by_dow.mean()).round(3).tolist(), strict=True)
        ),
    }
    if "promo" in sales.columns:
        out["promo_share"] = float(sales["promo"].mean())
    if "discount" in sales.columns:
        out["discount_share"] = float((sales["discount"] > 0).mean())
    if calendar is not None:
        fest = sales["ds"].isin(calendar.loc[calendar["is_festival"] == 1, "ds"])
        plain = ~sales["ds"].isin(calendar.loc[calendar["event"] != "", "ds"])
        if fest.any() and plain.any():
            out["festival_lift"] = float(
                y[fest.to_numpy()].mean() / max(y[plain.to_numpy()].mean(), 1e-12)
            )
    return out


def describe_world(world_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, sales statistics and history-length distribution of a world directory.

    Reads through the validating readers (images are only checked for existence).

    Raises:
        ValueError: if a file is missing or invalid (message from the reader).
    """
    from shopml.world import readers
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
        sales = readers.read_sales(d)
        counts["sales_rows"] = int(len(sales))
        summary["sales"] = sales_statistics(sales, calendar)
    if calendar is not None:
        ev = calendar.loc[calendar["event"] != "", "event"]
        summary["calendar"] = {
            "days": int(len(calendar)),
            "event_days": {k: int(v) for k, v in ev.value_counts().sort_index().items()},
        }
    if (d / "users.parquet").is_file():
        counts["users"] = int(len(readers.read_users(d)))
    if (d / "events.parquet").is_file():
        ev = readers.read_events(d, columns=["user_id", "action"])
        counts["events"] = int(len(ev))
        lens = ev.groupby("user_id", sort=False).size().to_numpy().astype(float)
        summary["history_lengths"] = _quantiles(lens)
        summary["history_lengths"]["users_over_1000"] = int((lens > 1000).sum())
        summary["actions"] = {
            k: int(v) for k, v in ev["action"].value_counts().sort_index().items()
        }
    if (d / "impressions.parquet").is_file():
        im = readers.read_impressions(d)
        counts["impressions"] = int(len(im))
        summary["impressions"] = {
            "rows": int(len(im)),
            "train": int((im["split"] == "train").sum()),
            "test": int((im["split"] == "test").sum()),
            "click_rate": float(im["label"].mean()) if len(im) else 0.0,
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
