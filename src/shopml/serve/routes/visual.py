"""Visual recommendations and visual search."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from shopml.serve.batching import MicroBatcher
from shopml.serve.fastpath import DEFAULT_K
from shopml.serve.routes.deps import ArtefactsDep, SettingsDep
from shopml.serve.schemas import ERRORS, SearchResponse, SimilarResponse

router = APIRouter(tags=["visual"], responses=ERRORS)


@router.get("/products/{product_id}/similar", response_model=SimilarResponse)
async def similar(
    product_id: int,
    artefacts: ArtefactsDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=1)] = DEFAULT_K,
) -> Response:
    """Products that look like this one (precomputed; the item and its near-duplicates removed).

    Valid requests are answered by :class:`shopml.serve.fastpath.SimilarFastPath` with the same body.
    """
    if k > settings.max_k:
        raise ValueError(f"k: expected at most {settings.max_k}, found {k}")
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
    k: Annotated[int, Form(ge=1)] = 10,
    category: Annotated[str | None, Form()] = None,
) -> SearchResponse:
    """Find the catalog products shown in an uploaded photo; concurrent uploads share encoder passes."""
    if k > settings.max_k:
        raise ValueError(f"k: expected at most {settings.max_k}, found {k}")
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
