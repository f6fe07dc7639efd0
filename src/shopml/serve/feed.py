"""A two-stage feed: candidates from a user's history, then the ranking model orders them.

Stage 1 (candidate generation) draws from three sources, each tied to the history items that led to
it (shown on the page as "because you viewed ..."):

- ``looks_like``: the precomputed visual look-alikes of the user's recent items;
- ``also_viewed``: co-interactions in the events -- products that other users who interacted with a
  recent item also interacted with (counted over those users' recent events);
- ``popular``: the most interacted-with products of the user's top categories.

The user's recent items themselves are left out (they are the history, not news). Stage 2 scores
the pooled candidates with the ranking model (:class:`shopml.serve.rank.Ranker`) at "now" and keeps
the best ``k``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SOURCES = ("looks_like", "also_viewed", "popular")


@dataclass
class Candidate:
    product_id: int
    sources: list[str] = field(default_factory=list)
    because: list[int] = field(default_factory=list)  # history product ids, most recent first

    def add(self, source: str, history_item: int | None) -> None:
        if source not in self.sources:
            self.sources.append(source)
        if history_item is not None and history_item not in self.because:
            self.because.append(history_item)


class CandidateGenerator:
    """Candidates for a user from the logged events, the catalog and the look-alikes.

    Args:
        events: ``user_id, product_id, ts`` (any extra columns ignored).
        categories: product_id -> category.
        lookalikes: ``product_id -> (ids, scores)`` of precomputed look-alikes (None: that source
            is off).
        recent: distinct recent items that seed the candidates.
        per_item: candidates per recent item and source.
        co_users: most recent users of an item whose events count as its co-interactions.
        co_events: recent events per such user that are counted.
    """

    def __init__(
        self,
        events: pd.DataFrame,
        categories: pd.Series,
        lookalikes: Any = None,
        recent: int = 8,
        per_item: int = 8,
        co_users: int = 200,
        co_events: int = 30,
    ) -> None:
        ordered = events.sort_values(["user_id", "ts"], kind="stable")
        users = ordered["user_id"].to_numpy(np.int64)
        items = ordered["product_id"].to_numpy(np.int64)
        bounds = np.flatnonzero(np.diff(users)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(users)]])
        self._items_of = {
            int(users[s]): items[s:e] for s, e in zip(starts, ends, strict=True) if e > s
        }  # user -> items, oldest first
        by_item = events.sort_values("ts", kind="stable").groupby("product_id")["user_id"]
        self._users_of = {int(p): u.to_numpy(np.int64)[::-1] for p, u in by_item}  # newest first
        self.categories = categories
        counts = events["product_id"].value_counts()
        frame = pd.DataFrame({"n": counts, "category": categories.reindex(counts.index)})
        self._popular = {
            str(cat): rows.sort_values("n", ascending=False, kind="stable").index.to_numpy()
            for cat, rows in frame.groupby("category")
        }
        self.lookalikes = lookalikes
        self.recent, self.per_item = recent, per_item
        self.co_users, self.co_events = co_users, co_events

    def users(self) -> list[tuple[int, int]]:
        """(user_id, number of events), users with the most events first."""
        sizes = [(u, len(items)) for u, items in self._items_of.items()]
        return sorted(sizes, key=lambda x: (-x[1], x[0]))

    def history(self, user_id: int) -> list[int]:
        """The user's distinct recent items, most recent first (at most ``recent``)."""
        items = self._items_of.get(int(user_id))
        if items is None:
            raise LookupError(f"user_id: no logged events for user {user_id}")
        return list(dict.fromkeys(items[::-1].tolist()))[: self.recent]

    def candidates(self, user_id: int, limit: int = 300) -> tuple[list[int], list[Candidate]]:
        """(recent history, candidates in discovery order, at most ``limit``)."""
        history = self.history(user_id)
        seen = set(history)
        pool: dict[int, Candidate] = {}

        def offer(pid: int, source: str, because: int | None) -> None:
            if pid in seen or pid < 0:
                return
            if pid not in pool:
                if len(pool) >= limit:
                    return
                pool[pid] = Candidate(pid)
            pool[pid].add(source, because)

        for item in history:
            for pid in self._lookalikes(item):
                offer(pid, "looks_like", item)
            for pid in self._also_viewed(item, exclude=int(user_id)):
                offer(pid, "also_viewed", item)
        for category, items in self._top_categories(history):
            for pid in self._popular.get(category, ())[: self.per_item * 2].tolist():
                offer(int(pid), "popular", items[0])
        return history, list(pool.values())

    def _lookalikes(self, item: int) -> list[int]:
        if self.lookalikes is None:
            return []
        try:
            ids, _ = self.lookalikes(item)
        except (LookupError, ValueError):
            return []
        return [int(i) for i in ids[: self.per_item]]

    def _also_viewed(self, item: int, exclude: int) -> list[int]:
        users = self._users_of.get(item, np.empty(0, np.int64))
        others = [u for u in dict.fromkeys(users.tolist()) if u != exclude][: self.co_users]
        counts: Counter[int] = Counter()
        for user in others:
            counts.update(set(self._items_of[user][-self.co_events :].tolist()) - {item})
        return [pid for pid, _ in counts.most_common(self.per_item)]

    def _top_categories(self, history: list[int]) -> list[tuple[str, list[int]]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for item in history:
            if item in self.categories.index:
                groups[str(self.categories.at[item])].append(item)
        return sorted(groups.items(), key=lambda kv: -len(kv[1]))[:2]
