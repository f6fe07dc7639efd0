"""Triplet loss against a plain loop; miners against brute force; batch composition."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shopml.visual.losses import TripletLoss, triplet_loss_reference
from shopml.visual.mining import make_miner, make_sampler, negative_granularity


def _data(n=12, d=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n, d, generator=g), dim=1)
    labels = torch.arange(n) % classes
    return emb, labels


def _all_triplets(labels):
    out = []
    for a, p, n in itertools.product(range(len(labels)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[a] != labels[n]:
            out.append((a, p, n))
    return tuple(torch.tensor(c) for c in zip(*out, strict=True))


@pytest.mark.parametrize("margin", [0.0, 0.2, 1.0])
def test_triplet_loss_equals_plain_loop(margin):
    emb, labels = _data()
    triplets = _all_triplets(labels)
    loss = TripletLoss(margin)(emb, labels, triplets)
    ref = triplet_loss_reference(emb, triplets, margin)
    assert abs(float(loss) - float(ref)) < 1e-5
    # default (no miner) uses every valid triplet: the same set
    assert abs(float(TripletLoss(margin)(emb, labels)) - float(ref)) < 1e-5


def test_triplet_loss_gradient_matches_loop():
    emb, labels = _data(seed=1)
    triplets = _all_triplets(labels)
    x1 = emb.clone().double().requires_grad_(True)
    x2 = emb.clone().double().requires_grad_(True)
    TripletLoss(0.3)(x1.float(), labels, triplets).backward()
    triplet_loss_reference(x2, triplets, 0.3).backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)


def test_triplet_loss_checks_shapes():
    emb, labels = _data()
    with pytest.raises(ValueError, match="embeddings"):
        TripletLoss()(emb, labels[:-1])
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(-1.0)


def test_batch_hard_miner_picks_hardest_by_brute_force():
    emb, labels = _data(n=16, classes=4, seed=2)
    a, p, n = make_miner("batch_hard", 0.2)(emb, labels)
    d = torch.cdist(emb.double(), emb.double()) ** 2
    for anchor, pos, neg in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        same = (labels == labels[anchor]) & (torch.arange(16) != anchor)
        assert d[anchor, pos] == pytest.approx(float(d[anchor][same].max()), abs=1e-5)
        assert d[anchor, neg] == pytest.approx(
            float(d[anchor][labels != labels[anchor]].min()), abs=1e-5
        )


def test_semihard_miner_returns_semihard_triplets():
    emb, labels = _data(n=24, classes=4, seed=3)
    a, p, n = make_miner("semihard", 0.5)(emb, labels)
    d = torch.cdist(emb.double(), emb.double()) ** 2
    assert len(a) > 0
    assert bool(((d[a, n] > d[a, p]) & (d[a, n] <= d[a, p] + 0.5 + 1e-6)).all())
    with pytest.raises(ValueError, match="miner"):
        make_miner("random", 0.1)


def test_sampler_puts_several_views_of_two_categories_in_a_batch():
    products = np.repeat(np.arange(20), 3)  # 20 products, 3 images each
    categories = products // 5  # 4 categories
    sampler = make_sampler(
        products, categories, batch_size=16, samples_per_product=4, num_batches=10
    )
    batches = list(sampler)
    assert len(batches) >= 10
    for batch in batches:
        assert len(batch) == 16
        counts = np.bincount(products[batch])
        assert set(counts[counts > 0].tolist()) == {4}
        assert len(set(categories[batch].tolist())) == 2
    one_cat = np.zeros_like(products)
    batches = list(make_sampler(products, one_cat, 8, 2, 5))
    assert all(
        set(np.bincount(products[b])[np.bincount(products[b]) > 0].tolist()) == {2} for b in batches
    )
    with pytest.raises(ValueError, match="batch_size"):
        make_sampler(products[:6], categories[:6], 16, 4, 2)


def test_negative_granularity_fractions():
    style = torch.tensor([0, 0, 1, 2])
    cat = torch.tensor([0, 0, 0, 1])
    triplets = (torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]))
    g = negative_granularity(triplets, style, cat)
    assert g == pytest.approx(
        {"same_style": 1 / 3, "same_category": 1 / 3, "other_category": 1 / 3}
    )
