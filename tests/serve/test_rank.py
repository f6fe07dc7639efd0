from __future__ import annotations

import pandas as pd
import pytest


def _ids(workdir):
    world = workdir / "world"
    catalog = pd.read_parquet(world / "catalog.parquet")
    events = pd.read_parquet(world / "events.parquet")
    return [int(p) for p in catalog["product_id"].iloc[:15]], int(events["user_id"].iloc[0])


def test_rank_for_a_logged_user(client, workdir):
    candidates, user = _ids(workdir)
    response = client.post("/v1/rank", json={"user_id": user, "candidates": candidates})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert sorted(i["product_id"] for i in items) == sorted(candidates)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)


def test_rank_for_an_explicit_history(client, workdir):
    candidates, _ = _ids(workdir)
    body = {"history": candidates[:3], "candidates": candidates}
    response = client.post("/v1/rank", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == len(candidates)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"user_id": 987654321, "candidates": [None]}, 422, "candidates"),
        ({"candidates": []}, 422, "candidates"),
        ({"user_id": 987654321, "candidates": "CANDS"}, 404, "no logged events"),
        ({"candidates": "CANDS"}, 400, "exactly one"),
        ({"history": [], "candidates": "CANDS"}, 422, "history"),
        ({"history": [987654321], "candidates": "CANDS"}, 404, "987654321"),
        ({"user_id": "USER", "candidates": [987654321]}, 404, "987654321"),
        ({"user_id": "USER", "candidates": list(range(2000))}, 422, "at most 1000"),
    ],
)
def test_rank_bad_input(client, workdir, body, status, needle):
    candidates, user = _ids(workdir)
    body = {
        k: (candidates if v == "CANDS" else user if v == "USER" else v) for k, v in body.items()
    }
    response = client.post("/v1/rank", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text
