from __future__ import annotations

import pandas as pd
import pytest


def _pids(workdir, n=2):
    sales = pd.read_parquet(workdir / "world" / "sales.parquet")
    return [int(p) for p in sales["unique_id"].unique()[:n]]


def test_forecast_quantiles_per_day(client, workdir):
    pids = _pids(workdir)
    response = client.post("/v1/forecast", json={"product_ids": pids, "horizon": 10})
    assert response.status_code == 200, response.text
    series = response.json()["series"]
    assert [s["product_id"] for s in series] == pids
    for s in series:
        assert len(s["days"]) == 10
        for day in s["days"]:
            assert 0 <= day["q10"] <= day["q50"] <= day["q90"]
            assert day["mean"] >= 0
        dates = [d["ds"] for d in s["days"]]
        assert dates == sorted(dates) and len(set(dates)) == 10


def test_forecast_plan_changes_the_forecast(client, workdir):
    pid = _pids(workdir, 1)[0]
    base = client.post("/v1/forecast", json={"product_ids": [pid], "horizon": 5}).json()
    plan = {str(pid): [{"day": d, "price": 0.01, "promo": True} for d in range(5)]}
    planned = client.post("/v1/forecast", json={"product_ids": [pid], "horizon": 5, "plan": plan})
    assert planned.status_code == 200, planned.text
    a = [d["mean"] for d in base["series"][0]["days"]]
    b = [d["mean"] for d in planned.json()["series"][0]["days"]]
    assert a != b


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"product_ids": [987654321], "horizon": 5}, 404, "no sales history"),
        ({"product_ids": [], "horizon": 5}, 422, "product_ids"),
        ({"product_ids": [1], "horizon": 0}, 422, "horizon"),
        (
            {"product_ids": [1], "horizon": 1000},
            422,
            "body.horizon: Input should be less than or equal to 90",
        ),
        ({"product_ids": list(range(200)), "horizon": 90}, 400, "at most 10,000 products x days"),
        ({"product_ids": "x", "horizon": 5}, 422, "product_ids"),
    ],
)
def test_forecast_bad_input(client, body, status, needle):
    response = client.post("/v1/forecast", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_forecast_bad_plan(client, workdir):
    pid = _pids(workdir, 1)[0]
    for plan, needle in (
        ({str(pid): [{"day": 7, "price": 3.0}]}, "outside the horizon"),
        ({str(pid): [{"day": 99, "price": 3.0}]}, "less than 90"),
        ({"5": [{"day": 0, "price": 3.0}]}, "not among product_ids"),
        ({str(pid): [{"day": 0, "price": -3.0}]}, "price"),
    ):
        body = {"product_ids": [pid], "horizon": 5, "plan": plan}
        response = client.post("/v1/forecast", json=body)
        assert 400 <= response.status_code < 500 and needle in response.text, response.text


def test_malformed_json(client):
    response = client.post(
        "/v1/forecast", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
