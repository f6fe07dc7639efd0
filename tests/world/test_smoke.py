"""Smoke test: a tiny world has every contract file, readable by the validating readers."""

from __future__ import annotations

from shopml.world import readers


def test_tiny_world_has_every_file(tiny_world):
    for name in (
        "catalog.parquet",
        "street.parquet",
        "sales.parquet",
        "calendar.parquet",
        "users.parquet",
        "events.parquet",
        "impressions.parquet",
        "truth/sales_mean.parquet",
        "world.json",
    ):
        assert (tiny_world / name).is_file(), name
    cat = readers.read_catalog(tiny_world)
    assert len(cat) == 200
    assert len(readers.read_sales(tiny_world)) > 0
    assert len(readers.read_street(tiny_world)) == 80
    assert len(readers.read_events(tiny_world)) > 1000
    assert len(readers.read_impressions(tiny_world)) > 1000
    assert len(readers.read_calendar(tiny_world)) > 731
