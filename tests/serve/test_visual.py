from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from PIL import Image


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_similar_stays_in_category_one_product_per_style(client, workdir):
    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet").set_index("product_id")
    for pid in catalog.index[:40]:
        items = client.get(f"/v1/products/{pid}/similar", params={"k": 10}).json()["items"]
        ids = [item["product_id"] for item in items]
        assert len(ids) >= 5
        assert set(catalog.loc[ids, "category"]) == {catalog.at[pid, "category"]}, pid
        styles = catalog.loc[ids, "style_id"].tolist()
        assert len(set(styles)) == len(styles), (pid, styles)  # no style twice


def test_similar_excludes_item_and_style(client, workdir):
    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet")
    style = dict(zip(catalog["product_id"], catalog["style_id"], strict=True))
    pid = int(catalog["product_id"].iloc[0])
    body = client.get(f"/v1/products/{pid}/similar", params={"k": 5}).json()
    assert body["product_id"] == pid
    assert 0 < len(body["items"]) <= 5
    ids = [item["product_id"] for item in body["items"]]
    assert pid not in ids and all(style[i] != style[pid] for i in ids)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"k": 0}, 422, "k"),
        ({"k": 101}, 422, "query.k: Input should be less than or equal to 100"),
        ({"k": "x"}, 422, "k"),
    ],  # fmt: skip
)
def test_similar_bad_k(client, workdir, params, status, needle):
    pid = int(pd.read_parquet(workdir / "world" / "catalog.parquet")["product_id"].iloc[0])
    response = client.get(f"/v1/products/{pid}/similar", params=params)
    assert response.status_code == status and needle in response.text


def test_similar_unknown_product(client):
    response = client.get("/v1/products/987654321/similar")
    assert response.status_code == 404 and "987654321" in response.text


def test_search_finds_the_street_photo_product(client, workdir):
    street = pd.read_parquet(workdir / "world" / "street.parquet")
    row = street.iloc[0]
    data = (workdir / "world" / row["image"]).read_bytes()
    response = client.post(
        "/v1/visual/search", files={"image": ("q.png", data, "image/png")}, params={"k": 20}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["items"]) == 20 and body["batch_size"] >= 1
    assert all(item["image_url"].startswith("/v1/products/") for item in body["items"])


def test_search_within_category_and_any_image_mode(client, workdir):
    catalog = pd.read_parquet(workdir / "world" / "catalog.parquet")
    category = str(catalog["category"].iloc[0])
    grey = Image.new("L", (300, 200), 128)
    jpeg = io.BytesIO()
    Image.new("RGB", (50, 80), (200, 10, 10)).save(jpeg, format="JPEG")
    for data in (_png(grey), jpeg.getvalue(), _png(Image.new("RGBA", (90, 90)))):
        response = client.post(
            "/v1/visual/search",
            files={"image": ("q", data, "application/octet-stream")},
            params={"k": 3, "category": category},
        )
        assert response.status_code == 200, response.text
        assert all(item["category"] == category for item in response.json()["items"])


def test_search_k_is_a_query_parameter_like_similar(client, workdir):
    street = pd.read_parquet(workdir / "world" / "street.parquet")
    data = (workdir / "world" / street["image"].iloc[0]).read_bytes()
    files = {"image": ("q.png", data, "image/png")}
    response = client.post("/v1/visual/search", files=files, params={"k": 4})
    assert response.status_code == 200 and len(response.json()["items"]) == 4
    # the old form field is refused with a pointer, not silently ignored
    response = client.post("/v1/visual/search", files=files, data={"k": "4"})
    assert response.status_code == 400
    assert "k: expected it as a query parameter (?k=...)" in response.json()["detail"]


def test_concurrent_uploads_are_batched(client, workdir):
    street = pd.read_parquet(workdir / "world" / "street.parquet")
    files = [(workdir / "world" / p).read_bytes() for p in street["image"].iloc[:12]]

    def post(data):
        return client.post("/v1/visual/search", files={"image": ("q.png", data, "image/png")})

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(post, files))
    assert all(r.status_code == 200 for r in responses)
    assert max(r.json()["batch_size"] for r in responses) > 1


@pytest.mark.parametrize(
    ("files", "params", "status", "needle"),
    [
        ({"image": ("x.png", b"not an image at all", "image/png")}, {}, 400, "undecodable"),
        ({"image": ("x.png", b"", "image/png")}, {}, 400, "empty upload"),
        ({"image": ("x.png", b"\x89PNG" + b"0" * 2_100_000, "image/png")}, {}, 400, "at most"),
        (None, {"k": "3"}, 422, "body.image: required"),
        ({"image": ("x.png", b"x", "image/png")}, {"k": "0"}, 422, "query.k"),
        ({"image": ("x.png", b"x", "image/png")}, {"k": "101"}, 422, "query.k"),
        ({"image": ("x.png", b"x", "image/png")}, {"category": "spaceships"}, 400, "category"),
    ],
)
def test_search_bad_input(client, files, params, status, needle):
    response = client.post("/v1/visual/search", files=files, params=params)
    assert response.status_code == status, response.text
    assert needle in response.text
    assert client.get("/health").status_code == 200


def test_fast_path_answers_like_the_route(workdir):
    from fastapi.testclient import TestClient

    from shopml.serve.app import create_app
    from shopml.serve.settings import Settings

    pids = pd.read_parquet(workdir / "world" / "catalog.parquet")["product_id"].iloc[:5].tolist()
    queries = [f"/v1/products/{p}/similar" for p in pids] + [
        f"/v1/products/{pids[0]}/similar?k=3",
        f"/v1/products/{pids[0]}/similar?k=100",
        f"/v1/products/{pids[0]}/similar?k=101",
        f"/v1/products/{pids[0]}/similar?k=0",
        f"/v1/products/{pids[0]}/similar?k=1&k=2",
        "/v1/products/123456789/similar",
        "/v1/products/-1/similar",
    ]
    plain = create_app(Settings(workdir=workdir))
    plain.user_middleware.clear()  # the FastAPI route alone
    with TestClient(create_app(Settings(workdir=workdir))) as fast, TestClient(plain) as slow:
        for query in queries:
            a, b = fast.get(query), slow.get(query)
            assert a.status_code == b.status_code, query
            assert a.json() == b.json(), query
