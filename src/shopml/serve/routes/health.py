"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from shopml.serve.routes.deps import ArtefactsDep
from shopml.serve.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/ready", response_model=Ready)
async def ready(artefacts: ArtefactsDep) -> Ready:
    """True once every artefact is loaded; otherwise the reason for each missing one."""
    return Ready(ready=not artefacts.missing, missing=dict(artefacts.missing))
