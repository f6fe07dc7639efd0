"""Probabilistic demand forecasts."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from shopml.serve.routes.deps import ArtefactsDep
from shopml.serve.schemas import (
    ERRORS,
    MAX_PRODUCT_DAYS,
    ForecastDay,
    ForecastRequest,
    ForecastResponse,
    ForecastSeries,
)

router = APIRouter(tags=["forecast"], responses=ERRORS)


@router.post("/forecast", response_model=ForecastResponse)
async def forecast(request: ForecastRequest, artefacts: ArtefactsDep) -> ForecastResponse:
    """Daily demand quantiles (10%, 50%, 90%) and mean per product over the horizon.

    A product's numbers depend on the model, the product, the horizon and its plan only, not on
    the other products of the request. At most 10,000 products x days per request.
    """
    ids = list(dict.fromkeys(request.product_ids))
    if len(ids) * request.horizon > MAX_PRODUCT_DAYS:
        raise ValueError(
            f"product_ids/horizon: expected at most {MAX_PRODUCT_DAYS:,} products x days per "
            f"request, found {len(ids):,} x {request.horizon} = {len(ids) * request.horizon:,}; "
            "split the products over several requests"
        )
    forecaster = artefacts.require("forecaster")
    frame = await asyncio.to_thread(forecaster.forecast, ids, request.horizon, request.plan)
    series = []
    for pid, rows in frame.groupby("unique_id", sort=False):
        days = [
            ForecastDay(ds=ds.date().isoformat(), mean=mean, q10=q10, q50=q50, q90=q90)
            for ds, mean, q10, q50, q90 in zip(
                rows["ds"], rows["mean"], rows["q0.1"], rows["q0.5"], rows["q0.9"], strict=True
            )
        ]
        series.append(ForecastSeries(product_id=int(pid), days=days))
    order = {pid: i for i, pid in enumerate(ids)}
    series.sort(key=lambda s: order[s.product_id])
    return ForecastResponse(series=series)
