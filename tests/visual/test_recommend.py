"""Visual recommendations: item and near-duplicates excluded, constant-time lookup, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from shopml.visual.index import FaissIndex
from shopml.visual.recommend import Recommendations, recommend_all


@pytest.fixture()
def catalog():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16))
    emb = np.repeat(base, 2, axis=0) + 0.05 * rng.normal(size=(80, 16))  # pairs of look-alikes
    emb[1] = emb[0] + 1e-4  # an exact near-duplicate of product 100 under another style
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids = np.arange(100, 180, dtype=np.int64)
    styles = np.arange(80) // 2  # each look-alike pair shares a style
    styles[1] = 999
    cats = np.array(["x", "y"])[np.arange(80) % 2]
    index = FaissIndex(16, "Flat")
    index.add(emb, pids, cats)
    return emb, pids, styles, cats, index


def test_recommendations_exclude_item_and_near_duplicates(catalog):
    emb, pids, styles, cats, index = catalog
    recs = recommend_all(index, emb, pids, styles, k=5, dup_threshold=0.99, batch_size=7)
    style_of = dict(zip(pids.tolist(), styles.tolist(), strict=True))
    for r, pid in enumerate(pids.tolist()):
        ids, scores = recs.lookup(pid)
        assert len(ids) == 5 and pid not in ids.tolist()
        assert all(style_of[i] != style_of[pid] for i in ids.tolist())
        assert (scores < 0.99).all() and (np.diff(scores) <= 1e-6).all()
        # the rest is the exact ranking among the allowed products, one per style
        sims = emb @ emb[r]
        allowed, seen = [], {styles[r]}
        for j in np.argsort(-sims):
            twin = any(float(emb[j] @ emb[a]) >= 0.99 for a in allowed)  # of a kept product
            if j != r and styles[j] not in seen and sims[j] < 0.99 and not twin:
                allowed.append(j)
                seen.add(styles[j])
        np.testing.assert_array_equal(ids, pids[allowed[:5]])
        rec_styles = [style_of[i] for i in ids.tolist()]
        assert len(set(rec_styles)) == len(rec_styles)  # at most one product per style
    assert 101 not in recs.lookup(100)[0].tolist()  # closer than the threshold, other style
    without_threshold = recommend_all(index, emb, pids, styles, k=5, dup_threshold=None)
    assert without_threshold.lookup(100)[0][0] == 101


def test_near_duplicates_of_each_other_collapse():
    """Two identical listings (other sellers, other styles) next to each other: one is kept."""
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 8))
    emb[11] = emb[10]  # identical pictures, different styles (no style rule catches them)
    emb[10] = emb[0] + 0.3 * emb[10] / np.linalg.norm(emb[10])  # both close to product 0
    emb[11] = emb[10]
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    pids = np.arange(30, dtype=np.int64)
    index = FaissIndex(8, "Flat")
    index.add(emb, pids, np.array(["x"] * 30))
    recs = recommend_all(index, emb, pids, np.arange(30), k=5, dup_threshold=0.995)
    ids = recs.lookup(0)[0].tolist()
    assert ids[0] in (10, 11) and not {10, 11} <= set(ids)
    plain = recommend_all(index, emb, pids, np.arange(30), k=5, dup_threshold=None)
    assert {10, 11} <= set(plain.lookup(0)[0].tolist())  # without the rule both would show


def test_recommendations_within_category_and_padding(catalog, tmp_path):
    emb, pids, styles, cats, index = catalog
    recs = recommend_all(index, emb, pids, styles, k=50, categories=cats)
    cat_of = dict(zip(pids.tolist(), cats.tolist(), strict=True))
    for pid in pids.tolist():
        ids, _ = recs.lookup(pid)
        assert all(cat_of[i] == cat_of[pid] for i in ids.tolist())
        assert len(ids) <= 39  # 40 per category minus the item (k larger than what is left)
        assert len(ids) >= 5
    assert recs.rec_ids.shape == (80, 50) and (recs.rec_ids[:, 39:] == -1).all()
    recs.save(tmp_path / "recs.parquet")
    again = Recommendations.load(tmp_path / "recs.parquet")
    np.testing.assert_array_equal(again.rec_ids, recs.rec_ids)
    (tmp_path / "recs.npz").unlink()
    from_parquet = Recommendations.load(tmp_path / "recs.parquet")
    for pid in pids.tolist()[:5]:
        np.testing.assert_array_equal(from_parquet.lookup(pid)[0], recs.lookup(pid)[0])


def test_recommendations_bad_inputs(catalog):
    emb, pids, styles, cats, index = catalog
    recs = recommend_all(index, emb[:3], pids[:3], styles[:3], k=2)
    with pytest.raises(ValueError, match="product_id"):
        recs.lookup(12345)
    with pytest.raises(ValueError, match="k"):
        recommend_all(index, emb, pids, styles, k=0)
    with pytest.raises(ValueError, match="embeddings"):
        recommend_all(index, emb[:5], pids, styles, k=3)
    with pytest.raises(ValueError, match="at least one"):
        recommend_all(index, emb[:0], pids[:0], styles[:0], k=3)
