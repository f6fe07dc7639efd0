"""Regular frequencies: integer step positions, dates back from positions, seasonal periods.

Every frequency maps a date to an integer *position* so that consecutive periods differ by one;
gaps, windows, origins and horizons are then integer arithmetic, whatever the calendar:

======================  ==========================  ========  ==============================
``freq``                position of ``ds``          season    calendar features
======================  ==========================  ========  ==============================
``D``                   days since 1970-01-01       7         weekday, week of year, month
``W``, ``W-MON``..      weeks since the frame's     52        week of year, month
                        first date (any anchor)
``MS``, ``M`` / ``ME``  12 * year + month           12        month
``QS``, ``Q`` / ``QE``  4 * year + quarter          4         quarter
``H`` / ``h``           hours since the epoch       24        hour, weekday
======================  ==========================  ========  ==============================

Monthly and quarterly dates must sit on their anchor (the first day for ``MS``/``QS``, the last
day for ``M``/``Q``); daily, weekly and hourly dates must share one phase (e.g. every weekly date a
Thursday), so that windows line up across series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_FIXED = {"D": ("D", 7), "W": ("W", 52), "H": ("h", 24), "h": ("h", 24)}
_CALENDAR = {
    "D": ("weekday", "week", "month"),
    "W": ("week", "month"),
    "M": ("month",),
    "Q": ("quarter",),
    "h": ("hour", "weekday"),
}
CARDINALITY = {"weekday": 7, "week": 54, "month": 13, "quarter": 5, "hour": 24}
SUPPORTED = "D, W (any W-<DAY> anchor), MS, M/ME, QS, Q/QE, H/h"


@dataclass(frozen=True)
class Frequency:
    """A parsed frequency string (see the module docstring).

    Attributes:
        name: the string as given (passed on to statsforecast).
        kind: ``"D"``, ``"W"``, ``"M"``, ``"Q"`` or ``"h"``.
        start: for ``M``/``Q``: True when dates are period starts (``MS``/``QS``).
        season: the seasonal period in steps.
    """

    name: str
    kind: str
    start: bool
    season: int

    @property
    def calendar(self) -> tuple[str, ...]:
        return _CALENDAR[self.kind]

    @property
    def step(self) -> pd.Timedelta | None:
        """The fixed step (``None`` for months and quarters)."""
        return {
            "D": pd.Timedelta(days=1),
            "W": pd.Timedelta(days=7),
            "h": pd.Timedelta(hours=1),
        }.get(self.kind)

    @property
    def statsforecast_freq(self) -> str:
        if self.kind == "M":
            return "MS" if self.start else "ME"
        if self.kind == "Q":
            return "QS" if self.start else "QE"
        return self.name if self.kind == "W" else self.kind

    def positions(self, ds: pd.Series | pd.DatetimeIndex, name: str = "ds") -> np.ndarray:
        """Integer positions ``(N,)`` of the dates; raises when a date is off the grid."""
        idx = pd.DatetimeIndex(ds)
        if self.kind in ("M", "Q"):
            months = idx.year.to_numpy(np.int64) * 12 + idx.month.to_numpy(np.int64) - 1
            per = 3 if self.kind == "Q" else 1
            on = (months % per == 0) if self.start else (months % per == per - 1)
            on &= idx.day == 1 if self.start else idx.is_month_end
            on &= (idx.hour == 0) & (idx.minute == 0) & (idx.second == 0)
            if not on.all():
                bad = idx[~np.asarray(on)][0]
                where = "first" if self.start else "last"
                raise ValueError(
                    f"{name}: expected {self.name} dates on the {where} day of each "
                    f"{'quarter' if self.kind == 'Q' else 'month'}, found {bad}"
                )
            return months // per
        step = self.step.value
        ns = idx.asi8
        phase = ns % step
        if len(ns) and (phase != phase[0]).any():
            i = int(np.flatnonzero(phase != phase[0])[0])
            raise ValueError(
                f"{name}: expected every date on one {self.name} grid (the phase of {idx[0]}), "
                f"found {idx[i]}"
            )
        return ns // step

    def dates(self, pos: np.ndarray, phase_of: pd.Timestamp | None = None) -> pd.DatetimeIndex:
        """Dates of integer positions (inverse of :meth:`positions`; ``phase_of`` is any date of
        the grid, needed for fixed steps)."""
        pos = np.asarray(pos, np.int64)
        if self.kind in ("M", "Q"):
            per = 3 if self.kind == "Q" else 1
            months = pos * per + (0 if self.start else per - 1)
            first = pd.to_datetime(
                {"year": months // 12, "month": months % 12 + 1, "day": np.ones_like(months)}
            )
            idx = pd.DatetimeIndex(first)
            return idx if self.start else idx + pd.offsets.MonthEnd(0)
        step = self.step.value
        phase = 0 if phase_of is None else pd.Timestamp(phase_of).value % step
        return pd.DatetimeIndex(pos * step + phase)


def parse_freq(freq: str, name: str = "freq") -> Frequency:
    """Parse a pandas-style frequency string; raises a ValueError naming the supported ones."""
    if not isinstance(freq, str):
        raise ValueError(f"{name}: expected a frequency string ({SUPPORTED}), found {freq!r}")
    f = freq.strip()
    if f in _FIXED:
        kind, season = _FIXED[f]
        return Frequency(f, kind, False, season)
    if f.startswith("W-") and f[2:] in ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"):
        return Frequency(f, "W", False, 52)
    if f in ("MS", "M", "ME"):
        return Frequency(f, "M", f == "MS", 12)
    if f in ("QS", "QS-JAN", "Q", "QE", "Q-DEC", "QE-DEC"):
        return Frequency(f, "Q", f.startswith("QS"), 4)
    raise ValueError(f"{name}: expected one of {SUPPORTED}, found {freq!r}")


def calendar_codes(ds: pd.Series, freq: Frequency) -> np.ndarray:
    """``(N, len(freq.calendar))`` int64 calendar codes of the dates."""
    ds = pd.DatetimeIndex(ds)
    get = {
        "weekday": lambda: ds.weekday.to_numpy(),
        "week": lambda: ds.isocalendar().week.to_numpy(dtype=np.int64),
        "month": lambda: ds.month.to_numpy(),
        "quarter": lambda: ds.quarter.to_numpy(),
        "hour": lambda: ds.hour.to_numpy(),
    }
    return np.stack([get[c]() for c in freq.calendar], axis=1).astype(np.int64)
