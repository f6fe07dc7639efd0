"""The street-photo augmentations: product masks, homographies, compositing, clean and real views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shopml.visual.augment import augment, foreground_mask, homography, random_backgrounds
from shopml.visual.mining import sampling_slots

S = 48


def _catalog_batch(n: int = 6) -> torch.Tensor:
    """Catalog-like uint8 images: a light background, a coloured disc and a white outlined box."""
    x = torch.full((n, 3, S, S), 242, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 <= 64
    for i in range(n):
        x[i, :, disc] = torch.tensor([200, 40 + 5 * i, 40], dtype=torch.uint8).view(3, 1)
    x[:, :, 26:42, 26:42] = 0  # a white box with a black outline: the product is "light"
    x[:, :, 27:41, 27:41] = 255
    return x


def test_foreground_mask_keeps_light_products_inside_their_outline():
    x = _catalog_batch(2)
    m = foreground_mask(x)
    assert m.shape == (2, 1, S, S) and set(m.unique().tolist()) <= {0.0, 1.0}
    assert m[:, 0, 16, 16].eq(1).all()  # the disc
    assert m[:, 0, 33, 33].eq(1).all()  # inside the white box (not connected to the border)
    assert m[:, 0, 2, 2].eq(0).all() and m[:, 0, 45, 20].eq(0).all()  # background
    assert 0.1 < float(m.mean()) < 0.3


def test_homography_maps_the_four_points():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(3, 4, 2, generator=g) * 0.3 + torch.tensor(
        [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]
    )
    dst = src + 0.2 * torch.rand(3, 4, 2, generator=g)
    h = homography(src, dst)
    pts = torch.cat([src, torch.ones(3, 4, 1)], -1) @ h.transpose(1, 2)
    torch.testing.assert_close(pts[..., :2] / pts[..., 2:], dst, atol=1e-4, rtol=0)


def test_augment_is_reproducible_in_range_and_seeded():
    x = _catalog_batch()
    a = augment(x, torch.Generator().manual_seed(1), street_prob=0.5)
    b = augment(x, torch.Generator().manual_seed(1), street_prob=0.5)
    c = augment(x, torch.Generator().manual_seed(2), street_prob=0.5)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert augment(x[:0]).shape == (0, 3, S, S)
    with pytest.raises(ValueError, match="x: expected"):
        augment(torch.zeros(2, 3, 8, 9))


def _light_share(v: torch.Tensor) -> float:
    """Share of pixels that look like the plain catalog background (light and grey)."""
    hi, lo = v.amax(1), v.amin(1)
    return float(((hi > 0.8) & (hi - lo < 0.08)).float().mean())


def test_street_views_replace_the_plain_background_crop_views_keep_it():
    x = _catalog_batch(16)
    gen = torch.Generator().manual_seed(0)
    assert _light_share(x.float() / 255) > 0.7
    street = augment(x, gen, street_prob=1.0)
    crop = augment(x, gen, street_prob=0.0)
    assert _light_share(street) < 0.15, _light_share(street)
    assert _light_share(crop) > 0.4, _light_share(crop)
    # the product survives: the disc's red still dominates somewhere in most street views
    red = (street[:, 0] - street[:, 1:].amax(1)) > 0.25
    assert float(red.flatten(1).any(1).float().mean()) > 0.8


def test_clean_views_are_untouched_and_real_street_photos_get_no_clutter():
    x = _catalog_batch(8)
    out = augment(x, torch.Generator().manual_seed(0), street_prob=1.0, clean_prob=1.0)
    torch.testing.assert_close(out, x.float() / 255, atol=0, rtol=0)
    grey = torch.full((8, 3, S, S), 128, dtype=torch.uint8)
    flagged = torch.ones(8, dtype=torch.bool)
    real = augment(grey, torch.Generator().manual_seed(0), 1.0, is_street=flagged, clean_prob=1.0)
    fake = augment(grey, torch.Generator().manual_seed(0), 1.0, is_street=~flagged)
    assert not torch.equal(real, grey.float() / 255)  # real photos are not "clean" views
    assert float(real.std(dim=(2, 3)).mean()) < 0.06  # mild jitter only
    assert float(fake.std(dim=(2, 3)).mean()) > 0.1  # composited on clutter


def test_random_backgrounds_are_cluttered_and_differ():
    bg = random_backgrounds(4, 32, torch.Generator().manual_seed(0))
    assert bg.shape == (4, 3, 32, 32) and float(bg.min()) >= 0 and float(bg.max()) <= 1
    assert float(bg.std(dim=(1, 2, 3)).min()) > 0.05
    assert not torch.allclose(bg[0], bg[1])


def test_sampling_slots_repeat_street_photos():
    is_street = np.array([False, False, True, True, False])
    assert sampling_slots(is_street, 1.0).tolist() == [0, 1, 2, 3, 4]
    assert sampling_slots(is_street, 3.0).tolist() == [0, 1, 2, 2, 2, 3, 3, 3, 4]
    assert sampling_slots(is_street, 0.2).tolist() == [0, 1, 2, 3, 4]  # at least once


def test_style_batches_hold_whole_style_groups_of_two_categories():
    from shopml.visual.mining import StyleBatchSampler

    # 3 categories x 4 styles x 3 products, 2 samples per product (one product has only one)
    product = np.repeat(np.arange(36), 2)[:-1]
    style = product // 3
    category = style // 4
    sampler = StyleBatchSampler(product, style, category, 24, 2, num_batches=20, seed=0)
    batches = list(sampler)
    assert len(batches) == 20 and all(len(b) == 24 for b in batches)
    for b in batches:
        b = np.asarray(b)
        assert len(np.unique(category[b])) == 2
        counts = np.bincount(product[b])
        assert set(counts[counts > 0].tolist()) == {2}  # every product: 2 views
        # whole styles: each style present with all its 3 products, except the last one drawn
        per_style = [len(np.unique(product[b][style[b] == s])) for s in np.unique(style[b])]
        assert sorted(per_style)[1:] == [3] * (len(per_style) - 1) or min(per_style) == 3
    with pytest.raises(ValueError, match="batch_size"):
        StyleBatchSampler(product, style, category, 10, 2, num_batches=1)
