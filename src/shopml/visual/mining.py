"""Online triplet mining and batch composition, from pytorch-metric-learning.

* Miners: ``batch_hard`` (for every anchor the farthest positive and the closest negative in the
  batch), ``semihard`` (negatives farther than the positive but inside the margin), ``all``.
* Samplers: every batch holds ``samples_per_product`` views of each product, and products are grouped
  by category (pytorch-metric-learning's ``HierarchicalSampler``) so a batch has negatives at several
  granularities: another product of the same style, another style of the same category, another
  category. ``MPerClassSampler`` is used when there is one category only.
"""

from __future__ import annotations

import numpy as np
import torch

from shopml.visual.losses import squared_l2_distance


def make_miner(kind: str, margin: float):
    """A pytorch-metric-learning miner over squared L2 distances."""
    from pytorch_metric_learning.miners import BatchHardMiner, TripletMarginMiner

    if kind == "batch_hard":
        return BatchHardMiner(distance=squared_l2_distance())
    if kind == "semihard":
        return TripletMarginMiner(
            margin=margin, type_of_triplets="semihard", distance=squared_l2_distance()
        )
    if kind == "all":
        return TripletMarginMiner(
            margin=margin, type_of_triplets="all", distance=squared_l2_distance()
        )
    raise ValueError(f"miner: expected batch_hard, semihard or all, found {kind!r}")


def make_sampler(
    product_labels: np.ndarray,
    category_labels: np.ndarray,
    batch_size: int,
    samples_per_product: int,
    num_batches: int,
):
    """A batch sampler (yields lists of dataset indices) for a DataLoader's ``batch_sampler``.

    With two or more categories, each batch holds two categories, half a batch each, of
    ``samples_per_product`` views per product (``HierarchicalSampler``); otherwise products are
    drawn at random (``MPerClassSampler``).

    Args:
        product_labels: (n,) int product label of each training sample.
        category_labels: (n,) int category label of each training sample.
        batch_size: samples per batch.
        samples_per_product: views of each product in a batch.
        num_batches: about how many batches one pass should yield.
    """
    import math

    from pytorch_metric_learning.samplers import HierarchicalSampler, MPerClassSampler
    from torch.utils.data import BatchSampler

    product_labels = np.asarray(product_labels)
    category_labels = np.asarray(category_labels)
    n_products = len(np.unique(product_labels))
    if n_products * samples_per_product < batch_size:
        raise ValueError(
            f"batch_size: expected <= products x samples_per_product = "
            f"{n_products} x {samples_per_product}, found {batch_size}"
        )
    n_cats = len(np.unique(category_labels))
    if n_cats >= 2 and batch_size % (2 * samples_per_product) == 0:
        pairs = n_cats * (n_cats - 1) // 2
        labels = np.stack([product_labels, category_labels], axis=1)
        return HierarchicalSampler(
            labels,
            batch_size=batch_size,
            samples_per_class=samples_per_product,
            batches_per_super_tuple=max(1, math.ceil(num_batches / pairs)),
            super_classes_per_batch=2,
            inner_label=0,
            outer_label=1,
        )
    sampler = MPerClassSampler(
        product_labels,
        m=samples_per_product,
        batch_size=batch_size,
        length_before_new_iter=num_batches * batch_size,
    )
    return BatchSampler(sampler, batch_size=batch_size, drop_last=True)


class StyleBatchSampler:
    """Batches of whole style groups: the hardest negatives (colour variants of one design) meet.

    Each batch holds two categories, half a batch each; a half is filled with every product of
    randomly drawn styles of its category (``samples_per_product`` views of each, drawn with
    replacement when a product has fewer), until ``batch_size / 2 / samples_per_product`` products
    are in. Yields lists of dataset indices (a ``batch_sampler``). pytorch-metric-learning has no
    sampler that groups classes by a second label *inside* a batch, hence this one.

    Args:
        product_labels, style_labels, category_labels: (n,) int labels of each sample.
        batch_size: samples per batch (a multiple of 2 x samples_per_product).
        samples_per_product: views of each product in a batch.
        num_batches: batches per pass.
        seed: random seed (each pass draws anew).
    """

    def __init__(
        self,
        product_labels: np.ndarray,
        style_labels: np.ndarray,
        category_labels: np.ndarray,
        batch_size: int,
        samples_per_product: int,
        num_batches: int,
        seed: int = 0,
    ) -> None:
        if batch_size % (2 * samples_per_product):
            raise ValueError(
                f"batch_size: expected a multiple of 2 x samples_per_product="
                f"{2 * samples_per_product}, found {batch_size}"
            )
        product_labels = np.asarray(product_labels)
        self.m, self.num_batches = samples_per_product, num_batches
        self.per_half = batch_size // 2 // samples_per_product
        self.rng = np.random.default_rng(seed)
        rows_of: dict[int, list[int]] = {}
        for i, p in enumerate(product_labels.tolist()):
            rows_of.setdefault(p, []).append(i)
        self.rows_of = {p: np.asarray(r) for p, r in rows_of.items()}
        first = {p: r[0] for p, r in rows_of.items()}
        styles: dict[int, dict[int, list[int]]] = {}  # category -> style -> products
        for p, i in first.items():
            cat, sty = int(category_labels[i]), int(style_labels[i])
            styles.setdefault(cat, {}).setdefault(sty, []).append(p)
        self.styles = {c: list(v.values()) for c, v in styles.items()}
        self.cats = sorted(c for c, v in self.styles.items() if sum(map(len, v)) >= self.per_half)
        if not self.cats:
            raise ValueError(
                f"batch_size: expected a category with >= {self.per_half} products, found none"
            )

    def __len__(self) -> int:
        return self.num_batches

    def _half(self, cat: int) -> list[int]:
        groups = self.styles[cat]
        products: list[int] = []
        for g in self.rng.permutation(len(groups)):
            products += groups[g][: self.per_half - len(products)]
            if len(products) == self.per_half:
                break
        out: list[int] = []
        for p in products:
            rows = self.rows_of[p]
            out += self.rng.choice(rows, self.m, replace=len(rows) < self.m).tolist()
        return out

    def __iter__(self):
        for _ in range(self.num_batches):
            if len(self.cats) >= 2:
                a, b = self.rng.choice(self.cats, 2, replace=False)
            else:
                a = b = self.cats[0]
            yield self._half(int(a)) + self._half(int(b))


def sampling_slots(is_street: np.ndarray, street_weight: float) -> np.ndarray:
    """Sample indices repeated so that a sampler drawing slots uniformly within a product draws each
    street photo ``round(street_weight)`` (at least 1) times as often as a catalog image.

    Returns:
        (m,) int64 dataset indices, one per slot (catalog rows once, street rows repeated).
    """
    is_street = np.asarray(is_street, dtype=bool)
    reps = np.where(is_street, max(1, int(round(street_weight))), 1)
    return np.repeat(np.arange(len(is_street), dtype=np.int64), reps)


def negative_granularity(
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    style_labels: torch.Tensor,
    category_labels: torch.Tensor,
) -> dict[str, float]:
    """Fractions of mined negatives that share the anchor's style / category / neither."""
    a, _, n = triplets
    if len(a) == 0:
        return {"same_style": 0.0, "same_category": 0.0, "other_category": 0.0}
    same_style = style_labels[a] == style_labels[n]
    same_cat = (category_labels[a] == category_labels[n]) & ~same_style
    total = float(len(a))
    return {
        "same_style": float(same_style.sum()) / total,
        "same_category": float(same_cat.sum()) / total,
        "other_category": float((~same_style & ~same_cat).sum()) / total,
    }
