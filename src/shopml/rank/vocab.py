"""Vocabularies: raw catalog values (product ids, category and brand names) to embedding rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RankVocab:
    """Id maps from raw catalog values to embedding rows (row 0 = padding / unknown).

    Attributes:
        product_ids: ``(n,)`` int64 sorted catalog product ids; product ``product_ids[i]`` is row i+1.
        categories / brands: sorted names; name ``categories[i]`` is row i+1.
        item_category / item_brand: ``(n+1,)`` int64 category / brand row of every item row.
        item_price: ``(n+1,)`` float32 standardised log1p(list price) of every item row (0 at 0).
    """

    product_ids: np.ndarray
    categories: tuple[str, ...]
    brands: tuple[str, ...]
    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray

    @property
    def num_items(self) -> int:
        return len(self.product_ids) + 1

    @property
    def num_categories(self) -> int:
        return len(self.categories) + 1

    @property
    def num_brands(self) -> int:
        return len(self.brands) + 1

    def item_rows(self, product_ids: np.ndarray | Sequence[int]) -> np.ndarray:
        """Embedding rows of raw product ids (0 for ids not in the catalog)."""
        ids = np.asarray(product_ids, dtype=np.int64)
        pos = np.searchsorted(self.product_ids, ids)
        pos = np.minimum(pos, len(self.product_ids) - 1)
        found = self.product_ids[pos] == ids
        return np.where(found, pos + 1, 0).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, stored in the checkpoint (``extra["vocab"]``)."""
        return {
            "product_ids": self.product_ids.tolist(),
            "categories": list(self.categories),
            "brands": list(self.brands),
            "item_category": self.item_category.tolist(),
            "item_brand": self.item_brand.tolist(),
            "item_price": [float(x) for x in self.item_price],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RankVocab:
        return cls(
            product_ids=np.asarray(d["product_ids"], dtype=np.int64),
            categories=tuple(d["categories"]),
            brands=tuple(d["brands"]),
            item_category=np.asarray(d["item_category"], dtype=np.int64),
            item_brand=np.asarray(d["item_brand"], dtype=np.int64),
            item_price=np.asarray(d["item_price"], dtype=np.float32),
        )


def build_vocab(catalog: pd.DataFrame) -> RankVocab:
    """Vocabularies of a (validated) catalog."""
    cat = catalog.sort_values("product_id", kind="stable")
    product_ids = cat["product_id"].to_numpy(dtype=np.int64)
    categories, cat_codes = np.unique(cat["category"].astype(str).to_numpy(), return_inverse=True)
    brands, brand_codes = np.unique(cat["brand"].astype(str).to_numpy(), return_inverse=True)
    logp = np.log1p(cat["price"].to_numpy(dtype=np.float64))
    std = float(logp.std()) or 1.0
    price = ((logp - logp.mean()) / std).astype(np.float32)
    zero = np.zeros(1, dtype=np.int64)
    return RankVocab(
        product_ids=product_ids,
        categories=tuple(str(c) for c in categories),
        brands=tuple(str(b) for b in brands),
        item_category=np.concatenate([zero, cat_codes.astype(np.int64) + 1]),
        item_brand=np.concatenate([zero, brand_codes.astype(np.int64) + 1]),
        item_price=np.concatenate([np.zeros(1, np.float32), price]),
    )


__all__ = ["RankVocab", "build_vocab"]
