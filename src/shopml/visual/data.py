"""Training and evaluation data from a world directory (or a user's catalog in the same format).

Reads ``catalog.parquet`` (product_id, category, style_id, image) and ``street.parquet`` (query_id,
product_id, image, split); image paths are relative to the directory. The training set holds every
catalog image plus the street photos of the ``train`` split; each sample carries three labels
(product, style, category), so batches can be composed and mined at several granularities.
Positives are the street photos and augmented views of the same product; augmentation is batched
on the training device (random resized crop, flip, colour jitter, blur) through ``grid_sample``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from shopml.common.io import check_columns, read_table

CATALOG_SCHEMA = {"product_id": "int", "category": "str", "image": "str"}
STREET_SCHEMA = {"query_id": "int", "product_id": "int", "image": "str", "split": "str"}


def read_catalog(world_dir: str | os.PathLike) -> pd.DataFrame:
    """The catalog with absolute image paths; ``style_id`` defaults to the product id when absent.

    Raises:
        ValueError: when the file is missing, lacks a column, is empty or repeats a product id.
    """
    world_dir = Path(world_dir)
    df = read_table(world_dir / "catalog.parquet", "catalog")
    check_columns(df, CATALOG_SCHEMA, "catalog")
    if len(df) == 0:
        raise ValueError(f"catalog: expected at least one product in {world_dir}, found 0 rows")
    if df["product_id"].duplicated().any():
        dup = df.loc[df["product_id"].duplicated(), "product_id"].iloc[0]
        raise ValueError(f"catalog: expected unique product_id, found {dup} repeated")
    cols = ["product_id", "category", "image"] + (["style_id"] if "style_id" in df else [])
    out = df[cols].copy()
    if "style_id" not in out:
        out["style_id"] = out["product_id"]
    out["product_id"] = out["product_id"].astype("int64")
    out["style_id"] = out["style_id"].astype("int64")
    out["category"] = out["category"].astype(str)
    out["image"] = [str(world_dir / p) for p in out["image"]]
    return out.reset_index(drop=True)


def read_street(world_dir: str | os.PathLike, catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    """Street photos with absolute paths; with ``catalog``, checks every product is in it."""
    world_dir = Path(world_dir)
    df = read_table(world_dir / "street.parquet", "street")
    check_columns(df, STREET_SCHEMA, "street")
    out = df[["query_id", "product_id", "image", "split"]].copy()
    out["image"] = [str(world_dir / p) for p in out["image"]]
    bad = set(out["split"]) - {"train", "test"}
    if bad:
        raise ValueError(f"street: column 'split' should be 'train' or 'test', found {sorted(bad)}")
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

    Attributes:
        images: (n, 3, S, S) uint8 CPU tensor.
        product: (n,) int64 product label (dense 0..P-1).
        style: (n,) int64 style label.
        category: (n,) int64 category label.
        is_street: (n,) bool, True for street photos.
    """

    images: torch.Tensor
    product: np.ndarray
    style: np.ndarray
    category: np.ndarray
    is_street: np.ndarray

    def __len__(self) -> int:
        return len(self.product)


def build_training_set(
    world_dir: str | os.PathLike, image_size: int, street_weight: float = 1.0
) -> TrainingSet:
    """Every catalog image plus the ``train`` street photos, resized to ``image_size``.

    Args:
        street_weight: 0 drops the street photos (catalog views only); 1 keeps each once.
    """
    from shopml.visual.images import to_uint8_batch

    catalog = read_catalog(world_dir)
    paths = list(catalog["image"])
    pids = list(catalog["product_id"])
    street_flags = [False] * len(paths)
    street_file = Path(world_dir) / "street.parquet"
    if street_weight > 0 and street_file.is_file():
        street = read_street(world_dir, catalog)
        street = street[street["split"] == "train"]
        paths += list(street["image"])
        pids += list(street["product_id"])
        street_flags += [True] * len(street)
    meta = catalog.set_index("product_id")
    product_codes = {p: i for i, p in enumerate(catalog["product_id"])}
    cat_codes = {c: i for i, c in enumerate(sorted(catalog["category"].unique()))}
    images = to_uint8_batch(paths, image_size)
    return TrainingSet(
        images=images,
        product=np.array([product_codes[p] for p in pids], dtype=np.int64),
        style=meta.loc[pids, "style_id"].to_numpy(np.int64),
        category=np.array([cat_codes[c] for c in meta.loc[pids, "category"]], dtype=np.int64),
        is_street=np.array(street_flags, dtype=bool),
    )


def augment(
    x: torch.Tensor, generator: torch.Generator | None = None, street_prob: float = 0.5
) -> torch.Tensor:
    """Random training views of a batch of product images.

    Every view: a random resized crop (area 0.5..1, aspect 3/4..4/3) or, with ``street_prob``, a
    "street" view (the product shrunk to 0.55..0.95, rotated up to 25 degrees and shifted, pasted
    over clutter made from another image of the batch, then partly occluded and noised, like a
    user's photo); then a horizontal flip, brightness / contrast / saturation jitter (+-30%) and,
    for a quarter of the views, a blur. The product mask of a street view is "not near-white"
    (catalog photos have white or light-grey backgrounds: the mask is "coloured or darker than 0.85").

    Args:
        x: (n, 3, S, S) uint8 or float in [0, 1], any device.
        generator: CPU generator for the random draws (reproducible runs).
        street_prob: fraction of street-style views.

    Returns:
        (n, 3, S, S) float32 in [0, 1] on x's device.
    """
    n, dev = x.shape[0], x.device
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if n == 0:
        return xf

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    street = rand(n) < street_prob
    # crop views: zoom in on a random window
    area = 0.5 + 0.5 * rand(n)
    ratio = torch.exp((rand(n) * 2 - 1) * float(np.log(4 / 3)))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    angle = torch.zeros(n, device=dev)
    # street views: zoom out (sampling a window larger than the image), rotate
    shrink = 0.55 + 0.4 * rand(n)
    sx = torch.where(street, 1.0 / shrink, sx)
    sy = torch.where(street, 1.0 / shrink, sy)
    angle = torch.where(street, (rand(n) * 2 - 1) * (25 * np.pi / 180), angle)
    tx = torch.where(street, (rand(n) * 2 - 1) * 0.25 / shrink, (rand(n) * 2 - 1) * (1 - sx))
    ty = torch.where(street, (rand(n) * 2 - 1) * 0.25 / shrink, (rand(n) * 2 - 1) * (1 - sy))
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sx * cos * flip
    theta[:, 0, 1] = -sy * sin
    theta[:, 1, 0] = sx * sin * flip
    theta[:, 1, 1] = sy * cos
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(xf.shape), align_corners=False)
    pad = torch.where(street.view(n, 1, 1, 1), 0.0, 1.0)
    hi, lo = xf.max(dim=1, keepdim=True).values, xf.min(dim=1, keepdim=True).values
    fg_mask = ((hi < 0.85) | (hi - lo > 0.06)).float()  # (n, 1, S, S): not light grey / white
    warped = F.grid_sample(
        torch.cat([xf, fg_mask], 1),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    out, mask = warped[:, :3], warped[:, 3:]
    # crop views: outside the image (only with zoom-out) stays white; street views: clutter
    inside = F.grid_sample(
        torch.ones_like(fg_mask), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    out = out + (1 - inside) * pad
    if bool(street.any()):
        s = xf.shape[-1]
        other = torch.roll(xf, shifts=1, dims=0).flip(-1).transpose(-1, -2)
        clutter = F.interpolate(F.avg_pool2d(other, 4), size=(s, s), mode="bilinear")
        clutter = clutter * (0.6 + 0.8 * rand(n, 3, 1, 1))
        blend = torch.where(street.view(n, 1, 1, 1), mask, torch.ones_like(mask))
        out = blend * out + (1 - blend) * clutter.clamp(0, 1)
        # occlusion: a random-coloured box over a corner of the product, on half the street views
        yy = torch.linspace(0, 1, s, device=dev).view(1, s, 1)
        xx = torch.linspace(0, 1, s, device=dev).view(1, 1, s)
        cx, cy, r = rand(n, 1, 1), rand(n, 1, 1), 0.1 + 0.15 * rand(n, 1, 1)
        occ = ((xx - cx).abs() < r) & ((yy - cy).abs() < r)
        occ = occ & (street & (rand(n) < 0.5)).view(n, 1, 1)
        out = torch.where(occ.unsqueeze(1), rand(n, 3, 1, 1).expand_as(out), out)
        noise = torch.randn(out.shape, generator=generator).to(dev) * (0.03 * rand(n, 1, 1, 1))
        out = out + noise * street.view(n, 1, 1, 1)
    # colour jitter
    b = 1 + (rand(n, 1, 1, 1) * 2 - 1) * 0.3
    c = 1 + (rand(n, 1, 1, 1) * 2 - 1) * 0.3
    sat = 1 + (rand(n, 1, 1, 1) * 2 - 1) * 0.3
    out = out * b
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * c + mean
    grey = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3]).expand_as(out)
    out = (out - grey) * sat + grey
    blur = rand(n) < 0.25
    if bool(blur.any()):
        k = torch.tensor([1.0, 2.0, 1.0], device=dev)
        k2 = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3).contiguous()
        blurred = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
        out = torch.where(blur.view(n, 1, 1, 1), blurred, out)
    return out.clamp(0.0, 1.0)
