"""Catalog products, their images and their visual recommendations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from shopml.serve.routes.deps import ArtefactsDep
from shopml.serve.schemas import ERRORS, Product, ProductPage, SalesDay, SalesResponse

router = APIRouter(tags=["products"], responses=ERRORS)


def product_json(artefacts, product_id: int) -> dict:
    data = artefacts.require("catalog").get(product_id)
    data["image_url"] = f"/v1/products/{product_id}/image"
    return data


@router.get("/products", response_model=ProductPage)
async def list_products(
    artefacts: ArtefactsDep,
    category: Annotated[str | None, Query(description="only this category")] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="text search: every word in the title, brand or "
            "category (case-insensitive)",
        ),
    ] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 24,
) -> ProductPage:
    """A page of the catalog, optionally within one category and matching a text query."""
    catalog = artefacts.require("catalog")
    table = catalog.table
    if category is not None:
        table = table[table["category"] == category]
    if q is not None and q.strip():
        text = catalog.search_text.reindex(table.index)
        for word in q.lower().split():
            text = text[text.str.contains(word, regex=False)]
        table = table.loc[text.index]
    ids = table.index[offset : offset + limit]
    return ProductPage(
        items=[Product(**product_json(artefacts, int(i))) for i in ids], total=len(table)
    )


@router.get("/categories", response_model=list[str])
async def list_categories(artefacts: ArtefactsDep) -> list[str]:
    """Every category of the catalog, sorted."""
    return sorted(artefacts.require("catalog").table["category"].unique().tolist())


@router.get("/products/{product_id}", response_model=Product)
async def get_product(product_id: int, artefacts: ArtefactsDep) -> Product:
    """Catalog fields of one product and the URL of its image."""
    return Product(**product_json(artefacts, product_id))


@router.get("/products/{product_id}/sales", response_model=SalesResponse)
async def get_product_sales(
    product_id: int,
    artefacts: ArtefactsDep,
    days: Annotated[int, Query(ge=1, le=365, description="the last days of logged sales")] = 56,
) -> SalesResponse:
    """The product's last logged daily sales (units), oldest first: the past before a forecast."""
    rows = artefacts.require("forecaster").actuals(product_id, days)
    return SalesResponse(
        product_id=product_id,
        days=[SalesDay(ds=d.date().isoformat(), units=float(y)) for d, y in
              zip(rows["ds"], rows["y"], strict=True)],
    )  # fmt: skip


@router.get(
    "/products/{product_id}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}},
)
async def get_product_image(product_id: int, artefacts: ArtefactsDep) -> FileResponse:
    """The product's catalog image."""
    path = artefacts.require("catalog").image_path(product_id)
    if not path.is_file():
        raise LookupError(f"product_id: the image of product {product_id} is missing")
    return FileResponse(path, media_type="image/png")
