"""Validating readers for every file of a world directory (also how users bring their own data).

Each reader returns a pandas DataFrame in the documented format (docs/data.md) or raises a
``ValueError`` whose message names the file, the column, what was expected and what was found.
Product ids are checked against catalog.parquet and user ids against users.parquet when those files
exist in the same directory (a user may bring sales without a catalog).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from shopml.common.io import check_columns, read_table

PathLike = str | os.PathLike[str]

CATALOG_SCHEMA = {
    "product_id": "int",
    "title": "str",
    "category": "str",
    "brand": "str",
    "price": "float",
    "style_id": "int",
    "color": "str",
    "pattern": "str",
    "image": "str",
    "launch_date": "date",
    "delist_date": "date",
}
SALES_SCHEMA = {
    "unique_id": "int",
    "ds": "date",
    "y": "float",
    "price": "float",
    "discount": "float",
    "promo": "int",
}
CALENDAR_SCHEMA = {
    "ds": "date",
    "event": "str",
    "is_festival": "int",
    "is_holiday": "int",
    "days_to_event": "int",
    "days_since_event": "int",
}
STREET_SCHEMA = {"query_id": "int", "product_id": "int", "image": "str", "split": "str"}
USERS_SCHEMA = {"user_id": "int"}
EVENTS_SCHEMA = {"user_id": "int", "product_id": "int", "ts": "date", "action": "str"}
IMPRESSIONS_SCHEMA = {
    "user_id": "int",
    "product_id": "int",
    "ts": "date",
    "position": "int",
    "label": "int",
    "split": "str",
}
SALES_TRUTH_SCHEMA = {"unique_id": "int", "ds": "date", "mean": "float", "regime": "int"}
ACTIONS = ("view", "click", "cart", "purchase")
SPLITS = ("train", "test")
IMAGE_CHECKS = ("verify", "exists", "none")


# ---------------------------------------------------------------- helpers
def _dir(world_dir: PathLike) -> Path:
    d = Path(world_dir)
    if not d.is_dir():
        raise ValueError(
            f"world_dir: expected a directory, found {'a file' if d.exists() else 'nothing'} at {d}"
        )
    return d


def _table(
    d: Path, name: str, schema: dict[str, str], columns: Iterable[str] | None = None
) -> pd.DataFrame:
    path = d / name
    if columns is None:
        df = read_table(path, name)
    else:
        if not path.is_file():
            raise ValueError(f"{name}: expected a file at {path}, found none")
        df = pd.read_parquet(path, columns=list(columns))
    check_columns(df, {k: v for k, v in schema.items() if k in df.columns or columns is None}, name)
    return df


def _no_nan(df: pd.DataFrame, name: str, cols: Iterable[str]) -> None:
    for c in cols:
        if c in df.columns:
            bad = df[c].isna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise ValueError(
                    f"{name}: column {c!r} must not contain missing values, found {int(bad.sum())} "
                    f"(first at row {i})"
                )


def _unique(df: pd.DataFrame, name: str, cols: list[str]) -> None:
    dup = df.duplicated(cols, keep=False)
    if dup.any():
        first = df.loc[dup, cols].iloc[0].to_dict()
        raise ValueError(
            f"{name}: expected one row per {tuple(cols)}, found {int(dup.sum())} duplicated rows "
            f"(e.g. {first})"
        )


def _in_set(df: pd.DataFrame, name: str, col: str, allowed: Iterable) -> None:
    allowed = list(allowed)
    if len(allowed) <= 4 and pd.api.types.is_numeric_dtype(df[col].dtype):
        v = df[col].to_numpy()
        bad = pd.Series(~np.logical_or.reduce([v == a for a in allowed]), index=df.index)
    else:
        bad = ~df[col].isin(allowed)
    if bad.any():
        found = sorted(map(str, pd.unique(df.loc[bad, col])))[:5]
        raise ValueError(f"{name}: column {col!r} should be one of {allowed}, found {found}")


def _range(df: pd.DataFrame, name: str, col: str, lo=None, hi=None, what: str = "") -> None:
    v = df[col].to_numpy()
    bad = np.zeros(len(v), bool)
    if lo is not None:
        bad |= v < lo
    if hi is not None:
        bad |= v > hi
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}: column {col!r} should be {what or f'in [{lo}, {hi}]'}, found {v[i]!r} at row {i} "
            f"({int(bad.sum())} rows)"
        )


def _known_ids(d: Path, file: str, col: str) -> np.ndarray | None:
    path = d / file
    if not path.is_file():
        return None
    ids = pd.read_parquet(path, columns=[col])[col]
    if not pd.api.types.is_integer_dtype(ids.dtype):
        raise ValueError(f"{file}: column {col!r} should be int, found dtype {ids.dtype}")
    return ids.to_numpy()


def _check_known(
    df: pd.DataFrame, name: str, col: str, known: np.ndarray | None, source: str
) -> None:
    if known is None:
        return
    values = pd.unique(df[col].to_numpy())
    unknown = values[~np.isin(values, known)]
    if unknown.size:
        n_rows = int(df[col].isin(unknown).sum())
        ex = sorted(unknown.tolist())[:5]
        raise ValueError(
            f"{name}: column {col!r} has {n_rows} rows with ids not in {source}, e.g. {ex}"
        )


def validate_images(d: Path, name: str, paths: pd.Series, mode: str = "verify") -> None:
    """Check that each relative image path exists (and, with mode "verify", decodes as an image)."""
    if mode not in IMAGE_CHECKS:
        raise ValueError(f"check_images: expected one of {list(IMAGE_CHECKS)}, found {mode!r}")
    if mode == "none":
        return
    from PIL import Image, UnidentifiedImageError

    for rel in paths:
        p = d / str(rel)
        if not p.is_file():
            raise ValueError(
                f"{name}: column 'image' names {rel!r}, expected an image file at {p}, found none"
            )
        if mode == "verify":
            try:
                with Image.open(p) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise ValueError(
                    f"{name}: column 'image' names {rel!r}, expected a decodable image at {p}, "
                    f"found a file that is not one ({exc.__class__.__name__}: {exc})"
                ) from exc


# ---------------------------------------------------------------- readers
def read_catalog(world_dir: PathLike, check_images: str = "verify") -> pd.DataFrame:
    """catalog.parquet: one row per product (docs/data.md). Images are checked per ``check_images``
    ("verify": exist and decode; "exists"; "none")."""
    d = _dir(world_dir)
    name = "catalog.parquet"
    df = _table(d, name, CATALOG_SCHEMA)
    _no_nan(
        df,
        name,
        ["product_id", "title", "category", "brand", "price", "style_id", "image", "launch_date"],
    )
    _unique(df, name, ["product_id"])
    _range(df, name, "price", lo=1e-9, what="a positive list price")
    late = df["delist_date"].notna() & (df["delist_date"] <= df["launch_date"])
    if late.any():
        i = int(np.flatnonzero(late.to_numpy())[0])
        raise ValueError(
            f"{name}: column 'delist_date' should be after 'launch_date' (or NaT), found "
            f"{df['delist_date'].iloc[i]} <= {df['launch_date'].iloc[i]} for product {df['product_id'].iloc[i]}"
        )
    validate_images(d, name, df["image"], check_images)
    return df


def read_sales(world_dir: PathLike) -> pd.DataFrame:
    """sales.parquet: daily units per product (long format ``unique_id, ds, y`` + covariates)."""
    d = _dir(world_dir)
    name = "sales.parquet"
    df = _table(d, name, SALES_SCHEMA)
    _no_nan(df, name, ["unique_id", "ds", "y", "price", "discount", "promo"])
    _range(df, name, "y", lo=0.0, what="non-negative units (y >= 0)")
    _range(df, name, "price", lo=0.0, what="a non-negative price")
    _range(df, name, "discount", lo=0.0, hi=0.99, what="a fraction in [0, 0.99]")
    _in_set(df, name, "promo", [0, 1])
    ds = df["ds"].to_numpy()
    if (ds != ds.astype("datetime64[D]").astype(ds.dtype)).any():
        raise ValueError(
            f"{name}: column 'ds' should hold dates (midnight, daily), found times of day"
        )
    df = _sorted_unique(df, name, "unique_id", "ds")
    _check_known(
        df,
        name,
        "unique_id",
        _known_ids(d, "catalog.parquet", "product_id"),
        "catalog.parquet product_id",
    )
    return df


def _sorted_unique(df: pd.DataFrame, name: str, key: str, col: str) -> pd.DataFrame:
    """``df`` sorted by (key, col) (sorted here if it was not); ValueError on a duplicate pair."""
    k = df[key].to_numpy()
    v = df[col].to_numpy()
    same = k[1:] == k[:-1]
    ordered = bool(np.all(k[1:] >= k[:-1]) and np.all(v[1:][same] > v[:-1][same]))
    if not ordered:
        df = df.sort_values([key, col], kind="stable").reset_index(drop=True)
        k = df[key].to_numpy()
        v = df[col].to_numpy()
    dup = (k[1:] == k[:-1]) & (v[1:] == v[:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0]) + 1
        raise ValueError(
            f"{name}: expected one row per ({key!r}, {col!r}), found {int(dup.sum())} duplicated rows "
            f"(e.g. {key}={k[i]!r}, {col}={pd.Timestamp(v[i]) if col == 'ds' else v[i]!r})"
        )
    return df


def _sorted_within(df: pd.DataFrame, key: str, col: str) -> bool:
    k = df[key].to_numpy()
    v = df[col].to_numpy()
    same = k[1:] == k[:-1]
    return bool(np.all(v[1:][same] >= v[:-1][same]))


def read_calendar(world_dir: PathLike) -> pd.DataFrame:
    """calendar.parquet: one row per day, events known in advance."""
    d = _dir(world_dir)
    name = "calendar.parquet"
    df = _table(d, name, CALENDAR_SCHEMA)
    _no_nan(df, name, list(CALENDAR_SCHEMA))
    _unique(df, name, ["ds"])
    for c in ("is_festival", "is_holiday"):
        _in_set(df, name, c, [0, 1])
    for c in ("days_to_event", "days_since_event"):
        _range(df, name, c, lo=0, what="a non-negative day count")
    return df.sort_values("ds", kind="stable").reset_index(drop=True)


def read_street(world_dir: PathLike, check_images: str = "verify") -> pd.DataFrame:
    """street.parquet: customer photos of catalog products (visual search ground truth)."""
    d = _dir(world_dir)
    name = "street.parquet"
    df = _table(d, name, STREET_SCHEMA)
    _no_nan(df, name, list(STREET_SCHEMA))
    _unique(df, name, ["query_id"])
    _in_set(df, name, "split", SPLITS)
    _check_known(
        df,
        name,
        "product_id",
        _known_ids(d, "catalog.parquet", "product_id"),
        "catalog.parquet product_id",
    )
    validate_images(d, name, df["image"], check_images)
    return df


def read_users(world_dir: PathLike) -> pd.DataFrame:
    """users.parquet: one row per user."""
    d = _dir(world_dir)
    name = "users.parquet"
    df = _table(d, name, USERS_SCHEMA)
    _no_nan(df, name, ["user_id"])
    _unique(df, name, ["user_id"])
    return df


def read_events(world_dir: PathLike, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """events.parquet: behaviour history, sorted by (user_id, ts) (sorted here if it was not).

    Args:
        columns: read only these columns (for large worlds); checks apply to the columns read.
    """
    d = _dir(world_dir)
    name = "events.parquet"
    df = _table(d, name, EVENTS_SCHEMA, columns)
    _no_nan(df, name, list(EVENTS_SCHEMA))
    if "action" in df.columns:
        _in_set(df, name, "action", ACTIONS)
    if "product_id" in df.columns:
        _check_known(
            df,
            name,
            "product_id",
            _known_ids(d, "catalog.parquet", "product_id"),
            "catalog.parquet product_id",
        )
    if "user_id" in df.columns:
        _check_known(
            df, name, "user_id", _known_ids(d, "users.parquet", "user_id"), "users.parquet user_id"
        )
        if "ts" in df.columns and not (
            df["user_id"].is_monotonic_increasing and _sorted_within(df, "user_id", "ts")
        ):
            df = df.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    return df


def read_impressions(world_dir: PathLike) -> pd.DataFrame:
    """impressions.parquet: ranking examples (a slate per request) with click labels and split."""
    d = _dir(world_dir)
    name = "impressions.parquet"
    df = _table(d, name, IMPRESSIONS_SCHEMA)
    _no_nan(df, name, list(IMPRESSIONS_SCHEMA))
    _in_set(df, name, "label", [0, 1])
    _in_set(df, name, "split", SPLITS)
    _range(df, name, "position", lo=1, what="a 1-based position (>= 1)")
    _check_known(
        df,
        name,
        "product_id",
        _known_ids(d, "catalog.parquet", "product_id"),
        "catalog.parquet product_id",
    )
    _check_known(
        df, name, "user_id", _known_ids(d, "users.parquet", "user_id"), "users.parquet user_id"
    )
    return df


def read_sales_truth(world_dir: PathLike) -> pd.DataFrame:
    """truth/sales_mean.parquet (generated worlds only): noise-free mean and hidden regime."""
    d = _dir(world_dir)
    name = "truth/sales_mean.parquet"
    df = _table(d, name, SALES_TRUTH_SCHEMA)
    _no_nan(df, name, list(SALES_TRUTH_SCHEMA))
    return df
