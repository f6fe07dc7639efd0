"""Training and evaluation data from a world directory (or a user's catalog in the same format).

Reads ``catalog.parquet`` (product_id, category, style_id, image) and ``street.parquet`` (query_id,
product_id, image, split); image paths are relative to the directory. The training set holds every
catalog image plus the street photos of the ``train`` split; each sample carries three labels
(product, style, category), so batches can be composed and mined at several granularities.
Positives are the street photos and augmented views of the same product (``shopml.visual.augment``).
A validation share of the ``train`` street photos can be held out, by product, for model choices:
the ``test`` split is never read for training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from shopml.formats import readers

CATALOG_COLUMNS = ("product_id", "category", "image")  # style_id is used when present
STREET_COLUMNS = ("query_id", "product_id", "image")  # split is needed only to choose one
STREET_SPLITS = ("train", "test", "all")


def read_catalog(world_dir: str | os.PathLike) -> pd.DataFrame:
    """The catalog with absolute image paths; ``style_id`` defaults to the product id when absent.

    Raises:
        ValueError: when the file is missing, lacks a column, is empty or repeats a product id
            (:func:`shopml.formats.readers.read_catalog`).
    """
    world_dir = Path(world_dir)
    df = readers.read_catalog(world_dir, columns=CATALOG_COLUMNS, check_images="none")
    cols = ["product_id", "category", "image"] + (["style_id"] if "style_id" in df else [])
    out = df[cols].copy()
    if "style_id" not in out:
        out["style_id"] = out["product_id"]
    out["product_id"] = out["product_id"].astype("int64")
    out["style_id"] = out["style_id"].astype("int64")
    out["category"] = out["category"].astype(str)
    out["image"] = [str(world_dir / p) for p in out["image"]]
    return out.reset_index(drop=True)


def read_street(
    world_dir: str | os.PathLike, catalog: pd.DataFrame | None = None, split: str = "all"
) -> pd.DataFrame:
    """The street photos of ``split`` ("train", "test" or "all") with absolute paths.

    The ``split`` column is needed only to pick "train" or "test": a user's own photos may lack it.
    With ``catalog``, checks that every product is in it.
    """
    if split not in STREET_SPLITS:
        raise ValueError(f"split: expected one of {list(STREET_SPLITS)}, found {split!r}")
    world_dir = Path(world_dir)
    need = STREET_COLUMNS if split == "all" else (*STREET_COLUMNS, "split")
    df = readers.read_street(world_dir, columns=need, check_images="none")
    if split != "all":
        df = df[df["split"] == split]
    out = df[[c for c in (*STREET_COLUMNS, "split") if c in df]].copy()
    out["image"] = [str(world_dir / p) for p in out["image"]]
    if catalog is not None:
        unknown = sorted(set(out["product_id"]) - set(catalog["product_id"]))
        if unknown:
            raise ValueError(
                f"street: expected every product_id in the catalog, found {len(unknown)} unknown, "
                f"e.g. {unknown[:5]}"
            )
    return out.reset_index(drop=True)


@dataclass
class TrainingSet:
    """Preloaded training images and their labels.

    Rows ``0 .. n_catalog - 1`` are the catalog images in catalog order; the training street photos
    follow.

    Attributes:
        images: (n, 3, S, S) uint8 CPU tensor.
        product: (n,) int64 product label (dense 0..P-1, the catalog row).
        style: (n,) int64 style label.
        category: (n,) int64 category label.
        is_street: (n,) bool, True for street photos.
        mask: (n, 1, S, S) uint8 product mask (1 on the product) of the catalog images; all ones on
            street photos.
        n_catalog: catalog rows.
        val_images: (v, 3, S, S) uint8 held-out street photos (validation queries).
        val_product: (v,) int64 their product labels (catalog rows).
        look: (n,) int64 look label: products whose catalog images are pixel-identical at this size
            (the same design and colour sold twice) share the label of the first of them.
    """

    images: torch.Tensor
    product: np.ndarray
    style: np.ndarray
    category: np.ndarray
    is_street: np.ndarray
    mask: torch.Tensor
    n_catalog: int
    val_images: torch.Tensor
    val_product: np.ndarray
    look: np.ndarray

    def __len__(self) -> int:
        return len(self.product)


def validation_products(street: pd.DataFrame, fraction: float, seed: int = 0) -> np.ndarray:
    """Product ids whose ``train`` street photos are held out for validation (a seeded draw)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction: expected a fraction in [0, 1), found {fraction!r}")
    products = np.unique(street.loc[street["split"] == "train", "product_id"].to_numpy())
    k = int(round(fraction * len(products)))
    if k == 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 17])
    return np.sort(rng.choice(products, size=k, replace=False)).astype(np.int64)


def build_training_set(
    world_dir: str | os.PathLike,
    image_size: int,
    street_weight: float = 1.0,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> TrainingSet:
    """Every catalog image plus the ``train`` street photos, resized to ``image_size``.

    Args:
        street_weight: 0 drops the street photos (catalog views only); otherwise each is kept once
            (how often they are drawn is the sampler's business).
        val_fraction: share of the products with ``train`` street photos whose photos are held out
            as validation queries (``val_images``); 0 keeps them all for training.
        seed: seed of the validation draw.
    """
    from shopml.visual.augment import foreground_mask
    from shopml.visual.images import to_uint8_batch

    catalog = read_catalog(world_dir)
    paths = list(catalog["image"])
    pids = list(catalog["product_id"])
    street_flags = [False] * len(paths)
    street_file = Path(world_dir) / "street.parquet"
    val_paths: list[str] = []
    val_pids: list[int] = []
    if (street_weight > 0 or val_fraction > 0) and street_file.is_file():
        street = read_street(world_dir, catalog, split="train")
        held = street["product_id"].isin(validation_products(street, val_fraction, seed))
        val_paths, val_pids = list(street.loc[held, "image"]), list(street.loc[held, "product_id"])
        if street_weight > 0:
            street = street[~held]
            paths += list(street["image"])
            pids += list(street["product_id"])
            street_flags += [True] * len(street)
    meta = catalog.set_index("product_id")
    product_codes = {p: i for i, p in enumerate(catalog["product_id"])}
    cat_codes = {c: i for i, c in enumerate(sorted(catalog["category"].unique()))}
    images = to_uint8_batch(paths, image_size)
    n_catalog = len(catalog)
    first_of: dict[bytes, int] = {}
    look_of_row = np.array(
        [first_of.setdefault(images[i].numpy().tobytes(), i) for i in range(n_catalog)],
        dtype=np.int64,
    )  # catalog row -> row of its first pixel-identical twin
    product = np.array([product_codes[p] for p in pids], dtype=np.int64)
    mask = torch.ones((len(paths), 1, image_size, image_size), dtype=torch.uint8)
    for s in range(0, n_catalog, 512):
        e = min(n_catalog, s + 512)
        mask[s:e] = foreground_mask(images[s:e]).to(torch.uint8)
    return TrainingSet(
        images=images,
        product=product,
        style=meta.loc[pids, "style_id"].to_numpy(np.int64).copy(),
        category=np.array([cat_codes[c] for c in meta.loc[pids, "category"]], dtype=np.int64),
        is_street=np.array(street_flags, dtype=bool),
        mask=mask,
        n_catalog=n_catalog,
        val_images=to_uint8_batch(val_paths, image_size),
        val_product=np.array([product_codes[p] for p in val_pids], dtype=np.int64),
        look=look_of_row[product],
    )
