"""The ranking model of a work directory (``rank/``, a ``shopml rank train`` run) for serving.

A request gives a user id (whose logged events form the history) or an explicit history of product
ids (oldest first, taken as clicks one minute apart), and candidate product ids; the answer is the
candidates ordered by predicted click probability, scored at "now" (just after the last logged event).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Ranker:
    model: Any
    vocab: Any
    catalog: pd.DataFrame
    events: pd.DataFrame
    now: pd.Timestamp

    def score(
        self, candidates: list[int], user_id: int | None = None, history: list[int] | None = None
    ) -> np.ndarray:
        """Click probabilities of ``candidates`` (in their order)."""
        from shopml.rank.data import RankExamples, RankTables
        from shopml.rank.evaluate import predict

        if (user_id is None) == (history is None):
            raise ValueError(
                "user_id/history: expected exactly one of them, found "
                f"{'both' if user_id is not None else 'neither'}"
            )
        known = set(self.catalog["product_id"].tolist())
        unknown = [p for p in [*candidates, *(history or [])] if p not in known]
        if unknown:
            raise LookupError(f"product_id: no product(s) {unknown[:10]} in the catalog")
        if user_id is not None:
            events = self.events[self.events["user_id"].to_numpy() == user_id]
            if events.empty:
                raise LookupError(f"user_id: no logged events for user {user_id}")
            uid = user_id
        else:
            uid = -1
            n = len(history)
            events = pd.DataFrame(
                {
                    "user_id": np.full(n, uid, np.int64),
                    "product_id": np.asarray(history, np.int64),
                    "ts": self.now - pd.to_timedelta(np.arange(n, 0, -1), unit="min"),
                    "action": "click",
                }
            )
        impressions = pd.DataFrame(
            {
                "user_id": np.full(len(candidates), uid, np.int64),
                "product_id": np.asarray(candidates, np.int64),
                "ts": self.now,
                "position": np.arange(len(candidates), dtype=np.int16),
                "label": np.zeros(len(candidates), np.int8),
                "split": "test",
            }
        )
        tables = RankTables.from_frames(self.catalog, events, impressions)
        cfg = self.model.config
        examples = RankExamples.build(
            tables, self.vocab, None, cfg.max_history, cfg.num_time_buckets
        )
        return predict(self.model, examples, batch_size=max(1, len(candidates)))


def load_ranker(workdir: Path, device: str) -> Ranker:
    from shopml.common.io import read_table
    from shopml.rank.evaluate import load_run

    run, world = workdir / "rank", workdir / "world"
    if not (run / "checkpoint").is_dir():
        raise FileNotFoundError(f"no ranking model at {run}")
    model, vocab, _ = load_run(run, device=device)
    catalog = read_table(world / "catalog.parquet", "catalog.parquet")
    events = read_table(world / "events.parquet", "events.parquet")
    now = pd.Timestamp(events["ts"].max()) + pd.Timedelta(seconds=1)
    return Ranker(model=model, vocab=vocab, catalog=catalog, events=events, now=now)
