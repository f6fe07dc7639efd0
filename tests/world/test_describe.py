"""describe_world: the summary's numbers, and streamed statistics equal whole-frame ones."""

from __future__ import annotations

import pytest

from shopml.formats import readers
from shopml.world.describe import describe_world, sales_statistics, sales_statistics_file


def test_summary_counts_and_statistics(tiny_world):
    s = describe_world(tiny_world)
    c = s["counts"]
    assert c["products"] == 200 and c["street_photos"] == 80 and c["users"] == 100
    assert c["events"] == len(readers.read_events(tiny_world))
    assert c["impressions"] == s["impressions"]["train"] + s["impressions"]["test"]
    h = s["history_lengths"]
    assert h["min"] <= h["p50"] <= h["p90"] <= h["max"]
    assert s["scale"] == "tiny" and s["seed"] == 0
    assert s["calendar"]["event_days"]["big_billion_days"] >= 10  # two festivals of 5-8 days


def test_streamed_sales_statistics_equal_whole_frame(tiny_world):
    cal = readers.read_calendar(tiny_world)
    whole = sales_statistics(readers.read_sales(tiny_world), cal)
    streamed = sales_statistics_file(tiny_world / "sales.parquet", cal, batch_rows=7_000)
    assert streamed.keys() == whole.keys()
    for k, v in whole.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                assert streamed[k][kk] == pytest.approx(vv), (k, kk)
        else:
            assert streamed[k] == pytest.approx(v) if isinstance(v, float) else streamed[k] == v, k
