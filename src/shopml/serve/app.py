"""The FastAPI application: ``create_app(settings)``; artefacts are loaded in the lifespan.

Every error a client can cause is answered with a 4xx problem-details body naming what was wrong
(:mod:`shopml.serve.problems`); an endpoint whose artefact is missing answers 503 with the reason
(see ``/ready``). ``/docs`` (Swagger UI) and ``/redoc`` are served from the files the
``fastapi-offline`` package ships, so they work without a network.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from shopml import __version__
from shopml.serve import problems
from shopml.serve.artefacts import ARTEFACTS, load_artefacts
from shopml.serve.fastpath import SimilarFastPath
from shopml.serve.routes import feed, forecast, health, products, rank, visual
from shopml.serve.settings import Settings

log = logging.getLogger("shopml.serve")


DESCRIPTION = """\
Visual search and look-alikes, demand forecasts and a ranked feed over one catalog.

Every error is an RFC 9457 problem-details body (`application/problem+json`) whose `detail` names
the argument, what was expected and what was found. Limits: `k` <= 100, `horizon` <= 90 days,
at most 1,000 ids per list and 10,000 products x days per forecast request.
"""


def create_app(settings: Settings) -> FastAPI:
    """Build the service for ``settings.workdir``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.artefacts = load_artefacts(settings)
        missing = app.state.artefacts.missing
        loaded = [n for n in ARTEFACTS if n not in missing]
        log.info("serving %s: loaded %s", settings.workdir, ", ".join(loaded) or "nothing")
        for name, reason in missing.items():
            log.warning("artefact %s unavailable: %s", name, reason)
        yield
        for batcher in getattr(app.state, "batchers", {}).values():
            await batcher.stop()

    app = FastAPIOffline(
        title="shopml",
        version=__version__,
        summary="Rank, forecast and search one product catalog.",
        description=DESCRIPTION,
        lifespan=lifespan,
        favicon_url="/favicon.ico",
    )
    app.state.settings = settings
    app.state.batchers = {}
    app.add_middleware(SimilarFastPath)

    problems.install(app)

    app.include_router(health.router)
    app.include_router(products.router, prefix="/v1")
    app.include_router(visual.router, prefix="/v1")
    app.include_router(forecast.router, prefix="/v1")
    app.include_router(rank.router, prefix="/v1")
    app.include_router(feed.router, prefix="/v1")

    static = resources.files("shopml.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(str(static / "favicon.svg"), media_type="image/svg+xml")

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from ``SHOPML_*`` variables."""
    return create_app(Settings.from_env())
