"""Visual recommendations and visual search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response

from shopml.serve.batching import MicroBatcher
from shopml.serve.fastpath import DEFAULT_K
from shopml.serve.routes.deps import ArtefactsDep, SettingsDep
from shopml.serve.schemas import ERRORS, MAX_K, SearchResponse, SimilarResponse

router = APIRouter(tags=["visual"], responses=ERRORS)


@router.get("/products/{product_id}/similar", response_model=SimilarResponse)
async def similar(
    product_id: int,
    artefacts: ArtefactsDep,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many products")] = DEFAULT_K,
) -> Response:
    """Products that look like this one, best first: precomputed, within the product's category,
    at most one product per style, near-duplicates of each other collapsed.
    \f
    Valid requests are answered by ``shopml.serve.fastpath.SimilarFastPath`` with the same body.
    """
    lookup = artefacts.require("similar")
    return Response(lookup.json_bytes(product_id, k), media_type="application/json")


def _batcher(request: Request, searcher) -> MicroBatcher:
    batchers = request.app.state.batchers
    if "search" not in batchers:
        settings = request.app.state.settings
        batchers["search"] = MicroBatcher(
            searcher.embed_batch, settings.batch_max_size, settings.batch_max_wait_ms
        )
    return batchers["search"]


@router.post("/visual/search", response_model=SearchResponse)
async def visual_search(
    request: Request,
    artefacts: ArtefactsDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="a photo: PNG or JPEG")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many products")] = DEFAULT_K,
    category: Annotated[
        str | None, Query(description="search within this category only (GET /v1/categories)")
    ] = None,
) -> SearchResponse:
    """Find the catalog products shown in an uploaded photo (multipart field `image`); `k` and
    `category` are query parameters, as on `/similar`. Concurrent uploads share encoder passes."""
    form = await request.form()
    stray = sorted(set(form) - {"image"})
    if stray:
        raise ValueError(
            f"{stray[0]}: expected it as a query parameter (?{stray[0]}=...), found a form field"
        )
    searcher = artefacts.require("searcher")
    catalog = artefacts.require("catalog")
    if category is not None and category not in set(catalog.table["category"]):
        raise ValueError(f"category: expected one of the catalog's categories, found {category!r}")
    data = await image.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ValueError(f"image: expected at most {settings.max_upload_bytes} bytes, found more")
    if not data:
        raise ValueError("image: expected a PNG or JPEG image, found an empty upload")
    picture = searcher.decode(data)
    vector, batch_size = await _batcher(request, searcher).submit(picture)
    return SearchResponse(items=searcher.search(vector, k, category), batch_size=batch_size)
