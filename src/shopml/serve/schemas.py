"""Request and response models of the HTTP API (they define the OpenAPI schema).

Every limit the service enforces is here, in the schema, so ``/docs`` shows it: :data:`MAX_K`,
:data:`MAX_HORIZON`, :data:`MAX_IDS` and :data:`MAX_PRODUCT_DAYS`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100  # results of one visual search or recommendation lookup
MAX_HORIZON = 90  # days of one forecast
MAX_IDS = 1000  # product ids in one forecast or ranking request (candidates, history)
MAX_PRODUCT_DAYS = 10_000  # products x horizon of one forecast (docs/service.md: its time)


class FieldError(BaseModel):
    loc: str = Field(description="where: body.horizon, query.k, form.image, ...")
    msg: str = Field(description="what was expected")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every 4xx and 5xx answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "about:blank",
                    "title": "Bad Request",
                    "status": 400,
                    "detail": "horizon: the calendar is known up to 2024-12-31, found a request "
                    "reaching 2025-01-30",
                    "instance": "/v1/forecast",
                }
            ]
        }
    )

    type: str = Field(default="about:blank", description="always about:blank: see title")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what was wrong: the argument, the expectation, the value")
    instance: str = Field(description="the request path")
    errors: list[FieldError] | None = Field(
        default=None, description="422 only: every field that failed validation"
    )


def _problem(description: str) -> dict:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"model": Problem, "description": description,
            "content": {"application/problem+json": {"schema": schema}}}  # fmt: skip


ERRORS = {
    400: _problem("invalid argument (a limit, a value the data cannot serve)"),
    404: _problem("unknown product or user"),
    422: _problem("the request does not match the schema (a type, a range, a missing field)"),
    503: _problem("the artefact this endpoint needs is not loaded (see /ready)"),
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
    total: int = Field(description="products matching the filters (all pages)")


class SalesDay(BaseModel):
    ds: str = Field(description="the date, YYYY-MM-DD")
    units: float = Field(description="units sold")


class SalesResponse(BaseModel):
    product_id: int
    days: list[SalesDay]


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
    day: int = Field(ge=0, lt=MAX_HORIZON, description="0-based day of the horizon")
    price: float | None = Field(default=None, gt=0, description="the selling price that day")
    promo: bool | None = Field(default=None, description="a promotion runs that day")


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"product_ids": [75], "horizon": 28},
                {
                    "product_ids": [75, 284],
                    "horizon": 14,
                    "plan": {"75": [{"day": 0, "price": 9.5, "promo": True}]},
                },
            ]
        }
    )

    product_ids: list[int] = Field(
        min_length=1,
        max_length=MAX_IDS,
        description=f"products to forecast; at most {MAX_PRODUCT_DAYS:,} products x horizon days "
        "in one request",
    )
    horizon: int = Field(ge=1, le=MAX_HORIZON, description="days to forecast")
    plan: dict[int, list[PlanDay]] | None = Field(
        default=None,
        description="optional price / promotion plan per product id; days it leaves open keep the "
        "list price and no promotion",
    )


class ForecastDay(BaseModel):
    ds: str = Field(description="the date, YYYY-MM-DD")
    mean: float = Field(description="expected units sold")
    q10: float = Field(description="10% quantile of units sold")
    q50: float = Field(description="median")
    q90: float = Field(description="90% quantile")


class ForecastSeries(BaseModel):
    product_id: int
    days: list[ForecastDay]


class ForecastResponse(BaseModel):
    series: list[ForecastSeries]


class RankRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"user_id": 3, "candidates": [12, 75, 284, 1033]},
                {"history": [75, 80], "candidates": [12, 75, 284, 1033]},
            ]
        }
    )

    user_id: int | None = Field(default=None, description="a user with logged events")
    history: list[int] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IDS,
        description="or: product ids the user clicked, oldest first",
    )
    candidates: list[int] = Field(min_length=1, max_length=MAX_IDS)


class RankResponse(BaseModel):
    items: list[ScoredProduct]


class UserSummary(BaseModel):
    user_id: int
    events: int = Field(description="logged events of the user")


class ProductRef(BaseModel):
    product_id: int
    title: str | None = None
    category: str | None = None
    image_url: str


class FeedItem(ScoredProduct):
    sources: list[str] = Field(
        description="why it is a candidate: looks_like (a look-alike of a history item), "
        "also_viewed (others who interacted with a history item did with this), popular (among "
        "the most popular of a category of the history)"
    )
    because: list[int] = Field(description="the history product ids that led to it")


class FeedResponse(BaseModel):
    user_id: int
    history: list[ProductRef] = Field(description="the user's recent items, most recent first")
    candidates: int = Field(description="candidates the ranking model scored")
    items: list[FeedItem] = Field(description="the best k candidates, best first")
