"""Ranking candidates for a user."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from shopml.serve.routes.deps import ArtefactsDep
from shopml.serve.schemas import ERRORS, RankRequest, RankResponse, ScoredProduct
from shopml.serve.visual import scored_item

router = APIRouter(tags=["rank"], responses=ERRORS)


@router.post("/rank", response_model=RankResponse)
async def rank(request: RankRequest, artefacts: ArtefactsDep) -> RankResponse:
    """Candidates ordered by predicted click probability for a user id or an explicit history."""
    ranker = artefacts.require("ranker")
    catalog = artefacts.require("catalog")
    candidates = list(dict.fromkeys(request.candidates))
    scores = await asyncio.to_thread(ranker.score, candidates, request.user_id, request.history)
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    return RankResponse(
        items=[
            ScoredProduct(**scored_item(catalog, candidates[i], float(scores[i]))) for i in order
        ]
    )
