"""Retrieval evaluation: the Street2Shop protocol and catalog-to-catalog same-style precision.

Street2Shop (the protocol of the paper's ``scripts/compute_recall.py``): every street photo of the
``test`` split queries the catalog; the image hits are mapped to distinct products in rank order; a
query scores a hit at k when its product is among the first k distinct products. Recall@k is the
fraction of queries with a hit, overall and per category (the query product's category).
``within_category=True`` restricts each query to its category's catalog, as the authors did.

Same-style precision: every catalog item whose style has other members queries the catalog (itself
excluded); precision@k = same-style products among the top k / min(k, other members of its style).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_KS = (1, 5, 10, 20)


def distinct_in_order(ids: np.ndarray) -> np.ndarray:
    """Drop repeats (and -1) from one ranked id list, keeping the first occurrence's order."""
    seen: set[int] = set()
    out = []
    for i in ids.tolist():
        if i < 0 or i in seen:
            continue
        seen.add(i)
        out.append(i)
    return np.asarray(out, dtype=np.int64)


def exact_search(
    queries: np.ndarray, base: np.ndarray, k: int, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (cosine for unit vectors); returns (scores, positions)."""
    import torch

    k_eff = min(k, len(base))
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    pos = np.full((len(queries), k), -1, dtype=np.int64)
    if k_eff == 0:
        return scores, pos
    b = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
    for s in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[s : s + chunk], dtype=np.float32))
        top = torch.topk(q @ b.T, k_eff, dim=1)
        scores[s : s + chunk, :k_eff] = top.values.numpy()
        pos[s : s + chunk, :k_eff] = top.indices.numpy()
    return scores, pos


def recall_at_k(
    ranked_products: Sequence[np.ndarray], truth: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Fraction of queries whose true product is among the first k distinct ranked products."""
    out = {}
    firsts = []
    for ranked, t in zip(ranked_products, truth.tolist(), strict=True):
        hits = np.nonzero(distinct_in_order(np.asarray(ranked)) == t)[0]
        firsts.append(int(hits[0]) if len(hits) else np.iinfo(np.int64).max)
    firsts_arr = np.asarray(firsts)
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(firsts_arr < k)) if len(firsts_arr) else float("nan")
    return out


def street2shop(
    model: Any,
    world_dir: str | os.PathLike,
    ks: Sequence[int] = DEFAULT_KS,
    split: str = "test",
    index: Any = None,
    within_category: bool = False,
    batch_size: int = 64,
    device: str | None = None,
    catalog_embeddings: np.ndarray | None = None,
    style_k: int = 5,
) -> dict[str, Any]:
    """Street-to-shop recall@k (overall and per category) plus catalog same-style precision.

    Args:
        model: a ``VisNet`` (anything with ``embed(images) -> (n, d)`` unit vectors).
        world_dir: the world (or user's catalog) directory.
        ks: cut-offs.
        split: which street photos query: ``test`` (default), ``train`` or ``all`` (``all`` does
            not need a ``split`` column: a user's own photos may have none).
        index: a ``VectorIndex`` over the catalog's product ids; None: exact search.
        within_category: search only the query product's category.
        catalog_embeddings: (n_catalog, d) precomputed catalog embeddings in catalog order.
        style_k: k of the same-style precision.

    Returns:
        {"queries", "recall@k"..., "per_category": {cat: {...}}, "style_precision@k", ...}
    """
    from shopml.visual.data import read_catalog, read_street

    if not ks or min(ks) < 1:
        raise ValueError(f"ks: expected positive cut-offs, found {list(ks)}")
    catalog = read_catalog(world_dir)
    street = read_street(world_dir, catalog, split)
    if len(street) == 0:
        raise ValueError(f"street: expected photos in split {split!r}, found none")
    kmax = max(ks)
    cat_emb = (
        catalog_embeddings
        if catalog_embeddings is not None
        else model.embed(list(catalog["image"]), batch_size=batch_size, device=device)
    )
    q_emb = model.embed(list(street["image"]), batch_size=batch_size, device=device)
    pid = catalog["product_id"].to_numpy()
    category_of = dict(zip(catalog["product_id"], catalog["category"], strict=True))
    q_cats = np.array([category_of[p] for p in street["product_id"]])
    ranked = np.full((len(street), kmax), -1, dtype=np.int64)
    if within_category:
        for cat in np.unique(q_cats):
            rows = np.nonzero(q_cats == cat)[0]
            if index is not None:
                _, ids = index.search(q_emb[rows], kmax, category=cat)
                ranked[rows] = ids
            else:
                members = np.nonzero(catalog["category"].to_numpy() == cat)[0]
                _, pos = exact_search(q_emb[rows], cat_emb[members], kmax)
                ranked[rows] = np.where(pos >= 0, pid[members][np.maximum(pos, 0)], -1)
    elif index is not None:
        _, ranked = index.search(q_emb, kmax)
    else:
        _, pos = exact_search(q_emb, cat_emb, kmax)
        ranked = np.where(pos >= 0, pid[np.maximum(pos, 0)], -1)
    truth = street["product_id"].to_numpy()
    result: dict[str, Any] = {"queries": int(len(street)), "split": split}
    result["within_category"] = within_category
    result.update(recall_at_k(list(ranked), truth, ks))
    result["per_category"] = {}
    for cat in sorted(np.unique(q_cats)):
        rows = np.nonzero(q_cats == cat)[0]
        per = {"queries": int(len(rows))}
        per.update(recall_at_k(list(ranked[rows]), truth[rows], ks))
        result["per_category"][str(cat)] = per
    result.update(style_precision(catalog, cat_emb, style_k))
    return result


def style_precision(catalog: pd.DataFrame, embeddings: np.ndarray, k: int = 5) -> dict[str, Any]:
    """Catalog-to-catalog precision of same-style retrieval (item itself excluded)."""
    style = catalog["style_id"].to_numpy()
    counts = pd.Series(style).value_counts()
    others = counts.reindex(style).to_numpy() - 1
    rows = np.nonzero(others > 0)[0]
    if len(rows) == 0:
        return {f"style_precision@{k}": float("nan"), "style_queries": 0}
    _, pos = exact_search(embeddings[rows], embeddings, k + 1)
    precisions = []
    for r, hits in zip(rows.tolist(), pos, strict=True):
        hits = [h for h in hits.tolist() if h >= 0 and h != r][:k]
        same = sum(style[h] == style[r] for h in hits)
        precisions.append(same / min(k, others[r]))
    return {f"style_precision@{k}": float(np.mean(precisions)), "style_queries": int(len(rows))}
