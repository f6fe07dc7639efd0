"""Frequencies (positions, dates, anchors), gap filling, and clear errors for bad panels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopml.forecast.data import fill_gaps, future_dates, validate_frame, validate_futr
from shopml.forecast.frequency import calendar_codes, parse_freq


@pytest.mark.parametrize(
    ("freq", "dates", "season"),
    [
        ("D", pd.date_range("2024-02-27", periods=5, freq="D"), 7),
        ("W", pd.date_range("2024-01-04", periods=5, freq="7D"), 52),  # Thursdays: any phase
        ("W-MON", pd.date_range("2024-01-01", periods=5, freq="W-MON"), 52),
        ("MS", pd.date_range("2023-11-01", periods=5, freq="MS"), 12),
        ("M", pd.date_range("2023-11-30", periods=5, freq="ME"), 12),
        ("QS", pd.date_range("2023-10-01", periods=5, freq="QS"), 4),
        ("Q", pd.date_range("2023-12-31", periods=5, freq="QE"), 4),
        ("H", pd.date_range("2024-03-30 22:00", periods=5, freq="h"), 24),
    ],
)
def test_positions_are_consecutive_and_dates_invert_them(freq, dates, season):
    fq = parse_freq(freq)
    pos = fq.positions(dates)
    assert (np.diff(pos) == 1).all() and fq.season == season
    assert list(fq.dates(pos, dates[0])) == list(dates)
    last = pd.Series([dates[2]], index=["a"])
    fut = future_dates(last, 2, freq)
    assert list(fut["ds"]) == list(dates[3:5])
    codes = calendar_codes(pd.Series(dates), fq)
    assert codes.shape == (5, len(fq.calendar)) and (codes >= 0).all()


def test_off_grid_dates_and_unknown_frequencies_are_refused():
    with pytest.raises(ValueError, match="expected MS dates on the first day of each month"):
        parse_freq("MS").positions(pd.to_datetime(["2024-01-01", "2024-02-15"]))
    with pytest.raises(ValueError, match="expected Q dates on the last day of each quarter"):
        parse_freq("Q").positions(pd.to_datetime(["2024-03-31", "2024-05-31"]))
    with pytest.raises(ValueError, match="expected every date on one W grid"):
        parse_freq("W").positions(pd.to_datetime(["2024-01-04", "2024-01-12"]))
    with pytest.raises(ValueError, match="freq: expected one of D, W"):
        parse_freq("2W")


def _panel_with_gap():
    ds = pd.date_range("2024-01-01", periods=6, freq="MS")
    df = pd.DataFrame(
        {
            "unique_id": ["a"] * 6 + ["b"] * 6,
            "ds": list(ds) * 2,
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, np.nan, 30.0, 40.0, 50.0, 60.0],
            "price": np.arange(12, dtype=float),
        }
    )
    return df.drop(index=[2, 3]).reset_index(drop=True)  # a misses March and April


def test_fill_gaps_masks_missing_periods_and_nan_targets():
    df = validate_frame(_panel_with_gap(), "df", "MS", missing="mask")
    full, observed = fill_gaps(df, "MS", "mask")
    assert len(full) == 12 and list(full["ds"].iloc[:6]) == list(
        pd.date_range("2024-01-01", periods=6, freq="MS")
    )
    assert observed.tolist() == [True, True, False, False, True, True] + [True, False] + [True] * 4
    assert full["y"].tolist()[:6] == [1.0, 2.0, 2.0, 2.0, 5.0, 6.0]  # inputs carried forward
    assert full["price"].tolist()[:6] == [0.0, 1.0, 1.0, 1.0, 4.0, 5.0]
    zero, observed = fill_gaps(df, "MS", "zero")
    assert observed.all() and zero["y"].tolist()[:6] == [1.0, 2.0, 0.0, 0.0, 5.0, 6.0]
    assert zero["y"].iloc[7] == 0.0


def test_bad_panels_name_the_series_and_the_date():
    df = _panel_with_gap()
    with pytest.raises(ValueError, match=r"series a has missing periods: 2024-02-01 .* 2024-05-01"):
        validate_frame(df.dropna(), "df", "MS", missing="refuse")
    with pytest.raises(ValueError, match=r"'y' has 1 NaN .*unique_id=b, ds=2024-02-01"):
        validate_frame(df[df["unique_id"] == "b"], "df", "MS", missing="refuse")
    dup = pd.concat([df, df.iloc[[4]]])
    with pytest.raises(ValueError, match=r"duplicate .* unique_id=b, ds=2024-01-01"):
        validate_frame(dup, "df", "MS", missing="mask")
    neg = df.assign(y=df["y"].where(df.index != 5, -3.0))
    with pytest.raises(ValueError, match=r"negative .* unique_id=b, ds=2024-02-01"):
        validate_frame(neg, "df", "MS", missing="mask")
    hist = validate_frame(df, "df", "MS", missing="mask")
    futr = future_dates(hist.groupby("unique_id")["ds"].max(), 2, "MS")
    futr["price"] = [1.0, np.nan, 2.0, 3.0]
    with pytest.raises(
        ValueError, match=r"futr_df: column 'price' has 1 NaN .*unique_id=a, ds=2024-08"
    ):
        validate_futr(futr, hist, 2, "MS", ["price"])
