"""The FastAPI application: ``create_app(settings)``; artefacts are loaded in the lifespan.

Every error a client can cause is answered with a 4xx and a JSON ``{"detail": message}`` naming what
was wrong; an endpoint whose artefact is missing answers 503 with the reason (see ``/ready``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from shopml import __version__
from shopml.serve.artefacts import ArtefactMissing, load_artefacts
from shopml.serve.fastpath import SimilarFastPath
from shopml.serve.routes import forecast, health, products, rank, visual
from shopml.serve.settings import Settings

log = logging.getLogger("shopml.serve")


def create_app(settings: Settings) -> FastAPI:
    """Build the service for ``settings.workdir``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.artefacts = load_artefacts(settings)
        for name, reason in app.state.artefacts.missing.items():
            log.warning("artefact %s unavailable: %s", name, reason)
        yield
        for batcher in getattr(app.state, "batchers", {}).values():
            await batcher.stop()

    app = FastAPI(
        title="shopml",
        version=__version__,
        summary="Rank, forecast and search one product catalog.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.batchers = {}
    app.add_middleware(SimilarFastPath)

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(LookupError)
    async def _not_found(request: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse(
            status_code=404, content={"detail": str(exc.args[0] if exc.args else exc)}
        )

    @app.exception_handler(ArtefactMissing)
    async def _missing(request: Request, exc: ArtefactMissing) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": str(exc)})

    app.include_router(health.router)
    app.include_router(products.router, prefix="/v1")
    app.include_router(visual.router, prefix="/v1")
    app.include_router(forecast.router, prefix="/v1")
    app.include_router(rank.router, prefix="/v1")

    static = resources.files("shopml.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from ``SHOPML_*`` variables."""
    return create_app(Settings.from_env())
