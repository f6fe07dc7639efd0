"""generate_world: every contract file, formats, determinism, argument checks, replacement."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from shopml.world.generate import generate_world

CONTRACT = {
    "catalog.parquet": {
        "product_id": "int64",
        "title": "object",
        "category": "object",
        "brand": "object",
        "price": "float64",
        "style_id": "int64",
        "color": "object",
        "pattern": "object",
        "image": "object",
        "launch_date": "datetime64[ns]",
        "delist_date": "datetime64[ns]",
    },
    "street.parquet": {
        "query_id": "int64",
        "product_id": "int64",
        "image": "object",
        "split": "object",
    },
    "sales.parquet": {
        "unique_id": "int64",
        "ds": "datetime64[ns]",
        "y": "float64",
        "price": "float64",
        "discount": "float64",
        "promo": "int8",
    },
    "calendar.parquet": {
        "ds": "datetime64[ns]",
        "event": "object",
        "is_festival": "int8",
        "is_holiday": "int8",
        "days_to_event": "int32",
        "days_since_event": "int32",
    },
    "truth/sales_mean.parquet": {
        "unique_id": "int64",
        "ds": "datetime64[ns]",
        "mean": "float64",
        "regime": "int8",
    },
    "users.parquet": {"user_id": "int64"},
    "events.parquet": {
        "user_id": "int64",
        "product_id": "int64",
        "ts": "datetime64[ns]",
        "action": "object",
    },
    "impressions.parquet": {
        "user_id": "int64",
        "product_id": "int64",
        "ts": "datetime64[ns]",
        "position": "int16",
        "label": "int8",
        "split": "object",
    },
}


def _digest(world) -> dict[str, str]:
    return {
        str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(world.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_contract_columns_and_dtypes(tiny_world, name):
    df = pd.read_parquet(tiny_world / name)
    for col, dtype in CONTRACT[name].items():
        assert col in df.columns, f"{name} lacks {col}"
        assert str(df[col].dtype) == dtype, f"{name}.{col}: {df[col].dtype} != {dtype}"


def test_tiny_sizes(tiny_world):
    meta = json.loads((tiny_world / "world.json").read_text())
    c = meta["counts"]
    assert c["products"] == 200 and c["street_photos"] == 80 and c["users"] == 100
    assert 1000 <= c["events"] <= 20_000
    assert c["impressions"] >= 2000
    cat = pd.read_parquet(tiny_world / "catalog.parquet")
    assert cat["category"].nunique() >= 8
    assert len(list((tiny_world / "images" / "catalog").glob("*.png"))) == 200
    assert len(list((tiny_world / "images" / "street").glob("*.png"))) == 80
    sales = pd.read_parquet(tiny_world / "sales.parquet", columns=["ds"])
    assert (sales["ds"].max() - sales["ds"].min()).days + 1 == 731  # two years, daily


def test_same_seed_same_bytes_other_seed_differs(tiny_world, tmp_path):
    again = generate_world(tmp_path / "again", scale="tiny", seed=0)
    assert _digest(again) == _digest(tiny_world)
    other = generate_world(tmp_path / "again", scale="tiny", seed=1)  # replaces the earlier world
    d_other = _digest(other)
    assert d_other.keys() >= {"catalog.parquet", "sales.parquet"}
    assert d_other["sales.parquet"] != _digest(tiny_world)["sales.parquet"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_style_groups_are_near_duplicates(tiny_world):
    cat = pd.read_parquet(tiny_world / "catalog.parquet")
    per_style = cat.groupby("style_id").agg(
        cats=("category", "nunique"),
        brands=("brand", "nunique"),
        patterns=("pattern", "nunique"),
        n=("product_id", "size"),
    )
    assert (per_style[["cats", "brands", "patterns"]] == 1).all().all()
    assert (per_style["n"] > 1).sum() >= 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "huge"}, "scale: expected one of"),
        ({"seed": -1}, "seed: expected a non-negative int"),
        ({"seed": 1.5}, "seed: expected a non-negative int"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_world(tmp_path / "w", **kwargs)


def test_refuses_to_overwrite_a_non_world_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(
        ValueError, match="out_dir: expected an empty directory or an existing world"
    ):
        generate_world(tmp_path, scale="tiny")
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_chunked_streaming_path(tmp_path):
    """The large scale's path: many sales and event chunks appended to one file each."""
    from dataclasses import replace

    from shopml.formats import readers
    from shopml.world.generate import SCALE_CONFIGS

    cfg = replace(
        SCALE_CONFIGS["tiny"], n_products=60, n_street=10, n_users=40, product_chunk=7, user_chunk=9
    )
    w = generate_world(tmp_path / "w", scale="tiny", seed=5, config=cfg)
    sales = readers.read_sales(w)
    assert sales["unique_id"].nunique() == 60
    assert sales[["unique_id", "ds"]].equals(
        sales[["unique_id", "ds"]].sort_values(["unique_id", "ds"])
    )
    raw = pd.read_parquet(w / "events.parquet")
    assert raw[["user_id", "ts"]].equals(
        raw[["user_id", "ts"]].sort_values(["user_id", "ts"], kind="stable")
    )
    assert raw["user_id"].nunique() == 40
    assert len(readers.read_impressions(w)) > 0
    assert len(pd.read_parquet(w / "truth" / "sales_mean.parquet")) == len(sales)
