"""The calendar and daily sales, calibrated to the M5 competition's measured statistics.

Noise-free mean of product i on day t (all factors multiplicative)::

    mean = base_i * dow(t) * season_c(t) * event_c(t) * life_i(t) * trend_i(t)
           * (1 - discount_it) ** elasticity_i * PROMO_LIFT ** promo_it * DEAL_LIFT ** regime_it

- base_i: lognormal with a heavy tail (M5: median product ~0.64 units/day, top 10% carry ~half).
- dow: M5's day-of-week multipliers (Sat/Sun ~1.2, Wed/Thu ~0.87).
- season_c: one annual cosine per category (amplitude and peak day in catalog.CATEGORIES).
- event_c: the multi-day autumn festival (category lift, a dip before it and a hangover after)
  and smaller events; all listed in calendar.parquet, known in advance.
- life_i: ramp-up after launch, decay over the 60 days before a delisting; no rows outside
  [launch_date, delist_date).
- discount episodes (5-40% off, Markov on/off per product; most products join the festival);
  elasticity_i ~ N(-2.5, 0.5); promo (a featured deal, inside some discount episodes) doubles demand.
- regime (hidden): "deal of the day", drawn per product-day (1% of days, 6% in the festival),
  multiplies demand by DEAL_LIFT, so the law given the observed covariates is a two-component mixture.
- noise: negative binomial (gamma-Poisson) with per-product dispersion k_i: var = m + m^2 / k_i.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopml.world.catalog import CATEGORIES, CATEGORY_NAMES

# M5 day-of-week multipliers (total units), Monday first (research/forecast.md 4.3).
DOW_FACTORS = np.array([0.970, 0.898, 0.872, 0.869, 0.985, 1.196, 1.210])
PROMO_LIFT = 2.0
DEAL_LIFT = 5.0
DEAL_P_NORMAL = 0.01
DEAL_P_FESTIVAL = 0.06
PRE_DIP_DAYS, PRE_DIP_DEPTH = 10, 0.30
HANGOVER_DAYS, HANGOVER_DEPTH = 7, 0.30
CALENDAR_LEAD_DAYS = 90
FESTIVAL = "big_billion_days"
FASHION = ("tops", "dresses", "jeans", "shoes", "bags", "sunglasses")


@dataclass(frozen=True)
class Event:
    name: str
    first: pd.Timestamp
    days: int
    is_festival: bool
    lift: dict[str, float]  # category -> multiplier on event days

    @property
    def last(self) -> pd.Timestamp:
        return self.first + pd.Timedelta(days=self.days - 1)


def events_for_year(year: int) -> list[Event]:
    """The retail events of one year (dates move a little from year to year, as festivals do)."""
    cats = CATEGORY_NAMES
    fest_lift = {c[0]: c[6] for c in CATEGORIES}
    ts = pd.Timestamp
    out = [
        Event("republic_day_sale", ts(year, 1, 24), 3, False, dict.fromkeys(cats, 1.4)),
        Event(
            "valentines",
            ts(year, 2, 12),
            3,
            False,
            {c: (1.5 if c in ("watches", "dresses", "bags") else 1.05) for c in cats},
        ),
        Event(
            "end_of_season_sale",
            ts(year, 7, 10),
            4,
            False,
            {c: (1.5 if c in FASHION else 1.1) for c in cats},
        ),
        Event(
            FESTIVAL,
            ts(year, 9, 24) + pd.Timedelta(days=(year * 37) % 14),
            5 + year % 3 + 1,
            True,
            fest_lift,
        ),
        Event(
            "diwali",
            ts(year, 10, 20) + pd.Timedelta(days=(year * 11) % 18),
            2,
            False,
            {c: (1.6 if c in ("mugs", "lamps", "watches") else 1.15) for c in cats},
        ),
    ]
    return out


def holidays_for_year(year: int) -> list[pd.Timestamp]:
    diwali = pd.Timestamp(year, 10, 20) + pd.Timedelta(days=(year * 11) % 18)
    return [
        pd.Timestamp(year, 1, 26),
        pd.Timestamp(year, 8, 15),
        pd.Timestamp(year, 10, 2),
        diwali,
        pd.Timestamp(year, 12, 25),
    ]


def event_list(start: pd.Timestamp, end: pd.Timestamp) -> list[Event]:
    """Events of every year touching [start - 1y, end + 1y], sorted by first day."""
    evs = [e for y in range(start.year - 1, end.year + 2) for e in events_for_year(y)]
    return sorted(evs, key=lambda e: e.first)


def make_calendar(start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """calendar.parquet: one row per day from ``start`` to ``end`` + CALENDAR_LEAD_DAYS."""
    days = pd.date_range(start, end + pd.Timedelta(days=CALENDAR_LEAD_DAYS), freq="D")
    n = len(days)
    event = np.full(n, "", dtype=object)
    is_fest = np.zeros(n, np.int8)
    evs = event_list(start, end)
    day_num = (days - start).days.to_numpy()
    firsts = np.array([(e.first - start).days for e in evs])
    lasts = np.array([(e.last - start).days for e in evs])
    for e, f, la in zip(evs, firsts, lasts, strict=True):
        on = (day_num >= f) & (day_num <= la)
        event[on] = e.name
        is_fest[on] = int(e.is_festival)
    # Days to the next event's first day and since the last event's last day (0 during an event).
    nxt = np.searchsorted(firsts, day_num, side="left")
    to_event = firsts[np.minimum(nxt, len(firsts) - 1)] - day_num
    prev = np.searchsorted(lasts, day_num, side="right") - 1
    since = day_num - lasts[np.maximum(prev, 0)]
    on_event = event != ""
    to_event = np.where(on_event, 0, to_event)
    since = np.where(on_event, 0, since)
    hol = {d for y in range(start.year, end.year + 2) for d in holidays_for_year(y)}
    return pd.DataFrame(
        {
            "ds": days.astype("datetime64[ns]"),
            "event": event.astype(str),
            "is_festival": is_fest,
            "is_holiday": np.array([d in hol for d in days], dtype=np.int8),
            "days_to_event": np.clip(to_event, 0, 365).astype(np.int32),
            "days_since_event": np.clip(since, 0, 365).astype(np.int32),
            "dow": days.dayofweek.to_numpy().astype(np.int8),
        }
    )


def _category_day_factors(
    days: pd.DatetimeIndex, start: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, Event]]]:
    """(season * event factors (n_cat, T), festival-day flags (T,), events as (first, last, Event))."""
    t_n = len(days)
    doy = days.dayofyear.to_numpy().astype(np.float64)
    n_cat = len(CATEGORIES)
    fac = np.ones((n_cat, t_n))
    for c, (_, _, _, _, amp, peak, _) in enumerate(CATEGORIES):
        fac[c] *= 1.0 + amp * np.cos(2 * np.pi * (doy - peak) / 365.25)
    fest_day = np.zeros(t_n, bool)
    t = np.arange(t_n)
    spans = []
    for e in event_list(days[0], days[-1]):
        f, la = (e.first - start).days, (e.last - start).days
        if la + HANGOVER_DAYS < 0 or f - PRE_DIP_DAYS >= t_n:  # no effect inside the window
            continue
        spans.append((f, la, e))
        on = (t >= f) & (t <= la)
        lift = np.array([e.lift[c] for c in CATEGORY_NAMES])
        fac[:, on] *= lift[:, None]
        if e.is_festival:
            fest_day |= on
            # Deferral before the festival, hangover after it (deepest next to the event).
            for k in range(1, PRE_DIP_DAYS + 1):
                if 0 <= f - k < t_n:
                    fac[:, f - k] *= 1 - PRE_DIP_DEPTH * (PRE_DIP_DAYS + 1 - k) / PRE_DIP_DAYS
            for k in range(1, HANGOVER_DAYS + 1):
                if 0 <= la + k < t_n:
                    fac[:, la + k] *= 1 - HANGOVER_DEPTH * (HANGOVER_DAYS + 1 - k) / HANGOVER_DAYS
    return fac, fest_day, [s for s in spans if s[1] >= 0 and s[0] < t_n]


def _discounts(
    rng: np.random.Generator, rate: np.ndarray, t_n: int, spans: list[tuple[int, int, Event]]
) -> tuple[np.ndarray, np.ndarray]:
    """Discount depth (n, T) in {0, .05, ..., .40} and promo flags (n, T): Markov episodes."""
    n = rate.size
    depth_levels = np.arange(1, 9) * 0.05
    disc = np.zeros((n, t_n), np.float64)
    promo = np.zeros((n, t_n), np.int8)
    left = np.zeros(n, np.int64)
    cur_d = np.zeros(n)
    cur_p = np.zeros(n, np.int8)
    # An event starting before the window counts as starting on day 0.
    starts = {max(f, 0): (la, e) for f, la, e in spans}
    for t in range(t_n):
        if t in starts:
            la, e = starts[t]
            join_p = 0.8 if e.is_festival else 0.3
            join = rng.random(n) < join_p
            left = np.where(join, la - t + 1, left)
            lo = 3 if e.is_festival else 1
            cur_d = np.where(join, depth_levels[rng.integers(lo, 8, size=n)], cur_d)
            p_promo = 0.35 if e.is_festival else 0.3
            cur_p = np.where(join, (rng.random(n) < p_promo).astype(np.int8), cur_p)
        new = (left == 0) & (rng.random(n) < rate)
        if new.any():
            k = int(new.sum())
            left[new] = 1 + rng.geometric(1 / 6, size=k)
            cur_d[new] = depth_levels[rng.integers(0, 8, size=k)]
            cur_p[new] = (rng.random(k) < 0.3).astype(np.int8)
        on = left > 0
        disc[:, t] = np.where(on, cur_d, 0.0)
        promo[:, t] = np.where(on, cur_p, 0)
        left = np.maximum(left - 1, 0)
    return disc, promo


def sales_chunks(
    rng_for_chunk,
    products: pd.DataFrame,
    truth: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    chunk_size: int = 2000,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Yield (sales rows, truth rows) for consecutive chunks of products, in (unique_id, ds) order.

    Args:
        rng_for_chunk: callable chunk index -> numpy Generator (so chunks are independent streams).
        products, truth: the catalog's public and hidden frames (same row order).
        start, end: the sales window (inclusive).
        chunk_size: products per chunk (bounds memory: ~chunk_size * days * 60 bytes).
    """
    days = pd.date_range(start, end, freq="D")
    t_n = len(days)
    dow = DOW_FACTORS[days.dayofweek.to_numpy()]
    cat_fac, fest_day, spans = _category_day_factors(days, start)
    cat_index = {c: i for i, c in enumerate(CATEGORY_NAMES)}
    t = np.arange(t_n)
    ds_all = days.to_numpy().astype("datetime64[ns]")
    for ci, lo in enumerate(range(0, len(products), chunk_size)):
        rng = rng_for_chunk(ci)
        p = products.iloc[lo : lo + chunk_size]
        h = truth.iloc[lo : lo + chunk_size]
        n = len(p)
        cat = p["category"].map(cat_index).to_numpy()
        launch = ((p["launch_date"] - start).dt.days).to_numpy()
        first = np.maximum(launch, 0)
        delist = p["delist_date"]
        last_excl = np.where(
            delist.isna(), t_n, ((delist - start).dt.days).fillna(t_n).to_numpy()
        ).astype(np.int64)
        age = t[None, :] - launch[:, None]
        life = 1.0 - 0.85 * np.exp(-np.maximum(age, 0) / 14.0)
        left = last_excl[:, None] - t[None, :]
        has_delist = ~delist.isna().to_numpy()
        life *= np.where(has_delist[:, None], 0.35 + 0.65 * np.clip(left / 60.0, 0, 1), 1.0)
        trend = np.exp(h["trend"].to_numpy()[:, None] * (t[None, :] - t_n / 2) / 365.0)
        disc, promo = _discounts(rng, h["discount_rate"].to_numpy(), t_n, spans)
        price_fac = (1.0 - disc) ** h["elasticity"].to_numpy()[:, None]
        base = (
            h["base_rate"].to_numpy()[:, None]
            * dow[None, :]
            * cat_fac[cat]
            * life
            * trend
            * price_fac
            * np.where(promo == 1, PROMO_LIFT, 1.0)
        )
        p_deal = np.where(fest_day, DEAL_P_FESTIVAL, DEAL_P_NORMAL)[None, :]
        regime = (rng.random((n, t_n)) < p_deal).astype(np.int8)
        mean = base * np.where(regime == 1, DEAL_LIFT, 1.0)
        k = h["dispersion"].to_numpy()[:, None]
        lam = rng.gamma(shape=np.broadcast_to(k, mean.shape), scale=mean / k)
        y = rng.poisson(lam).astype(np.float64)
        listed = (t[None, :] >= first[:, None]) & (t[None, :] < last_excl[:, None])
        rows_i, rows_t = np.nonzero(listed)
        uid = p["product_id"].to_numpy()[rows_i]
        ds = ds_all[rows_t]
        list_price = p["price"].to_numpy()[rows_i]
        d = disc[rows_i, rows_t]
        sales = pd.DataFrame(
            {
                "unique_id": uid.astype(np.int64),
                "ds": ds,
                "y": y[rows_i, rows_t],
                "price": np.round(list_price * (1.0 - d), 2),
                "discount": np.round(d, 2),
                "promo": promo[rows_i, rows_t].astype(np.int8),
            }
        )
        tr = pd.DataFrame(
            {
                "unique_id": uid.astype(np.int64),
                "ds": ds,
                "mean": mean[rows_i, rows_t],
                "regime": regime[rows_i, rows_t],
                "mean_base": base[rows_i, rows_t],
                "p_regime": np.broadcast_to(p_deal, (n, t_n))[rows_i, rows_t],
            }
        )
        yield sales, tr
