"""Visual recommendations: top-K visually similar products for every catalog item, precomputed.

For each item, the index is searched in batches (within the item's category when ``categories`` are
given) for enough neighbours; walking them best first, a neighbour is dropped when it is the item or
a near-duplicate of it (same ``style_id``: colour variants and re-listings; or a cosine similarity
at or above ``dup_threshold``), or a near-duplicate of a product already kept (a style already in
the list: at most one product per style; or a cosine at or above ``dup_threshold`` with a kept
product: pixel-identical listings of two sellers collapse into one). The first K kept remain. The result
is a dense table: row ``r`` holds the recommendations of ``product_ids[r]``, so a lookup is one
dictionary probe plus one row read (constant time), the way the paper serves 2K requests a second.

Files: ``recs.parquet`` (long format: product_id, rank, rec_id, score) and, beside it,
``recs.npz`` (product_ids (n,), rec_ids (n, K) int64 with -1 padding, scores (n, K) float32) which
``Recommendations.load`` maps for lookups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shopml.common.io import atomic_path, write_parquet


@dataclass
class Recommendations:
    """Precomputed recommendations with constant-time lookup by product id."""

    product_ids: np.ndarray  # (n,) int64
    rec_ids: np.ndarray  # (n, K) int64, -1 padded
    scores: np.ndarray  # (n, K) float32

    def __post_init__(self) -> None:
        self._row = {int(p): r for r, p in enumerate(self.product_ids.tolist())}

    @property
    def k(self) -> int:
        return int(self.rec_ids.shape[1])

    def lookup(self, product_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(rec_ids, scores) of one product, padding (-1) removed.

        Raises:
            ValueError: when the product is not in the table.
        """
        row = self._row.get(int(product_id))
        if row is None:
            raise ValueError(f"product_id: expected a catalog product, found unknown {product_id}")
        ids = self.rec_ids[row]
        keep = ids >= 0
        return ids[keep], self.scores[row][keep]

    def to_frame(self) -> pd.DataFrame:
        n, k = self.rec_ids.shape
        frame = pd.DataFrame(
            {
                "product_id": np.repeat(self.product_ids, k),
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n),
                "rec_id": self.rec_ids.reshape(-1),
                "score": self.scores.reshape(-1),
            }
        )
        return frame[frame["rec_id"] >= 0].reset_index(drop=True)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (parquet, long format) and ``path`` with suffix .npz (dense arrays)."""
        path = Path(path)
        write_parquet(path, self.to_frame())
        with atomic_path(path.with_suffix(".npz")) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, product_ids=self.product_ids, rec_ids=self.rec_ids, scores=self.scores)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recommendations:
        path = Path(path)
        npz = path.with_suffix(".npz")
        if npz.is_file():
            data = np.load(npz)
            return cls(data["product_ids"], data["rec_ids"], data["scores"])
        if not path.is_file():
            raise ValueError(f"recommendations: expected {path} or {npz}, found neither")
        frame = pd.read_parquet(path)
        pids = np.unique(frame["product_id"].to_numpy())
        k = int(frame["rank"].max()) if len(frame) else 0
        rec = np.full((len(pids), k), -1, np.int64)
        sc = np.full((len(pids), k), -np.inf, np.float32)
        rows = np.searchsorted(pids, frame["product_id"].to_numpy())
        rec[rows, frame["rank"].to_numpy() - 1] = frame["rec_id"].to_numpy()
        sc[rows, frame["rank"].to_numpy() - 1] = frame["score"].to_numpy()
        return cls(pids, rec, sc)


def recommend_all(
    index,
    embeddings: np.ndarray,
    product_ids: np.ndarray,
    style_ids: np.ndarray | None = None,
    k: int = 10,
    dup_threshold: float | None = 0.995,
    batch_size: int = 1024,
    extra: int | None = None,
    categories: np.ndarray | None = None,
) -> Recommendations:
    """Top-k visually similar products for every item: the item, its near-duplicates and
    near-duplicates among the recommendations themselves removed.

    Args:
        index: a ``VectorIndex`` holding the catalog (ids = product ids).
        embeddings: (n, d) float32 unit vectors of the items to recommend for.
        product_ids: (n,) int64 ids of those items.
        style_ids: (n,) int64 style of each item (same style = near-duplicate: at most one product
            per style, never the item's own); None: no style rule. Styles of neighbours are looked
            up among these items.
        k: recommendations per item.
        dup_threshold: cosine similarity at or above which two products are near-duplicates, of
            the item or of each other (None: no threshold rule).
        batch_size: queries per index search.
        extra: neighbours fetched beyond k to survive the filtering (default: k times the largest
            style, + 10).
        categories: (n,) category of each item: recommend within the item's category (the
            service's default); None: across categories.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int, found {k!r}")
    product_ids = np.asarray(product_ids, dtype=np.int64)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if len(embeddings) != len(product_ids):
        raise ValueError(
            f"embeddings: expected {len(product_ids)} rows (one per product), found {len(embeddings)}"
        )
    if len(product_ids) == 0:
        raise ValueError("product_ids: expected at least one catalog item, found none")
    style_of: dict[int, int] = {}
    biggest = 1
    if style_ids is not None:
        style_ids = np.asarray(style_ids, dtype=np.int64)
        if len(style_ids) != len(product_ids):
            raise ValueError(
                f"style_ids: expected {len(product_ids)} (one per product), found {len(style_ids)}"
            )
        style_of = dict(zip(product_ids.tolist(), style_ids.tolist(), strict=True))
        biggest = int(pd.Series(style_ids).value_counts().max())
    row_of = {p: r for r, p in enumerate(product_ids.tolist())}
    fetch = k + (extra if extra is not None else k * biggest + 10)
    rec = np.full((len(product_ids), k), -1, np.int64)
    sc = np.full((len(product_ids), k), -np.inf, np.float32)
    groups = (
        [(None, np.arange(len(product_ids)))]
        if categories is None
        else [(c, np.nonzero(np.asarray(categories) == c)[0]) for c in np.unique(categories)]
    )
    for cat, rows_all in groups:
        for s in range(0, len(rows_all), batch_size):
            rows = rows_all[s : s + batch_size]
            scores, ids = index.search(embeddings[rows], fetch, category=cat)
            for r, row_ids, row_scores in zip(rows, ids, scores, strict=True):
                kept = _distinct(
                    int(product_ids[r]), row_ids, row_scores, k, style_of, row_of, embeddings,
                    dup_threshold,
                )  # fmt: skip
                for out, (i, score) in enumerate(kept):
                    rec[r, out], sc[r, out] = i, score
    return Recommendations(product_ids, rec, sc)


def _distinct(
    me: int,
    ids: np.ndarray,
    scores: np.ndarray,
    k: int,
    style_of: dict[int, int],
    row_of: dict[int, int],
    embeddings: np.ndarray,
    dup_threshold: float | None,
) -> list[tuple[int, float]]:
    """The first ``k`` neighbours that are neither the item's near-duplicates nor each other's."""
    kept: list[tuple[int, float]] = []
    styles = {style_of.get(me)} - {None}
    kept_rows: list[int] = []
    for i, score in zip(ids.tolist(), scores.tolist(), strict=True):
        if i < 0 or i == me:
            continue
        if dup_threshold is not None and score >= dup_threshold:
            continue
        style = style_of.get(i)
        if style is not None and style in styles:
            continue
        row = row_of.get(i)
        if (
            dup_threshold is not None
            and row is not None
            and kept_rows
            and float((embeddings[kept_rows] @ embeddings[row]).max()) >= dup_threshold
        ):
            continue
        kept.append((i, score))
        if style is not None:
            styles.add(style)
        if row is not None:
            kept_rows.append(row)
        if len(kept) == k:
            break
    return kept
