"""Images: every file decodes; street photos differ from, yet match, their catalog images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from shopml.world.images import SIZE


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        assert im.size == (SIZE, SIZE) and im.mode == "RGB"
        return np.asarray(im)


def _hist(a: np.ndarray, mask=None, bins: int = 4) -> np.ndarray:
    q = a.astype(np.int64) * bins // 256
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    idx = idx[mask] if mask is not None else idx.ravel()
    h = np.bincount(idx, minlength=bins**3).astype(np.float64)
    return h / h.sum()


def test_every_image_decodes(tiny_world):
    files = list((tiny_world / "images").rglob("*.png"))
    assert len(files) == 280
    for f in files:
        _rgb(f)


def test_street_photo_differs_yet_matches_its_product(tiny_world):
    cat = pd.read_parquet(tiny_world / "catalog.parquet")
    street = pd.read_parquet(tiny_world / "street.parquet")
    hists = []
    for rel in cat["image"]:
        a = _rgb(tiny_world / rel)
        fg = np.abs(a.astype(int) - a[:1, :1].astype(int)).sum(-1) > 30  # drop the plain background
        hists.append(_hist(a, fg))
    hists = np.stack(hists)
    row = {p: i for i, p in enumerate(cat["product_id"])}
    pct = []
    for pid, rel in zip(street["product_id"], street["image"], strict=True):
        a = _rgb(tiny_world / rel)
        shop = _rgb(tiny_world / cat["image"].iloc[row[pid]])
        assert np.abs(a.astype(float) - shop).mean() > 20  # not a copy: the domain gap
        sim = np.minimum(hists, _hist(a)).sum(axis=1)  # histogram intersection
        pct.append((sim > sim[row[pid]]).mean())
    pct = np.asarray(pct)
    assert pct.mean() < 0.3  # its own product ranks in the top 30% on average (chance: 50%)
    assert (pct < 0.5).mean() >= 0.8


def test_same_colour_other_seller_is_an_exact_duplicate(tiny_world):
    cat = pd.read_parquet(tiny_world / "catalog.parquet")
    dup = cat[cat.duplicated(["style_id", "color"], keep=False)]
    assert len(dup) >= 2
    g = dup.groupby(["style_id", "color"])["image"].apply(list).iloc[0]
    assert np.array_equal(_rgb(tiny_world / g[0]), _rgb(tiny_world / g[1]))
    other = cat[
        (cat["style_id"] == dup["style_id"].iloc[0]) & (cat["color"] != dup["color"].iloc[0])
    ]
    if len(other):
        assert not np.array_equal(
            _rgb(tiny_world / g[0]), _rgb(tiny_world / other["image"].iloc[0])
        )


def test_pooled_rendering_gives_the_same_bytes(tmp_path):
    """Small and larger scales render in a process pool: bytes must not depend on that."""
    from shopml.world.catalog import COLORS
    from shopml.world.images import ProductSpec, render_images

    cats = [
        "tops",
        "dresses",
        "jeans",
        "shoes",
        "bags",
        "watches",
        "sunglasses",
        "mugs",
        "lamps",
        "phones",
    ]
    specs = [
        ProductSpec(
            i,
            cats[i % 10],
            i % 3,
            COLORS["red"],
            COLORS["navy"],
            "stripes",
            i % 3,
            "star",
            COLORS["white"],
        )
        for i in range(40)
    ]
    jobs = {}
    for mode in ("pool", "inline"):
        (tmp_path / mode).mkdir()
        jobs[mode] = [
            ("catalog", s, 0, s.product_id, str(tmp_path / mode / f"c{s.product_id}.png"))
            for s in specs
        ]
        jobs[mode] += [
            ("street", s, 0, s.product_id, str(tmp_path / mode / f"s{s.product_id}.png"))
            for s in specs
        ]
    render_images(jobs["pool"], processes=2)
    render_images(jobs["inline"], processes=1)
    for a, b in zip(jobs["pool"], jobs["inline"], strict=True):
        assert Path(a[4]).read_bytes() == Path(b[4]).read_bytes()
