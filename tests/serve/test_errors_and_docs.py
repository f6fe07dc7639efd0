"""One error body shape (RFC 9457 problem details) for every 4xx; docs that work offline; every
limit and a request example in the schema."""

from __future__ import annotations

import json

import pandas as pd
import pytest

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance"}


def _pid(workdir) -> int:
    return int(pd.read_parquet(workdir / "world" / "catalog.parquet")["product_id"].iloc[0])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("get", "/v1/products/999999999", {}, 404),
        ("get", "/v1/products/abc", {}, 422),
        ("get", "/v1/products?limit=0", {}, 422),
        ("get", "/v1/no-such-path", {}, 404),
        ("delete", "/v1/forecast", {}, 405),
        ("post", "/v1/forecast", {"json": {"product_ids": list(range(1001)), "horizon": 5}}, 422),
        ("post", "/v1/forecast", {"json": {"product_ids": [1], "horizon": 91}}, 422),
        ("post", "/v1/forecast", {"json": {"product_ids": [987654321], "horizon": 5}}, 404),
        ("post", "/v1/forecast", {"content": b"{not json",
                                  "headers": {"Content-Type": "application/json"}}, 422),
        ("post", "/v1/rank", {"json": {"candidates": list(range(1001)), "user_id": 1}}, 422),
        ("post", "/v1/rank", {"json": {"candidates": [1]}}, 400),
        ("post", "/v1/visual/search", {"data": {"image": "not a file"}}, 422),
        ("post", "/v1/visual/search", {"files": {"image": ("x.png", b"zz", "image/png")}}, 400),
    ],
)  # fmt: skip
def test_every_error_is_a_problem_document(client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= PROBLEM_KEYS and body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["instance"] == path.split("?")[0]
    text = response.text
    assert "object at 0x" not in text and "<class" not in text  # no Python reprs
    assert "999, 1000" not in text and "998,999" not in text  # the 1,001 ids are not echoed
    assert len(text) < 2000


def test_validation_problem_lists_fields(client):
    response = client.post("/v1/forecast", json={"product_ids": "x", "horizon": 0})
    body = response.json()
    assert {e["loc"] for e in body["errors"]} == {"body.product_ids", "body.horizon"}
    assert "body.horizon" in body["detail"]


def test_docs_and_redoc_are_served_offline(client):
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html
        src = next(part for part in html.split('"') if part.endswith(asset))
        assert src.startswith("/"), src  # a path on this server
        script = client.get(src)
        assert script.status_code == 200 and len(script.content) > 100_000
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")


def test_schema_shows_limits_examples_and_problem_bodies(client):
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["ForecastRequest"]["properties"]["horizon"]["maximum"] == 90
    assert schemas["ForecastRequest"]["properties"]["product_ids"]["maxItems"] == 1000
    assert schemas["RankRequest"]["properties"]["candidates"]["maxItems"] == 1000
    for name in ("ForecastRequest", "RankRequest"):
        assert schemas[name]["examples"], name
    for path, method in (("/v1/products/{product_id}/similar", "get"),
                         ("/v1/visual/search", "post")):  # fmt: skip
        params = {p["name"]: p for p in spec["paths"][path][method]["parameters"]}
        assert params["k"]["in"] == "query" and params["k"]["schema"]["maximum"] == 100, path
    for path, methods in spec["paths"].items():
        for operation in methods.values():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert "application/problem+json" in response["content"], (path, code)
    text = json.dumps(spec)
    assert ":class:" not in text and "``" not in text  # no Sphinx markup in descriptions
    assert "HTTPValidationError" not in schemas
