"""An ASGI fast path for the hottest read: ``GET /v1/products/{id}/similar``.

Recommendations are precomputed, so a valid request is a dictionary lookup of bytes already
serialised (:meth:`shopml.serve.visual.SimilarLookup.json_bytes`). This middleware answers exactly
those requests before FastAPI's routing, validation and serialisation run (most of the cost at
thousands of requests a second on two cores). Anything else -- a malformed id or ``k``, an unknown
product, a missing artefact -- falls through to the documented FastAPI route, which owns every error
message; so both paths give the same answers, and the route stays in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from shopml.serve.schemas import MAX_K

PREFIX, SUFFIX = "/v1/products/", "/similar"
DEFAULT_K = 10


class SimilarFastPath:
    def __init__(self, app: Any) -> None:
        self.app = app

    def _body(self, scope: dict[str, Any]) -> bytes | None:
        path = scope["path"]
        pid = path[len(PREFIX) : -len(SUFFIX)]
        if not pid.isdigit() or len(pid) > 18:
            return None
        k = DEFAULT_K
        if scope["query_string"]:
            query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            if set(query) - {"k"} or len(query.get("k", ())) > 1:
                return None
            if "k" in query:
                if not query["k"][0].isdigit():
                    return None
                k = int(query["k"][0])
        state = scope["app"].state
        lookup = getattr(getattr(state, "artefacts", None), "similar", None)
        if lookup is None or not 1 <= k <= MAX_K:
            return None
        try:
            return lookup.json_bytes(int(pid), k)
        except LookupError:
            return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"].startswith(PREFIX)
            and scope["path"].endswith(SUFFIX)
        ):
            body = self._body(scope)
            if body is not None:
                await send({
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                })  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
