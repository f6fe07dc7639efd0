"""The demand forecaster of a work directory (``forecast/``, an AR-MDN run) over the world's sales.

A request names products, a horizon and, optionally, a price / promotion plan per day. Covariates the
plan leaves open take their "business as usual" values: the list price (no discount) and no
promotion; calendar events come from the world's calendar, which is known in advance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (0.1, 0.5, 0.9)


@dataclass
class Forecaster:
    model: Any
    history: pd.DataFrame  # sales joined with the calendar, long format
    calendar: pd.DataFrame
    list_price: pd.Series  # product_id -> list price
    num_samples: int = 200
    chunk: int = 64  # products per model pass: bounds the memory of one request
    known: set[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.known = set(self.history["unique_id"].unique().tolist())

    def forecast(
        self, product_ids: list[int], horizon: int, plan: dict[int, list[Any]] | None = None
    ) -> pd.DataFrame:
        """Quantile forecast frame (unique_id, ds, mean, q0.1, q0.5, q0.9) for ``product_ids``.

        Products are forecast ``chunk`` at a time, so a request's memory does not grow with its
        size; each product's numbers do not depend on the others in the request.
        """
        unknown = [p for p in product_ids if p not in self.known]
        if unknown:
            raise LookupError(f"product_ids: no sales history for product(s) {unknown[:10]}")
        plan = plan or {}
        stray = sorted(set(plan) - set(product_ids))
        if stray:
            raise ValueError(f"plan: products {stray[:10]} are not among product_ids")
        for pid, days in plan.items():
            for entry in days:
                if entry.day >= horizon:
                    raise ValueError(
                        f"plan: day {entry.day} of product {pid} is outside the horizon {horizon}"
                    )
        frames = [
            self._forecast_chunk(product_ids[lo : lo + self.chunk], horizon, plan)
            for lo in range(0, len(product_ids), self.chunk)
        ]
        return pd.concat(frames, ignore_index=True)

    def _forecast_chunk(
        self, product_ids: list[int], horizon: int, plan: dict[int, list[Any]]
    ) -> pd.DataFrame:
        from shopml.forecast.data import future_dates, join_calendar

        hist = self.history[self.history["unique_id"].isin(product_ids)]
        last = hist.groupby("unique_id", sort=True)["ds"].max()
        futr = future_dates(last, horizon, self.model.config.freq)
        end = futr["ds"].max()
        if end > self.calendar["ds"].max():
            raise ValueError(
                f"horizon: the calendar is known up to {self.calendar['ds'].max().date()}, "
                f"found a request reaching {end.date()}"
            )
        futr = join_calendar(futr, self.calendar)
        base = self.list_price.reindex(futr["unique_id"]).to_numpy(dtype=np.float64)
        price = base.copy()
        promo = np.zeros(len(futr), np.int8)
        day = futr.groupby("unique_id").cumcount().to_numpy()
        row_of = {(u, d): i for i, (u, d) in enumerate(zip(futr["unique_id"], day, strict=True))}
        for pid in product_ids:
            for entry in plan.get(pid, ()):
                i = row_of[(pid, entry.day)]
                if entry.price is not None:
                    price[i] = entry.price
                if entry.promo is not None:
                    promo[i] = int(entry.promo)
        futr["price"] = price
        futr["discount"] = np.clip(1.0 - price / base, 0.0, 0.95)
        futr["promo"] = promo
        missing = [c for c in self.model.covariates if c not in futr.columns]
        if missing:
            raise ValueError(f"model: needs covariates {missing} that the service cannot supply")
        return self.model.predict(
            hist, futr, horizon, num_samples=self.num_samples, quantiles=QUANTILES
        )

    def actuals(self, product_id: int, days: int) -> pd.DataFrame:
        """The last ``days`` of logged sales of one product (ds, y), oldest first."""
        if product_id not in self.known:
            raise LookupError(f"product_id: no sales history for product {product_id}")
        rows = self.history[self.history["unique_id"] == product_id]
        return rows.sort_values("ds").tail(days)[["ds", "y"]]


def load_forecaster(workdir: Path, device: str, chunk: int = 64) -> Forecaster:
    from shopml.common.io import read_table
    from shopml.forecast.data import load_table_or_world
    from shopml.forecast.estimator import ARMDN

    run, world = workdir / "forecast", workdir / "world"
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"no forecast model at {run}")
    model = ARMDN.load(run, device=device)
    history, _ = load_table_or_world(world)
    calendar = read_table(world / "calendar.parquet", "calendar.parquet")
    catalog = read_table(world / "catalog.parquet", "catalog.parquet")
    list_price = catalog.set_index("product_id")["price"]
    return Forecaster(
        model=model, history=history, calendar=calendar, list_price=list_price, chunk=chunk
    )
