"""Users and their two-stage feed (candidates from the history, ordered by the ranking model)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from shopml.serve.routes.deps import ArtefactsDep
from shopml.serve.schemas import (
    ERRORS,
    MAX_K,
    FeedItem,
    FeedResponse,
    ProductRef,
    UserSummary,
)
from shopml.serve.visual import scored_item

router = APIRouter(tags=["feed"], responses=ERRORS)


@router.get("/users", response_model=list[UserSummary])
async def list_users(
    artefacts: ArtefactsDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> list[UserSummary]:
    """Users with logged events, the most active first."""
    users = artefacts.require("feed").users()[offset : offset + limit]
    return [UserSummary(user_id=u, events=n) for u, n in users]


@router.get("/users/{user_id}/feed", response_model=FeedResponse)
async def feed(
    user_id: int,
    artefacts: ArtefactsDep,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many products")] = 24,
) -> FeedResponse:
    """A feed for a logged user: candidates from the look-alikes of their recent items,
    co-interactions in the events and their categories' best sellers, ordered by the ranking
    model. Each item says which source(s) proposed it and because of which history items."""
    generator = artefacts.require("feed")
    ranker = artefacts.require("ranker")
    catalog = artefacts.require("catalog")
    history, candidates = generator.candidates(user_id)
    ids = [c.product_id for c in candidates]
    scores = await asyncio.to_thread(ranker.score, ids, user_id) if ids else []
    order = sorted(range(len(ids)), key=lambda i: -scores[i])[:k]
    items = [
        FeedItem(
            **scored_item(catalog, ids[i], float(scores[i])),
            sources=candidates[i].sources,
            because=candidates[i].because,
        )
        for i in order
    ]
    refs = []
    for pid in history:
        item = scored_item(catalog, pid, 0.0)
        item.pop("score")
        refs.append(ProductRef(**item))
    return FeedResponse(user_id=user_id, history=refs, candidates=len(ids), items=items)
