"""Request and response models of the HTTP API (they define the OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Error(BaseModel):
    detail: str | list = Field(
        description="what was wrong: the argument, the expectation, the value"
    )


ERRORS = {
    400: {"model": Error, "description": "invalid argument"},
    404: {"model": Error, "description": "unknown product or user"},
    503: {"model": Error, "description": "the artefact this endpoint needs is not loaded"},
}


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    missing: dict[str, str] = Field(description="artefact -> why it is unavailable")


class Product(BaseModel):
    model_config = ConfigDict(extra="allow")

    product_id: int
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    style_id: int | None = None
    image_url: str


class ProductPage(BaseModel):
    items: list[Product]
    total: int


class ScoredProduct(BaseModel):
    product_id: int
    score: float
    title: str | None = None
    category: str | None = None
    image_url: str


class SimilarResponse(BaseModel):
    product_id: int
    items: list[ScoredProduct]


class SearchResponse(BaseModel):
    items: list[ScoredProduct]
    batch_size: int = Field(description="how many uploads shared this encoder pass")


class PlanDay(BaseModel):
    day: int = Field(ge=0, description="0-based day of the horizon")
    price: float | None = Field(default=None, gt=0)
    promo: bool | None = None


class ForecastRequest(BaseModel):
    product_ids: list[int] = Field(min_length=1, max_length=1000)
    horizon: int = Field(ge=1, description="days to forecast")
    plan: dict[int, list[PlanDay]] | None = Field(
        default=None, description="optional price / promotion plan per product id"
    )


class ForecastDay(BaseModel):
    ds: str
    mean: float
    q10: float
    q50: float
    q90: float


class ForecastSeries(BaseModel):
    product_id: int
    days: list[ForecastDay]


class ForecastResponse(BaseModel):
    series: list[ForecastSeries]


class RankRequest(BaseModel):
    user_id: int | None = None
    history: list[int] | None = Field(default=None, description="product ids, oldest first")
    candidates: list[int] = Field(min_length=1)


class RankResponse(BaseModel):
    items: list[ScoredProduct]
