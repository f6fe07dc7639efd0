"""Each reader rejects each kind of bad input with a message naming file, column and problem."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from shopml.formats import readers


@pytest.fixture
def world(tiny_world, tmp_path):
    """A copy of the tiny world's tables (images linked) that a test may corrupt."""
    d = tmp_path / "w"
    d.mkdir()
    for f in tiny_world.glob("*.parquet"):
        shutil.copy(f, d / f.name)
    (d / "truth").mkdir()
    shutil.copy(tiny_world / "truth" / "sales_mean.parquet", d / "truth" / "sales_mean.parquet")
    shutil.copytree(tiny_world / "images", d / "images")
    return d


def _edit(d, name, fn):
    df = pd.read_parquet(d / name)
    df = fn(df)
    df.to_parquet(d / name, index=False)


def test_all_readers_accept_the_world(world):
    assert len(readers.read_catalog(world)) == 200
    for fn in (
        readers.read_sales,
        readers.read_calendar,
        readers.read_street,
        readers.read_users,
        readers.read_events,
        readers.read_impressions,
        readers.read_sales_truth,
    ):
        assert len(fn(world)) > 0


def _set(col, value, row=0):
    def fn(df):
        df = df.copy()
        if df[col].dtype.kind in "iu" and isinstance(value, float):
            df[col] = df[col].astype("float64")
        df.loc[row, col] = value
        return df

    return fn


CASES = [
    # (file, edit, reader, message fragments)
    (
        "catalog.parquet",
        lambda df: df.drop(columns=["price"]),
        "read_catalog",
        ["catalog.parquet", "missing column", "price"],
    ),
    (
        "catalog.parquet",
        lambda df: df.assign(price=df["price"].astype(str)),
        "read_catalog",
        ["catalog.parquet", "'price'", "float", "found dtype"],
    ),
    (
        "catalog.parquet",
        lambda df: pd.concat([df, df.iloc[:1]]),
        "read_catalog",
        ["catalog.parquet", "one row per ('product_id',)", "duplicated"],
    ),
    (
        "catalog.parquet",
        _set("price", -3.0),
        "read_catalog",
        ["catalog.parquet", "'price'", "positive"],
    ),
    (
        "catalog.parquet",
        _set("title", None),
        "read_catalog",
        ["catalog.parquet", "'title'", "missing values"],
    ),
    (
        "sales.parquet",
        lambda df: df.drop(columns=["y"]),
        "read_sales",
        ["sales.parquet", "missing column", "'y'"],
    ),
    (
        "sales.parquet",
        lambda df: df.assign(ds="soon"),
        "read_sales",
        ["sales.parquet", "'ds'", "date", "'soon'"],
    ),
    (
        "sales.parquet",
        _set("y", np.nan),
        "read_sales",
        ["sales.parquet", "'y'", "missing values", "1"],
    ),
    (
        "sales.parquet",
        _set("y", -1.0),
        "read_sales",
        ["sales.parquet", "'y'", "non-negative", "-1.0"],
    ),
    (
        "sales.parquet",
        lambda df: pd.concat([df, df.iloc[5:6]]),
        "read_sales",
        ["sales.parquet", "('unique_id', 'ds')", "duplicated"],
    ),
    (
        "sales.parquet",
        _set("unique_id", 999_999),
        "read_sales",
        ["sales.parquet", "'unique_id'", "not in catalog.parquet", "999999"],
    ),
    ("sales.parquet", _set("promo", 3), "read_sales", ["sales.parquet", "'promo'", "[0, 1]"]),
    (
        "sales.parquet",
        _set("discount", 1.5),
        "read_sales",
        ["sales.parquet", "'discount'", "fraction"],
    ),
    (
        "calendar.parquet",
        lambda df: pd.concat([df, df.iloc[:1]]),
        "read_calendar",
        ["calendar.parquet", "('ds',)"],
    ),
    (
        "calendar.parquet",
        _set("is_festival", 2),
        "read_calendar",
        ["calendar.parquet", "'is_festival'"],
    ),
    (
        "street.parquet",
        _set("product_id", 999_999),
        "read_street",
        ["street.parquet", "'product_id'", "not in catalog.parquet"],
    ),
    (
        "street.parquet",
        _set("split", "valid"),
        "read_street",
        ["street.parquet", "'split'", "valid"],
    ),
    (
        "events.parquet",
        _set("action", "like"),
        "read_events",
        ["events.parquet", "'action'", "like"],
    ),
    (
        "events.parquet",
        _set("user_id", 999_999),
        "read_events",
        ["events.parquet", "'user_id'", "not in users.parquet"],
    ),
    (
        "events.parquet",
        _set("product_id", 999_999),
        "read_events",
        ["events.parquet", "'product_id'", "not in catalog.parquet"],
    ),
    (
        "events.parquet",
        lambda df: df.drop(columns=["ts"]),
        "read_events",
        ["events.parquet", "missing column", "ts"],
    ),
    (
        "impressions.parquet",
        _set("label", 2),
        "read_impressions",
        ["impressions.parquet", "'label'"],
    ),
    (
        "impressions.parquet",
        _set("position", 0),
        "read_impressions",
        ["impressions.parquet", "'position'", ">= 1"],
    ),
    (
        "impressions.parquet",
        _set("product_id", 999_999),
        "read_impressions",
        ["impressions.parquet", "not in catalog.parquet"],
    ),
    (
        "users.parquet",
        lambda df: pd.concat([df, df.iloc[:1]]),
        "read_users",
        ["users.parquet", "('user_id',)"],
    ),
]


@pytest.mark.parametrize(
    ("name", "edit", "reader", "fragments"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_reader_rejects(world, name, edit, reader, fragments):
    _edit(world, name, edit)
    with pytest.raises(ValueError) as info:
        getattr(readers, reader)(world)
    for frag in fragments:
        assert frag in str(info.value), (frag, str(info.value))


@pytest.mark.parametrize(
    "reader", ["read_catalog", "read_sales", "read_events", "read_impressions"]
)
def test_missing_file(world, reader):
    name = {
        "read_catalog": "catalog",
        "read_sales": "sales",
        "read_events": "events",
        "read_impressions": "impressions",
    }[reader]
    (world / f"{name}.parquet").unlink()
    with pytest.raises(ValueError, match=f"{name}.parquet: expected a file"):
        getattr(readers, reader)(world)


def test_not_a_table(world):
    (world / "sales.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="sales.parquet: could not read"):
        readers.read_sales(world)


def test_not_a_directory(tmp_path):
    with pytest.raises(
        ValueError, match="sales.parquet: expected a world directory, a sales.parquet"
    ):
        readers.read_sales(tmp_path / "nope")


def test_missing_image(world):
    (world / "images" / "catalog" / "7.png").unlink()
    with pytest.raises(
        ValueError,
        match=r"catalog.parquet: column 'image' names 'images/catalog/7.png', expected an image file",
    ):
        readers.read_catalog(world)
    readers.read_catalog(world, check_images="none")


def test_file_that_is_not_an_image(world):
    (world / "images" / "street" / "3.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(
        ValueError,
        match="street.parquet: column 'image' names 'images/street/3.png', expected a decodable image",
    ):
        readers.read_street(world)
    assert len(readers.read_street(world, check_images="exists")) == 80


def test_truncated_image(world):
    p = world / "images" / "catalog" / "11.png"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ValueError, match="expected a decodable image"):
        readers.read_catalog(world)


def test_unsorted_events_are_sorted(world):
    _edit(world, "events.parquet", lambda df: df.sample(frac=1.0, random_state=0))
    ev = readers.read_events(world)
    assert ev[["user_id", "ts"]].equals(
        ev[["user_id", "ts"]].sort_values(["user_id", "ts"], kind="stable")
    )


def test_sales_without_a_catalog_are_accepted(world):
    (world / "catalog.parquet").unlink()
    assert len(readers.read_sales(world)) > 0


def test_a_file_a_csv_and_a_frame_read_like_the_directory(world, tmp_path):
    base = readers.read_events(world)
    assert readers.read_events(world / "events.parquet").equals(base)
    csv_dir = tmp_path / "own"
    csv_dir.mkdir()
    pd.read_parquet(world / "events.parquet").to_csv(csv_dir / "events.csv", index=False)
    from_csv = readers.read_events(csv_dir)  # text timestamps are parsed
    assert pd.api.types.is_datetime64_any_dtype(from_csv["ts"])
    assert from_csv[["user_id", "product_id"]].equals(base[["user_id", "product_id"]])
    frame = pd.read_parquet(world / "events.parquet")
    assert readers.read_events(frame).equals(base)


def test_columns_asks_only_for_what_a_part_uses(world):
    cat = pd.read_parquet(world / "catalog.parquet")[["product_id", "category", "brand", "price"]]
    with pytest.raises(ValueError, match="missing column"):
        readers.read_catalog(cat, check_images="none")
    out = readers.read_catalog(cat, columns=["product_id", "category", "brand", "price"])
    assert list(out.columns) == ["product_id", "category", "brand", "price"]
    bad = cat.assign(price=-1.0)  # present columns are still checked
    with pytest.raises(ValueError, match="'price' should be a positive list price"):
        readers.read_catalog(bad, columns=["product_id"])
    with pytest.raises(ValueError, match=r"columns: expected columns of catalog.parquet"):
        readers.read_catalog(cat, columns=["product_id", "cost"])


def test_street_photos_without_a_split(world):
    street = pd.read_parquet(world / "street.parquet").drop(columns=["split"])
    street.to_parquet(world / "street.parquet", index=False)
    with pytest.raises(ValueError, match=r"street.parquet: missing column\(s\) \['split'\]"):
        readers.read_street(world)
    out = readers.read_street(world, columns=["query_id", "product_id", "image"])
    assert len(out) == 80 and "split" not in out


def test_frame_images_resolve_against_root(world):
    cat = pd.read_parquet(world / "catalog.parquet")
    assert len(readers.read_catalog(cat, check_images="exists", root=world)) == 200
    with pytest.raises(ValueError, match="expected an image file"):
        readers.read_catalog(cat, check_images="exists", root=world / "elsewhere")
    with pytest.raises(ValueError, match="check_images: expected one of"):
        readers.read_catalog(cat, check_images="maybe")
