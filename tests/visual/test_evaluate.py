"""The Street2Shop protocol: distinct products in rank order, recall@k, same-style precision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopml.visual.data import read_catalog, read_street
from shopml.visual.evaluate import distinct_in_order, recall_at_k, street2shop, style_precision
from shopml.visual.index import FaissIndex


def test_distinct_products_in_rank_order():
    np.testing.assert_array_equal(distinct_in_order(np.array([5, 5, -1, 3, 5, 2, 3])), [5, 3, 2])
    ranked = [np.array([7, 7, 3, 1]), np.array([2, 2, 2, 9]), np.array([4, -1, -1, -1])]
    r = recall_at_k(ranked, np.array([3, 9, 8]), ks=(1, 2, 3))
    assert r == {
        "recall@1": 0.0,
        "recall@2": pytest.approx(2 / 3),
        "recall@3": pytest.approx(2 / 3),
    }


class _Oracle:
    """Embeds an image as the one-hot of its product (street photos: of their true product)."""

    def __init__(self, world):
        catalog = read_catalog(world)
        street = read_street(world)
        self.row = {p: i for i, p in enumerate(catalog["product_id"])}
        self.of = dict(zip(catalog["image"], catalog["product_id"], strict=True))
        self.of.update(zip(street["image"], street["product_id"], strict=True))
        self.dim = len(catalog)

    def embed(self, images, batch_size=64, device=None):
        out = np.zeros((len(images), self.dim), np.float32)
        for i, img in enumerate(images):
            out[i, self.row[self.of[img]]] = 1.0
        return out


def test_street2shop_with_an_oracle_is_perfect(visual_world):
    oracle = _Oracle(visual_world)
    res = street2shop(oracle, visual_world)
    assert res["queries"] == 18 and res["recall@1"] == 1.0 and res["recall@20"] == 1.0
    assert set(res["per_category"]) == {"cat0", "cat1", "cat2"}
    assert all(v["recall@1"] == 1.0 for v in res["per_category"].values())
    catalog = read_catalog(visual_world)
    index = FaissIndex(oracle.dim, "Flat")
    index.add(oracle.embed(list(catalog["image"])), catalog["product_id"], catalog["category"])
    within = street2shop(oracle, visual_world, index=index, within_category=True, split="all")
    assert within["queries"] == 36 and within["recall@1"] == 1.0


def test_style_precision_counts_same_style_neighbours():
    catalog = pd.DataFrame({"style_id": [1, 1, 2, 2, 3]})
    e = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.95, 0.05], [0.5, 0.5]], np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    res = style_precision(catalog, e, k=1)
    # item0 -> item3 (wrong style); item1 -> item3 (wrong); item2 -> item4 (wrong); item3 -> item0
    assert res["style_queries"] == 4 and res["style_precision@1"] == 0.0
    res2 = style_precision(catalog, e, k=2)
    assert res2["style_precision@2"] == pytest.approx(np.mean([1, 1, 0, 0]))


def test_readers_reject_bad_worlds(tmp_path, visual_world):
    with pytest.raises(ValueError, match="catalog"):
        read_catalog(tmp_path)
    empty = pd.read_parquet(visual_world / "catalog.parquet").iloc[:0]
    (tmp_path / "e").mkdir()
    empty.to_parquet(tmp_path / "e" / "catalog.parquet")
    with pytest.raises(ValueError, match="at least one product"):
        read_catalog(tmp_path / "e")
    street = pd.read_parquet(visual_world / "street.parquet")
    street.loc[0, "product_id"] = 77
    (tmp_path / "s").mkdir()
    street.to_parquet(tmp_path / "s" / "street.parquet")
    with pytest.raises(ValueError, match="unknown"):
        read_street(tmp_path / "s", read_catalog(visual_world))
