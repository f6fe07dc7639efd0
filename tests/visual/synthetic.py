"""A drawn stand-in for a world directory (catalog, street photos, images), for the visual tests.

Category -> shape, style -> stripe pattern, product -> colour variant of its style. Street photos
show the product smaller, shifted and rotated on a cluttered background with noise, in JPEG or in
other modes, so the query domain differs from the catalog's clean PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

SHAPES = ("circle", "square", "triangle", "diamond")


def _draw_product(size: int, shape: str, style: int, colour: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    m = size // 8
    box = (m, m, size - m, size - m)
    if shape == "circle":
        d.ellipse(box, fill=255)
    elif shape == "square":
        d.rectangle(box, fill=255)
    elif shape == "triangle":
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=255)
    else:
        d.polygon(
            [(size // 2, m), (size - m, size // 2), (size // 2, size - m), (m, size // 2)], fill=255
        )
    pattern = Image.new("RGB", (size, size), colour)
    pd_ = ImageDraw.Draw(pattern)
    period = 4 + 2 * (style % 4)
    dark = tuple(max(0, c - 110) for c in colour)
    for t in range(-size, 2 * size, period):
        if style % 2 == 0:
            pd_.line([(t, 0), (t + size * ((style // 2) % 2), size)], fill=dark, width=2)
        else:
            pd_.line([(0, t), (size, t)], fill=dark, width=1 + style % 3)
    img.paste(pattern, (0, 0), mask)
    return img


def make_world(
    out: str | Path,
    n_categories: int = 3,
    styles_per_category: int = 3,
    products_per_style: int = 2,
    street_per_product: int = 2,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write catalog.parquet, street.parquet and images/ under ``out``; returns ``out``."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    (out / "images" / "catalog").mkdir(parents=True, exist_ok=True)
    (out / "images" / "street").mkdir(parents=True, exist_ok=True)
    palette = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 180, 30), (150, 50, 180)]
    rows, street = [], []
    pid, qid, style_id = 1000, 0, 0
    for c in range(n_categories):
        for _ in range(styles_per_category):
            style_id += 1
            colours = rng.choice(len(palette), size=products_per_style, replace=False)
            for colour in colours:
                pid += 1
                img = _draw_product(size, SHAPES[c % len(SHAPES)], style_id, palette[colour])
                rel = f"images/catalog/{pid}.png"
                img.save(out / rel)
                rows.append((pid, f"cat{c}", style_id, rel))
                for j in range(street_per_product):
                    bg = (rng.integers(0, 255, (size, size, 3))).astype(np.uint8)
                    photo = Image.fromarray(bg).filter(ImageFilter.GaussianBlur(3))
                    scale = rng.uniform(0.7, 0.9)
                    small = img.resize((int(size * scale), int(size * scale))).rotate(
                        rng.uniform(-15, 15), fillcolor=(255, 255, 255)
                    )
                    ox, oy = rng.integers(0, size - small.size[0] + 1, 2)
                    photo.paste(small, (int(ox), int(oy)))
                    arr = np.asarray(photo).astype(np.float64) + rng.normal(0, 8, (size, size, 3))
                    photo = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
                    qid += 1
                    rel_q = f"images/street/{qid}.jpg"
                    photo.save(out / rel_q, quality=90)
                    street.append((qid, pid, rel_q, "train" if j % 2 == 0 else "test"))
    pd.DataFrame(rows, columns=["product_id", "category", "style_id", "image"]).assign(
        title="", brand="b", price=10.0
    ).to_parquet(out / "catalog.parquet", index=False)
    pd.DataFrame(street, columns=["query_id", "product_id", "image", "split"]).to_parquet(
        out / "street.parquet", index=False
    )
    return out
