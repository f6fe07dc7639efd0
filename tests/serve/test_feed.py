"""The two-stage feed: candidates from a user's history (look-alikes, co-interactions, category
popularity), ordered by the ranking model, each with the history items that led to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopml.serve.feed import SOURCES, CandidateGenerator


def _events(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "product_id"])
    frame["ts"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="min")
    return frame


def test_candidates_from_each_source_with_reasons():
    # user 1 saw 10 then 11; user 2 saw 10 and 20; user 3 saw 11 and 21; 30 is popular in "b"
    events = _events([(2, 10), (2, 20), (3, 11), (3, 21), (4, 30), (5, 30), (6, 30),
                      (1, 10), (1, 11)])  # fmt: skip
    categories = pd.Series({10: "a", 11: "b", 20: "a", 21: "b", 30: "b", 40: "a"})
    looks = {10: (np.array([40, 11]), np.array([0.9, 0.8])), 11: (np.array([]), np.array([]))}
    gen = CandidateGenerator(events, categories, lookalikes=looks.__getitem__, per_item=5)
    history, candidates = gen.candidates(1)
    assert history == [11, 10]  # distinct, most recent first
    by_id = {c.product_id: c for c in candidates}
    assert set(by_id) == {40, 20, 21, 30}  # never a history item (11 is a look-alike of 10)
    assert by_id[40].sources == ["looks_like"] and by_id[40].because == [10]
    assert by_id[20].sources[0] == "also_viewed" and by_id[20].because == [10]
    assert by_id[21].sources[0] == "also_viewed" and by_id[21].because == [11]
    assert "popular" in by_id[30].sources and by_id[30].because == [11]
    assert gen.users()[:4] == [(1, 2), (2, 2), (3, 2), (4, 1)]  # most events first
    with pytest.raises(LookupError, match="user_id: no logged events for user 99"):
        gen.candidates(99)


def _top_users(client, n=3):
    users = client.get("/v1/users", params={"limit": n}).json()
    events = [u["events"] for u in users]
    assert events == sorted(events, reverse=True) and events[0] > 0
    return [u["user_id"] for u in users]


def test_feed_is_ranked_candidates_from_the_history(client):
    feeds = []
    for user in _top_users(client):
        response = client.get(f"/v1/users/{user}/feed", params={"k": 12})
        assert response.status_code == 200, response.text
        body = response.json()
        history = [h["product_id"] for h in body["history"]]
        items = body["items"]
        assert body["user_id"] == user and history and 0 < len(items) <= 12
        assert body["candidates"] >= len(items)
        scores = [i["score"] for i in items]
        assert scores == sorted(scores, reverse=True)
        for item in items:
            assert item["product_id"] not in history
            assert item["sources"] and set(item["sources"]) <= set(SOURCES)
            assert item["because"] and set(item["because"]) <= set(history)
        assert {s for i in items for s in i["sources"]} >= {"looks_like"}
        feeds.append([i["product_id"] for i in items])
    assert len({tuple(f) for f in feeds}) == len(feeds)  # each user gets their own feed


@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/v1/users/987654321/feed", 404, "no logged events for user 987654321"),
        ("/v1/users/1/feed?k=101", 422, "query.k"),
        ("/v1/users?limit=0", 422, "query.limit"),
    ],
)
def test_feed_errors(client, path, status, needle):
    response = client.get(path)
    assert response.status_code == status and needle in response.json()["detail"]
