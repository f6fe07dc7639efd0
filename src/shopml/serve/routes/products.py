"""Catalog products, their images and their visual recommendations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from shopml.serve.routes.deps import ArtefactsDep
from shopml.serve.schemas import ERRORS, Product, ProductPage

router = APIRouter(tags=["products"], responses=ERRORS)


def product_json(artefacts, product_id: int) -> dict:
    data = artefacts.require("catalog").get(product_id)
    data["image_url"] = f"/v1/products/{product_id}/image"
    return data


@router.get("/products", response_model=ProductPage)
async def list_products(
    artefacts: ArtefactsDep,
    category: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 24,
) -> ProductPage:
    """A page of the catalog, optionally within one category."""
    catalog = artefacts.require("catalog")
    table = catalog.table
    if category is not None:
        table = table[table["category"] == category]
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
