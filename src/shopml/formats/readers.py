"""Validating readers for every table of a world directory (also how users bring their own data).

Each ``read_<table>(source)`` takes a world directory, the table's own file (parquet or CSV) or a
DataFrame, and returns a pandas DataFrame in the documented format (docs/data.md,
:mod:`shopml.formats.schemas`) or raises a ``ValueError`` whose message names the file, the column,
what was expected and what was found.

``columns`` says which columns the caller needs: those must be present, the table's other
documented columns are checked only when present (default: every column the format requires).
Extra columns pass through. Dates given as text (CSV) are parsed. Product ids are checked against
catalog.parquet and user ids against users.parquet when those files lie in the same directory (a
user may bring sales without a catalog); image paths are resolved against that directory
(``root`` for a DataFrame, default the working directory).

>>> import pandas as pd
>>> read_users(pd.DataFrame({"user_id": [3, 1]}))["user_id"].tolist()
[3, 1]
>>> read_users(pd.DataFrame({"user_id": [1, 1]}))
Traceback (most recent call last):
...
ValueError: users.parquet: expected one row per ('user_id',), found 2 duplicated rows (e.g. {'user_id': 1})
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from shopml.common.io import check_columns, read_table
from shopml.formats.schemas import (
    ACTIONS,
    CALENDAR,
    CATALOG,
    EVENTS,
    IMPRESSIONS,
    SALES,
    SALES_TRUTH,
    SPLITS,
    STREET,
    USERS,
    Table,
)

PathLike = str | os.PathLike[str]
Source = PathLike | pd.DataFrame
IMAGE_CHECKS = ("verify", "exists", "none")


# ---------------------------------------------------------------- loading
def _load(
    source: Source, table: Table, columns: Iterable[str] | None
) -> tuple[pd.DataFrame, Path | None]:
    """Read ``source`` and check its columns' presence and kinds; returns ``(df, directory)``
    (``directory`` holds the file, None for a DataFrame)."""
    name = table.file
    if isinstance(source, pd.DataFrame):
        df, home = source, None
    else:
        p = Path(source)
        if p.is_dir():
            path = p / table.file
            csv = path.with_suffix(".csv")
            if not path.exists() and csv.is_file():
                path = csv
            home = p
        elif p.is_file():
            path, home = p, p.parent
        else:
            raise ValueError(
                f"{name}: expected a world directory, a {table.file} file or a DataFrame, found "
                f"nothing at {p}"
            )
        df = read_table(path, name)
    needed = table.kinds(columns)
    for col, kind in table.kinds([c for c in table.names if c in df.columns]).items():
        if kind == "date" and (
            pd.api.types.is_object_dtype(df[col].dtype) or pd.api.types.is_string_dtype(df[col])
        ):
            df = df.copy() if df is source else df  # never change the caller's frame
            df[col] = _parse_dates(df[col], name, col)
        needed.setdefault(col, kind)
    check_columns(df, needed, name)
    return df, home


def _parse_dates(values: pd.Series, name: str, col: str) -> pd.Series:
    try:
        return pd.to_datetime(values)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"{name}: column {col!r} should be date, found values like {values.iloc[0]!r} "
            f"(found dtype {values.dtype})"
        ) from exc


# ---------------------------------------------------------------- checks (skip absent columns)
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
    if not set(cols) <= set(df.columns):
        return
    dup = df.duplicated(cols, keep=False)
    if dup.any():
        first = df.loc[dup, cols].iloc[0].to_dict()
        raise ValueError(
            f"{name}: expected one row per {tuple(cols)}, found {int(dup.sum())} duplicated rows "
            f"(e.g. {first})"
        )


def _in_set(df: pd.DataFrame, name: str, col: str, allowed: Iterable) -> None:
    if col not in df.columns:
        return
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
    if col not in df.columns:
        return
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


def _known_ids(home: Path | None, table: Table, col: str) -> np.ndarray | None:
    if home is None or not (home / table.file).is_file():
        return None
    ids = pd.read_parquet(home / table.file, columns=[col])[col]
    if not pd.api.types.is_integer_dtype(ids.dtype):
        raise ValueError(f"{table.file}: column {col!r} should be int, found dtype {ids.dtype}")
    return ids.to_numpy()


def _check_known(df: pd.DataFrame, name: str, col: str, home: Path | None, table: Table) -> None:
    key = "product_id" if table is CATALOG else "user_id"
    if col not in df.columns:
        return
    known = _known_ids(home, table, key)
    if known is None:
        return
    values = pd.unique(df[col].to_numpy())
    unknown = values[~np.isin(values, known)]
    if unknown.size:
        n_rows = int(df[col].isin(unknown).sum())
        ex = sorted(unknown.tolist())[:5]
        raise ValueError(
            f"{name}: column {col!r} has {n_rows} rows with ids not in {table.file} {key}, e.g. {ex}"
        )


def validate_images(root: Path, name: str, paths: pd.Series, mode: str = "verify") -> None:
    """Check that each image path (relative to ``root``) exists and, with mode "verify", decodes.

    Raises:
        ValueError: ``mode`` is not one of "verify", "exists", "none", or an image is missing or
            does not decode.
    """
    if mode not in IMAGE_CHECKS:
        raise ValueError(f"check_images: expected one of {list(IMAGE_CHECKS)}, found {mode!r}")
    if mode == "none":
        return
    from PIL import Image, UnidentifiedImageError

    for rel in paths:
        p = root / str(rel)
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


def _images(df: pd.DataFrame, name: str, home: Path | None, root, mode: str) -> None:
    if mode not in IMAGE_CHECKS:
        raise ValueError(f"check_images: expected one of {list(IMAGE_CHECKS)}, found {mode!r}")
    if "image" in df.columns:
        base = Path(root) if root is not None else (home if home is not None else Path.cwd())
        validate_images(base, name, df["image"], mode)


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


# ---------------------------------------------------------------- readers
def read_catalog(
    source: Source,
    columns: Iterable[str] | None = None,
    check_images: str = "verify",
    root: PathLike | None = None,
) -> pd.DataFrame:
    """catalog.parquet: one row per product, unique ``product_id``, positive ``price``.

    Args:
        source: a world directory, the catalog file, or a DataFrame.
        columns: the columns the caller needs (default: every required column).
        check_images: "verify" (exist and decode), "exists", or "none".
        root: the directory image paths are relative to (default: the file's directory).
    """
    df, home = _load(source, CATALOG, columns)
    name = CATALOG.file
    _no_nan(df, name, [c for c in CATALOG.required if c != "delist_date"])
    if len(df) == 0:
        raise ValueError(f"{name}: expected at least one product, found 0 rows")
    _unique(df, name, ["product_id"])
    _range(df, name, "price", lo=1e-9, what="a positive list price")
    if {"launch_date", "delist_date"} <= set(df.columns):
        late = df["delist_date"].notna() & (df["delist_date"] <= df["launch_date"])
        if late.any():
            i = int(np.flatnonzero(late.to_numpy())[0])
            raise ValueError(
                f"{name}: column 'delist_date' should be after 'launch_date' (or NaT), found "
                f"{df['delist_date'].iloc[i]} <= {df['launch_date'].iloc[i]} for product "
                f"{df['product_id'].iloc[i]}"
            )
    _images(df, name, home, root, check_images)
    return df


def read_sales(source: Source, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """sales.parquet: daily units per product (long format ``unique_id, ds, y`` + covariates),
    sorted by ``(unique_id, ds)`` (sorted here if it was not), one row per pair."""
    df, home = _load(source, SALES, columns)
    name = SALES.file
    _no_nan(df, name, SALES.names)
    _range(df, name, "y", lo=0.0, what="non-negative units (y >= 0)")
    _range(df, name, "price", lo=0.0, what="a non-negative price")
    _range(df, name, "discount", lo=0.0, hi=0.99, what="a fraction in [0, 0.99]")
    _in_set(df, name, "promo", [0, 1])
    if "ds" in df.columns:
        ds = df["ds"].to_numpy()
        if (ds != ds.astype("datetime64[D]").astype(ds.dtype)).any():
            raise ValueError(
                f"{name}: column 'ds' should hold dates (midnight, daily), found times of day"
            )
        if "unique_id" in df.columns:
            df = _sorted_unique(df, name, "unique_id", "ds")
    _check_known(df, name, "unique_id", home, CATALOG)
    return df


def read_calendar(source: Source, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """calendar.parquet: one row per day (sorted by ``ds``), events known in advance."""
    df, _ = _load(source, CALENDAR, columns)
    name = CALENDAR.file
    _no_nan(df, name, CALENDAR.names)
    _unique(df, name, ["ds"])
    for c in ("is_festival", "is_holiday"):
        _in_set(df, name, c, [0, 1])
    for c in ("days_to_event", "days_since_event"):
        _range(df, name, c, lo=0, what="a non-negative day count")
    return df.sort_values("ds", kind="stable").reset_index(drop=True)


def read_street(
    source: Source,
    columns: Iterable[str] | None = None,
    check_images: str = "verify",
    root: PathLike | None = None,
) -> pd.DataFrame:
    """street.parquet: customer photos of catalog products (visual search ground truth).

    A user's own photos may come without ``split``: pass ``columns`` without it.
    """
    df, home = _load(source, STREET, columns)
    name = STREET.file
    _no_nan(df, name, STREET.names)
    _unique(df, name, ["query_id"])
    _in_set(df, name, "split", SPLITS)
    _check_known(df, name, "product_id", home, CATALOG)
    _images(df, name, home, root, check_images)
    return df


def read_users(source: Source, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """users.parquet: one row per user."""
    df, _ = _load(source, USERS, columns)
    name = USERS.file
    _no_nan(df, name, ["user_id"])
    _unique(df, name, ["user_id"])
    return df


def read_events(source: Source, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """events.parquet: behaviour history, sorted by ``(user_id, ts)`` (sorted here if it was not).

    Args:
        source: a world directory, the events file, or a DataFrame.
        columns: the columns the caller needs; from a parquet file only these are read (for large
            worlds).
    """
    if columns is not None and not isinstance(source, pd.DataFrame):
        p = Path(source)
        path = p / EVENTS.file if p.is_dir() else p
        if path.suffix == ".parquet" and path.is_file():
            cols = list(columns)
            EVENTS.kinds(cols)  # unknown names -> ValueError
            df = pd.read_parquet(path, columns=cols)
            df, _ = _load(df, EVENTS, cols)
            return _check_events(df, path.parent)
    df, home = _load(source, EVENTS, columns)
    return _check_events(df, home)


def _check_events(df: pd.DataFrame, home: Path | None) -> pd.DataFrame:
    name = EVENTS.file
    _no_nan(df, name, EVENTS.names)
    _in_set(df, name, "action", ACTIONS)
    _check_known(df, name, "product_id", home, CATALOG)
    _check_known(df, name, "user_id", home, USERS)
    if {"user_id", "ts"} <= set(df.columns) and not (
        df["user_id"].is_monotonic_increasing and _sorted_within(df, "user_id", "ts")
    ):
        df = df.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
    return df


def read_impressions(source: Source, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """impressions.parquet: ranking examples (a slate per request) with click labels and split."""
    df, home = _load(source, IMPRESSIONS, columns)
    name = IMPRESSIONS.file
    _no_nan(df, name, IMPRESSIONS.names)
    if len(df) == 0:
        raise ValueError(f"{name}: expected at least one impression, found 0 rows")
    _in_set(df, name, "label", [0, 1])
    _in_set(df, name, "split", SPLITS)
    _range(df, name, "position", lo=1, what="a 1-based position (>= 1)")
    _check_known(df, name, "product_id", home, CATALOG)
    _check_known(df, name, "user_id", home, USERS)
    return df


def read_sales_truth(source: Source, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """truth/sales_mean.parquet (generated worlds only): noise-free mean and hidden regime."""
    df, _ = _load(source, SALES_TRUTH, columns)
    _no_nan(df, SALES_TRUTH.file, SALES_TRUTH.names)
    return df
