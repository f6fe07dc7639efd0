"""One error body for every 4xx and 5xx: RFC 9457 problem details (``application/problem+json``).

``{"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "horizon: expected at
most 90, found 120", "instance": "/v1/forecast"}``; a request that fails validation adds
``errors``, one ``{"loc", "msg"}`` per problem. Bodies never echo the input back (a 1,001-id list,
an upload's Python repr): ``detail`` names the argument, what was expected and what was found.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from shopml.serve.artefacts import ArtefactMissing
from shopml.serve.schemas import FieldError

MEDIA_TYPE = "application/problem+json"
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
MAX_DETAIL = 500  # characters; a message built from a huge input is cut, never echoed whole


def problem(request: Request, status: int, detail: str, **extra: Any) -> JSONResponse:
    """A problem-details response for ``status`` with ``detail``."""
    detail = _REPR.sub("an object", detail)
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 1] + "…"
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _clean(message: str) -> str:
    """pydantic's message without its prefix and Python reprs (``<class 'str'>`` -> ``str``)."""
    message = message.removeprefix("Value error, ")
    message = re.sub(r"<class '([\w.]+)'>", r"\1", message)
    if message.startswith("Expected UploadFile"):
        message = "expected a file upload (multipart), found a text field"
    return _REPR.sub("an object", message)


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    """pydantic's errors without their ``input`` (which may be huge or a Python object)."""
    out = []
    for error in exc.errors():
        message = _clean(str(error.get("msg", "invalid value")))
        if error.get("type") == "missing":
            message = "required, found nothing"
        out.append(FieldError(loc=_location(tuple(error.get("loc", ()))), msg=message))
    return out


def install(app: FastAPI) -> None:
    """Answer every error the app can raise with a problem-details body, and say so in the schema
    (error responses documented as ``application/problem+json`` only)."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for code, response in operation.get("responses", {}).items():
                        if code.startswith(("4", "5")) and MEDIA_TYPE in response.get(
                            "content", {}
                        ):
                            response["content"].pop("application/json", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ValueError)
    async def _bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return problem(request, 400, str(exc))

    @app.exception_handler(LookupError)
    async def _not_found(request: Request, exc: LookupError) -> JSONResponse:
        return problem(request, 404, str(exc.args[0] if exc.args else exc))

    @app.exception_handler(ArtefactMissing)
    async def _missing(request: Request, exc: ArtefactMissing) -> JSONResponse:
        return problem(request, 503, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:5])
        if len(errors) > 5:
            detail += f"; and {len(errors) - 5} more"
        return problem(request, 422, detail, errors=[e.model_dump() for e in errors[:20]])

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.url.path}"
        response = problem(request, exc.status_code, detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
