from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from shopml.serve.app import create_app
from shopml.serve.settings import Settings


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_product_fields_and_image(client, workdir):
    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet")
    pid = int(catalog["product_id"].iloc[3])
    body = client.get(f"/v1/products/{pid}").json()
    assert body["product_id"] == pid
    assert body["category"] == catalog["category"].iloc[3]
    assert body["price"] == pytest.approx(float(catalog["price"].iloc[3]))
    image = client.get(body["image_url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_product_list_and_categories(client, workdir):
    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet")
    categories = client.get("/v1/categories").json()
    assert categories == sorted(catalog["category"].unique())
    page = client.get("/v1/products", params={"category": categories[0], "limit": 5}).json()
    assert page["total"] == int((catalog["category"] == categories[0]).sum())
    assert all(p["category"] == categories[0] for p in page["items"])


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/v1/products/999999999", 404, "no product 999999999"),
        ("/v1/products/abc", 422, "product_id"),
        ("/v1/products/999999999/image", 404, "no product"),
        ("/v1/products?limit=0", 422, "limit"),
        ("/v1/products?limit=100000", 422, "limit"),
    ],
)
def test_product_errors(client, path, status, needle):
    response = client.get(path)
    assert response.status_code == status
    assert needle in response.text


def test_ready_reports_missing_artefacts(tmp_path):
    with TestClient(create_app(Settings(workdir=tmp_path))) as c:
        ready = c.get("/ready").json()
        assert ready["ready"] is False
        assert "catalog" in ready["missing"]
        response = c.get("/v1/products/1")
        assert response.status_code == 503
        assert "catalog is not available" in response.json()["detail"]
        assert response.headers["content-type"] == "application/problem+json"


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPML_WORKDIR", str(tmp_path))
    monkeypatch.setenv("SHOPML_MAX_UPLOAD_BYTES", "7")
    monkeypatch.setenv("SHOPML_ACCESS_LOG", "0")  # parsed as a bool: "0" is False
    settings = Settings.from_env()
    assert settings.workdir == tmp_path and settings.max_upload_bytes == 7
    assert settings.access_log is False
    assert Settings.from_env(device="cuda").device == "cuda"  # an explicit override wins
    monkeypatch.setenv("SHOPML_MAX_UPLOAD_BYTES", "seven")
    with pytest.raises(ValueError, match="max_upload_bytes: .*integer.*found 'seven'"):
        Settings.from_env()
    monkeypatch.delenv("SHOPML_MAX_UPLOAD_BYTES")
    monkeypatch.setenv("SHOPML_LOG_LEVEL", "loud")
    with pytest.raises(ValueError, match="log_level"):
        Settings.from_env()
    monkeypatch.delenv("SHOPML_LOG_LEVEL")
    monkeypatch.delenv("SHOPML_WORKDIR")
    with pytest.raises(ValueError, match="workdir: expected --workdir or SHOPML_WORKDIR"):
        Settings.from_env()


def test_text_search_and_paging(client, workdir):
    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet")
    word = catalog["title"].iloc[0].split()[1].lower()
    matching = catalog[catalog["title"].str.lower().str.contains(word)]
    page = client.get("/v1/products", params={"q": word.upper(), "limit": 200}).json()
    assert page["total"] == len(matching) < len(catalog)
    assert [p["product_id"] for p in page["items"]] == matching["product_id"].tolist()
    two = client.get("/v1/products", params={"q": f"{word} {catalog['category'].iloc[0]}"}).json()
    assert 0 < two["total"] <= page["total"]
    first = client.get("/v1/products", params={"limit": 5}).json()["items"]
    second = client.get("/v1/products", params={"limit": 5, "offset": 5}).json()["items"]
    assert not {p["product_id"] for p in first} & {p["product_id"] for p in second}
    assert client.get("/v1/products", params={"q": "no-such-thing-zz"}).json()["total"] == 0


def test_sales_history_of_a_product(client, workdir):
    sales = pd.read_parquet(workdir / "world" / "sales.parquet")
    pid = int(sales["unique_id"].iloc[0])
    mine = sales[sales["unique_id"] == pid].sort_values("ds").tail(14)
    body = client.get(f"/v1/products/{pid}/sales", params={"days": 14}).json()
    assert [d["ds"] for d in body["days"]] == [d.date().isoformat() for d in mine["ds"]]
    assert [d["units"] for d in body["days"]] == mine["y"].tolist()
    assert client.get("/v1/products/987654321/sales").status_code == 404
    assert client.get(f"/v1/products/{pid}/sales", params={"days": 0}).status_code == 422


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.content.startswith(b"<svg")
