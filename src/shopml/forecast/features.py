"""Calendar and causal ("associative") features, fitted once and stored in the checkpoint.

Every step ``t`` of every series gets:

* real features (``(N, F)`` float32), all known in advance for the forecast horizon:
  ``price_rel = log(price / reference price)`` (the reference price is the product's list price
  from ``static_df["price"]`` when given, else the median selling price of its training history),
  ``price_chg = log(price_t / price_{t-1})`` (this period's change: a cut, or the end of one) and
  ``price_reg = log(price_t / max(price over the previous PRICE_WINDOW periods))`` (the cut below
  the recent regular price), both computed for history and horizon steps alike (the horizon's
  reads the history's last prices: :func:`dynamic_features` ``history=``); the three are divided
  by their training standard deviation (a typical cut of 20% is then about 1, the scale of the
  0/1 promotion flags, not 0.2 next to embeddings of unit scale),
  ``discount``, ``promo``, ``is_festival``, ``is_holiday`` as they are,
  ``days_to_event`` / ``days_since_event`` clipped to ``[0, 30]`` and divided by 30 (plus a flag
  "within 7 days"), and any other numeric covariate standardised with training mean and std;
* for daily data, ``year_sin`` / ``year_cos``: the date's phase in the year
  (:func:`annual_features`);
* categorical features (``(N, C)`` int64, 0 = unknown): the frequency's calendar codes (weekday,
  week of year, month, quarter, hour: see ``frequency.py``) and every string covariate (``event``: the event name) through a vocabulary learned at fit time.

Static attributes (``static_df``): string columns become categorical codes (embedded by the model),
numeric ones become standardised reals (``log1p`` first when non-negative, e.g. list price).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shopml.forecast.frequency import CARDINALITY, calendar_codes, parse_freq

PASS_THROUGH = ("discount", "promo", "is_festival", "is_holiday", "deal", "feat")
DAYS_COLS = ("days_to_event", "days_since_event")
DAYS_CAP = 30.0
PRICE_WINDOW = 8  # periods of the "regular price" (running maximum) behind ``price_reg``
ANNUAL_NAMES = ("year_sin", "year_cos")
ANNUAL_KINDS = ("D",)  # daily data only: on weekly Dominick's OJ they cost 0.010 wQL (README)


def _is_categorical(s: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def _key(uid: Any) -> str:
    return str(uid)


@dataclass
class FeatureSpec:
    """Everything learned from the training frame to turn raw columns into model inputs."""

    freq: str
    numeric_cols: list[str] = field(default_factory=list)
    cat_cols: list[str] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    std: dict[str, list[float]] = field(default_factory=dict)
    ref_price: dict[str, float] = field(default_factory=dict)
    global_ref_price: float = 1.0
    static_cat_cols: list[str] = field(default_factory=list)
    static_real_cols: list[str] = field(default_factory=list)
    static_vocab: dict[str, list[str]] = field(default_factory=dict)
    static_std: dict[str, list[float]] = field(default_factory=dict)
    static_log: list[str] = field(default_factory=list)
    price_lags: bool = False  # ``price_chg`` / ``price_reg`` (False in checkpoints before them)
    price_scale: list[float] = field(default_factory=list)  # std of each price feature ([]: 1)
    annual: bool = False  # ``year_sin`` / ``year_cos`` (False in checkpoints before them)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**d)

    # ----------------------------------------------------------------------------------------
    @property
    def calendar_cardinalities(self) -> list[int]:
        """Sizes of the frequency's calendar categoricals (e.g. weekday, week, month for D)."""
        return [CARDINALITY[c] for c in parse_freq(self.freq).calendar]

    @property
    def cat_cardinalities(self) -> list[int]:
        return self.calendar_cardinalities + [len(self.vocab[c]) + 1 for c in self.cat_cols]

    @property
    def real_names(self) -> list[str]:
        names = []
        for c in self.numeric_cols:
            if c == "price":
                names += (
                    ["price_rel", "price_chg", "price_reg"] if self.price_lags else ["price_rel"]
                )
            elif c in DAYS_COLS:
                names += [c, f"{c}_le7"]
            else:
                names.append(c)
        return names + (list(ANNUAL_NAMES) if self.annual else [])

    @property
    def num_real(self) -> int:
        return len(self.real_names)

    @property
    def static_cardinalities(self) -> list[int]:
        return [len(self.static_vocab[c]) + 1 for c in self.static_cat_cols]


def fit_feature_spec(
    df: pd.DataFrame, freq: str, static_df: pd.DataFrame | None = None
) -> FeatureSpec:
    """Learn vocabularies, standardisation and reference prices from a validated training frame."""
    spec = FeatureSpec(freq=freq, annual=parse_freq(freq).kind in ANNUAL_KINDS)
    for col in df.columns:
        if col in ("unique_id", "ds", "y"):
            continue
        if _is_categorical(df[col]):
            spec.cat_cols.append(col)
            spec.vocab[col] = sorted(df[col].astype(str).unique().tolist())
        else:
            spec.numeric_cols.append(col)
            if col not in PASS_THROUGH and col not in DAYS_COLS and col != "price":
                v = df[col].to_numpy(np.float64)
                spec.std[col] = [float(v.mean()), float(v.std() + 1e-8)]
    if "price" in spec.numeric_cols:
        if static_df is not None and "price" in static_df.columns:
            ref = static_df.set_index("unique_id")["price"]
        else:
            ref = df.groupby("unique_id")["price"].median()
        ref = ref[ref > 0]
        spec.ref_price = {_key(k): float(v) for k, v in ref.items()}
        spec.global_ref_price = float(np.median(ref.to_numpy())) if len(ref) else 1.0
        spec.price_lags = True
        spec.price_scale = [float(f.std() + 1e-3) for f in _price_features(df, spec)]
    if static_df is not None:
        for col in static_df.columns:
            if col == "unique_id":
                continue
            s = static_df[col]
            if _is_categorical(s):
                spec.static_cat_cols.append(col)
                spec.static_vocab[col] = sorted(s.astype(str).unique().tolist())
            else:
                v = s.to_numpy(np.float64)
                if (v >= 0).all():
                    spec.static_log.append(col)
                    v = np.log1p(v)
                spec.static_real_cols.append(col)
                spec.static_std[col] = [float(v.mean()), float(v.std() + 1e-8)]
    return spec


def _codes(values: pd.Series, vocab: list[str]) -> np.ndarray:
    idx = pd.Index(vocab).get_indexer(values.astype(str))
    return (idx + 1).astype(np.int64)  # -1 (unknown) -> 0


def price_lags(uid: np.ndarray, log_price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(price_chg, price_reg)`` of rows sorted by series then date (see module docstring).

    The first row of a series has no previous price: both are 0 there (no change, at the
    regular price).
    """
    n = len(uid)
    first = np.r_[True, uid[1:] != uid[:-1]] if n else np.zeros(0, bool)
    prev = np.r_[log_price[:1], log_price[:-1]]
    chg = np.where(first, 0.0, log_price - prev)
    run = np.full(n, -np.inf)
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))  # row of the series' start
    for k in range(1, PRICE_WINDOW + 1):
        idx = np.arange(n) - k
        ok = idx >= start
        run = np.where(ok, np.maximum(run, log_price[np.maximum(idx, 0)]), run)
    reg = np.where(np.isfinite(run), log_price - run, 0.0)
    return chg, reg


def _price_features(frame: pd.DataFrame, spec: FeatureSpec) -> list[np.ndarray]:
    """``price_rel`` (and ``price_chg``, ``price_reg``) of the rows of ``frame``, unscaled."""
    uniq = pd.unique(frame["unique_id"])
    ref_u = np.array([spec.ref_price.get(_key(u), np.nan) for u in uniq], np.float64)
    ref = ref_u[pd.Index(uniq).get_indexer(frame["unique_id"])]
    ref = np.where(np.isfinite(ref), ref, spec.global_ref_price)
    log_p = np.log(np.clip(frame["price"].to_numpy(np.float64), 1e-6, None))
    out = [log_p - np.log(ref)]
    if spec.price_lags:
        out += list(price_lags(frame["unique_id"].to_numpy(), log_p))
    return out


def annual_features(ds: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(sin, cos)`` of the date's phase in the year (day of year / 365.25): a smooth annual
    position, so that a category's seasonal curve is two weights rather than 53 week codes."""
    phase = 2.0 * np.pi * (pd.DatetimeIndex(ds).dayofyear.to_numpy() - 1) / 365.25
    return np.sin(phase), np.cos(phase)


def dynamic_features(
    frame: pd.DataFrame, spec: FeatureSpec, history: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Real ``(N, F)`` float32 and categorical ``(N, C)`` int64 features of each row of ``frame``.

    ``frame`` holds ``unique_id``, ``ds`` and every covariate column of the spec (history rows or
    future rows alike), sorted by series then date. Features that read earlier periods
    (``price_chg``, ``price_reg``) read them from ``frame`` itself and, for future rows, from
    ``history`` (the periods before ``frame``'s first date of each series, sorted the same way).
    """
    if history is not None and spec.price_lags and "price" in spec.numeric_cols:
        tail = history.groupby("unique_id", sort=False).tail(PRICE_WINDOW)
        tail = tail[tail["unique_id"].isin(frame["unique_id"])]
        both = pd.concat([tail, frame], ignore_index=True)
        order = np.lexsort((both["ds"].to_numpy(), pd.factorize(both["unique_id"])[0]))
        real, cat = dynamic_features(both.iloc[order].reset_index(drop=True), spec)
        is_frame = order >= len(tail)  # rows of ``frame``, in ``frame``'s own order
        rows = order[is_frame] - len(tail)
        out_real = np.empty((len(frame), real.shape[1]), np.float32)
        out_cat = np.empty((len(frame), cat.shape[1]), np.int64)
        out_real[rows], out_cat[rows] = real[is_frame], cat[is_frame]
        return out_real, out_cat
    n = len(frame)
    reals = []
    for col in spec.numeric_cols:
        v = frame[col].to_numpy(np.float64)
        if col == "price":
            feats = _price_features(frame, spec)
            scale = spec.price_scale or [1.0] * len(feats)
            reals += [f / s for f, s in zip(feats, scale, strict=True)]
        elif col in DAYS_COLS:
            d = np.clip(v, 0.0, DAYS_CAP)
            reals += [d / DAYS_CAP, (d <= 7).astype(np.float64)]
        elif col in PASS_THROUGH:
            reals.append(v)
        else:
            mean, std = spec.std[col]
            reals.append((v - mean) / std)
    if spec.annual:
        reals += list(annual_features(frame["ds"]))
    real = np.stack(reals, axis=1).astype(np.float32) if reals else np.zeros((n, 0), np.float32)
    cats = [calendar_codes(frame["ds"], parse_freq(spec.freq))]
    for col in spec.cat_cols:
        cats.append(_codes(frame[col], spec.vocab[col])[:, None])
    return real, np.concatenate(cats, axis=1)


def static_features(
    uids: list[Any], static_df: pd.DataFrame | None, spec: FeatureSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Static categorical codes ``(S, Cs)`` int64 and reals ``(S, Fs)`` float32 of each series.

    Series missing from ``static_df`` get code 0 (unknown) and real 0 (the training mean).
    """
    s = len(uids)
    cats = np.zeros((s, len(spec.static_cat_cols)), np.int64)
    reals = np.zeros((s, len(spec.static_real_cols)), np.float32)
    if static_df is None or not (spec.static_cat_cols or spec.static_real_cols):
        return cats, reals
    table = static_df.drop_duplicates("unique_id").set_index("unique_id")
    table = table.reindex(pd.Index(uids))
    present = table.index.isin(static_df["unique_id"])
    for j, col in enumerate(spec.static_cat_cols):
        codes = _codes(table[col].fillna("\0missing"), spec.static_vocab[col])
        cats[:, j] = np.where(present, codes, 0)
    for j, col in enumerate(spec.static_real_cols):
        v = table[col].to_numpy(np.float64)
        if col in spec.static_log:
            v = np.log1p(np.clip(v, 0, None))
        mean, std = spec.static_std[col]
        reals[:, j] = np.nan_to_num((v - mean) / std, nan=0.0)
    return cats, reals
