"""The ranking part's input tables: their schemas and a validating reader.

Inputs (a world directory, or a user's own files in the same format, see docs/data.md):

- ``catalog``: product_id int64, category str, brand str, price float64 (other columns ignored)
- ``events``: user_id int64, product_id int64, ts datetime64, action str in {view, click, cart,
  purchase}
- ``impressions``: user_id int64, product_id int64, ts datetime64, label 0/1, split "train"|"test"
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shopml.common.io import check_columns, read_table
from shopml.formats.schemas import CATALOG, EVENTS, IMPRESSIONS, SPLITS
from shopml.rank.config import ACTIONS

CATALOG_SCHEMA = CATALOG.kinds(["product_id", "category", "brand", "price"])
EVENTS_SCHEMA = EVENTS.kinds()
IMPRESSIONS_SCHEMA = IMPRESSIONS.kinds(["user_id", "product_id", "ts", "label", "split"])


@dataclass(frozen=True)
class RankTables:
    """The three validated input tables."""

    catalog: pd.DataFrame
    events: pd.DataFrame
    impressions: pd.DataFrame

    @classmethod
    def from_world(cls, world_dir: str | os.PathLike[str]) -> RankTables:
        """Read ``catalog``, ``events`` and ``impressions`` of a world directory.

        Each table is ``<name>.parquet``, or ``<name>.csv`` when no parquet file is there (a
        user's own data in the world's format).
        """
        world_dir = Path(world_dir)
        if not world_dir.is_dir():
            raise ValueError(
                f"world: expected a world directory, found no directory at {world_dir}"
            )

        def table(name: str) -> Path:
            parquet = world_dir / f"{name}.parquet"
            csv = world_dir / f"{name}.csv"
            return csv if not parquet.exists() and csv.exists() else parquet

        return cls.from_files(table("catalog"), table("events"), table("impressions"))

    @classmethod
    def from_files(
        cls,
        catalog: str | os.PathLike[str],
        events: str | os.PathLike[str],
        impressions: str | os.PathLike[str],
    ) -> RankTables:
        """Read and validate a user's own files (parquet or CSV with the world's columns)."""
        cat = read_table(catalog, "catalog")
        ev = read_table(events, "events")
        imp = read_table(impressions, "impressions")
        for df, name in ((ev, "events"), (imp, "impressions")):
            if "ts" in df.columns and not pd.api.types.is_datetime64_any_dtype(df["ts"]):
                try:
                    df["ts"] = pd.to_datetime(df["ts"])
                except (ValueError, TypeError) as exc:
                    raise ValueError(
                        f"{name}: column 'ts' should hold timestamps, found values like "
                        f"{df['ts'].iloc[0]!r}"
                    ) from exc
        return cls.from_frames(cat, ev, imp)

    @classmethod
    def from_frames(
        cls, catalog: pd.DataFrame, events: pd.DataFrame, impressions: pd.DataFrame
    ) -> RankTables:
        """Validate three data frames; raises ``ValueError`` naming the table and column."""
        for df, schema, name in (
            (catalog, CATALOG_SCHEMA, "catalog"),
            (events, EVENTS_SCHEMA, "events"),
            (impressions, IMPRESSIONS_SCHEMA, "impressions"),
        ):
            if not isinstance(df, pd.DataFrame):
                raise ValueError(f"{name}: expected a pandas DataFrame, found {type(df).__name__}")
            check_columns(df, schema, name)
        if len(catalog) == 0:
            raise ValueError("catalog: expected at least one product, found an empty table")
        if len(impressions) == 0:
            raise ValueError("impressions: expected at least one impression, found an empty table")
        if catalog["product_id"].duplicated().any():
            dup = catalog["product_id"][catalog["product_id"].duplicated()].iloc[0]
            raise ValueError(f"catalog: column 'product_id' should be unique, found {dup} twice")
        bad_actions = sorted(set(events["action"].unique()) - set(ACTIONS))
        if bad_actions:
            raise ValueError(
                f"events: column 'action' should be one of {list(ACTIONS)}, found {bad_actions[:5]}"
            )
        labels = set(np.unique(impressions["label"].to_numpy()).tolist())
        if not labels <= {0, 1}:
            raise ValueError(
                f"impressions: column 'label' should be 0 or 1, found {sorted(labels)}"
            )
        bad_splits = sorted(set(impressions["split"].unique()) - set(SPLITS))
        if bad_splits:
            raise ValueError(
                f"impressions: column 'split' should be 'train' or 'test', found {bad_splits}"
            )
        for df, name in ((events, "events"), (impressions, "impressions")):
            if df["ts"].isna().any():
                raise ValueError(f"{name}: column 'ts' should have no missing values, found NaT")
        if catalog["price"].isna().any() or (catalog["price"] < 0).any():
            raise ValueError(
                "catalog: column 'price' should be >= 0 and present, found NaN/negative"
            )
        return cls(catalog, events, impressions)


__all__ = ["CATALOG_SCHEMA", "EVENTS_SCHEMA", "IMPRESSIONS_SCHEMA", "RankTables"]
