"""Procedural product images and street photos (Pillow + NumPy).

A catalog image is a category silhouette filled with the product's colour and pattern, outlined,
with the brand's mark, on a plain light background. A street photo shows the same product the way
a customer photographs it (the Street2Shop domain gap): a cluttered background, the product scaled,
rotated and put in perspective, a lighting change (brightness, colour cast, gradient), blur, sensor
noise and a partial occlusion.

Every image is a pure function of its spec and of ``(seed, id)``, so rendering in a process pool gives
the same bytes as rendering in-process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_SHADE = 1.0 - 0.12 * ((_XX + _YY) / (2 * SIZE))  # studio light from the top left


@dataclass(frozen=True)
class ProductSpec:
    """What a product looks like: everything :func:`render_product` needs."""

    product_id: int
    category: str
    variant: int
    color: tuple[int, int, int]
    accent: tuple[int, int, int]
    pattern: str
    pattern_scale: int
    mark_shape: str
    mark_color: tuple[int, int, int]


# ---------------------------------------------------------------- silhouettes (mask, mark position)
def _silhouette(category: str, variant: int) -> tuple[Image.Image, tuple[int, int]]:
    m = Image.new("L", (SIZE, SIZE), 0)
    d = ImageDraw.Draw(m)
    v = variant % 3
    if category == "tops":
        sleeve = (18, 30, 10)[v]
        body = [(40, 26), (88, 26), (88, 112), (40, 112)]
        d.polygon(body, fill=255)
        if v != 2:
            d.polygon(
                [
                    (40, 26),
                    (40 - sleeve, 26 + sleeve + 8),
                    (40 - sleeve + 10, 26 + sleeve + 16),
                    (40, 50),
                ],
                fill=255,
            )
            d.polygon(
                [
                    (88, 26),
                    (88 + sleeve, 26 + sleeve + 8),
                    (88 + sleeve - 10, 26 + sleeve + 16),
                    (88, 50),
                ],
                fill=255,
            )
        d.ellipse((54, 18, 74, 34), fill=0)
        mark = (74, 44)
    elif category == "dresses":
        hem = (118, 96, 122)[v]
        flare = (30, 18, 22)[v]
        d.polygon(
            [(48, 14), (80, 14), (78, 54), (64 + 20 + flare, hem), (44 - flare, hem), (50, 54)],
            fill=255,
        )
        d.ellipse((56, 8, 72, 20), fill=0)
        mark = (64, 40)
    elif category == "jeans":
        leg = (116, 116, 70)[v]
        flare = (0, 10, 0)[v]
        d.polygon(
            [
                (38, 14),
                (90, 14),
                (92, leg),
                (70 + flare // 2, leg),
                (64, 50),
                (58, leg),
                (36 - flare, leg),
            ],
            fill=255,
        )
        mark = (78, 26)
    elif category == "shoes":
        if v == 0:  # sneaker
            d.polygon(
                [(14, 70), (40, 56), (62, 60), (100, 76), (114, 88), (114, 100), (14, 100)],
                fill=255,
            )
        elif v == 1:  # heel
            d.polygon(
                [
                    (16, 60),
                    (34, 58),
                    (70, 84),
                    (112, 88),
                    (114, 98),
                    (30, 96),
                    (24, 112),
                    (16, 112),
                ],
                fill=255,
            )
        else:  # boot
            d.polygon([(30, 16), (62, 16), (64, 70), (108, 82), (112, 104), (28, 104)], fill=255)
        mark = (50, 86) if v != 2 else (46, 60)
    elif category == "bags":
        if v == 0:  # tote
            d.polygon([(26, 44), (102, 44), (110, 114), (18, 114)], fill=255)
            d.arc((40, 14, 88, 70), 180, 360, fill=255, width=7)
        elif v == 1:  # satchel
            d.rounded_rectangle((22, 50, 106, 110), radius=12, fill=255)
            d.arc((44, 24, 84, 76), 180, 360, fill=255, width=6)
        else:  # clutch
            d.rounded_rectangle((16, 56, 112, 100), radius=8, fill=255)
        mark = (64, 82)
    elif category == "watches":
        d.rectangle((52, 4, 76, 124), fill=255)
        if v == 1:
            d.rounded_rectangle((34, 38, 94, 90), radius=8, fill=255)
        else:
            d.ellipse((34, 34, 94, 94), fill=255)
        mark = (64, 52)
    elif category == "sunglasses":
        w = (30, 34, 26)[v]
        d.ellipse((64 - 6 - 2 * w, 48, 64 - 6, 48 + w + 14), fill=255)
        d.ellipse((64 + 6, 48, 64 + 6 + 2 * w, 48 + w + 14), fill=255)
        d.rectangle((56, 52, 72, 58), fill=255)
        d.line((64 - 6 - 2 * w, 54, 2, 46), fill=255, width=5)
        d.line((64 + 6 + 2 * w, 54, 126, 46), fill=255, width=5)
        mark = (64 - 6 - w, 62)
    elif category == "mugs":
        top = (28, 36, 20)[v]
        d.rectangle((26, top, 90, 112), fill=255)
        d.ellipse((78, 50, 116, 92), fill=255)
        d.ellipse((88, 60, 106, 82), fill=0)
        mark = (58, 74)
    elif category == "lamps":
        shade = (40, 30, 50)[v]
        d.polygon(
            [(64 - shade // 2, 12), (64 + shade // 2, 12), (64 + shade, 56), (64 - shade, 56)],
            fill=255,
        )
        d.rectangle((60, 56, 68, 104), fill=255)
        d.ellipse((38, 100, 90, 118), fill=255)
        mark = (64, 40)
    elif category == "phones":
        r = (10, 16, 6)[v]
        d.rounded_rectangle((36, 10, 92, 118), radius=r, fill=255)
        mark = (64, 80)
    else:
        raise ValueError(f"category: expected one of the catalog categories, found {category!r}")
    return m, mark


_SIL_CACHE: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, tuple[int, int]]] = {}


def silhouette(category: str, variant: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(mask, outline, mark centre) for a category and silhouette variant.

    mask and outline are (SIZE, SIZE) float32 in [0, 1]; outline is the mask's one-pixel rim.
    """
    key = (category, variant % 3)
    if key not in _SIL_CACHE:
        m, mark = _silhouette(category, variant)
        mask = np.asarray(m, dtype=np.float32) / 255.0
        inner = np.asarray(m.filter(ImageFilter.MinFilter(3)), np.float32) / 255.0
        _SIL_CACHE[key] = (mask, np.clip(mask - inner, 0, 1), mark)
    return _SIL_CACHE[key]


# ---------------------------------------------------------------- patterns and marks
_PAT_CACHE: dict[tuple[str, int], np.ndarray] = {}


def _pattern_mask(pattern: str, scale: int) -> np.ndarray:
    """Where the accent colour shows, (SIZE, SIZE) float32 in [0, 1] (cached)."""
    key = (pattern, scale % 3)
    if key not in _PAT_CACHE:
        _PAT_CACHE[key] = _make_pattern(pattern, scale)
    return _PAT_CACHE[key]


def _make_pattern(pattern: str, scale: int) -> np.ndarray:
    p = (7.0, 11.0, 17.0)[scale % 3]
    x, y = _XX, _YY
    if pattern == "solid":
        return np.zeros((SIZE, SIZE), np.float32)
    if pattern == "stripes":
        return (((x + 0.6 * y) / p) % 1.0 < 0.4).astype(np.float32)
    if pattern == "dots":
        dx = (x % p) - p / 2
        dy = (y % p) - p / 2
        return (dx * dx + dy * dy < (0.28 * p) ** 2).astype(np.float32)
    if pattern == "checks":
        return (((x // p) + (y // p)) % 2).astype(np.float32)
    if pattern == "zigzag":
        tri = np.abs((x / p) % 2.0 - 1.0) * p * 0.7
        return (((y + tri) / p) % 1.0 < 0.45).astype(np.float32)
    if pattern == "gradient":
        return np.clip((y - 10) / 108.0, 0.0, 1.0).astype(np.float32)
    raise ValueError(
        f"pattern: expected one of solid/stripes/dots/checks/zigzag/gradient, found {pattern!r}"
    )


def _draw_mark(d: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, color, r: int = 6) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=color)
    elif shape == "square":
        d.rectangle(box, fill=color)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=color)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=color)
    elif shape == "bar":
        d.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=color)
    elif shape == "ring":
        d.ellipse(box, outline=color, width=3)
    elif shape == "cross":
        d.rectangle((cx - r, cy - 2, cx + r, cy + 2), fill=color)
        d.rectangle((cx - 2, cy - r, cx + 2, cy + r), fill=color)
    else:  # star
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            ang = np.pi / 2 + k * np.pi / 5
            pts.append((cx + rad * np.cos(ang), cy - rad * np.sin(ang)))
        d.polygon(pts, fill=color)


def _mark_contrast(fill: tuple[int, int, int], mark: tuple[int, int, int]) -> tuple[int, int, int]:
    """The mark's colour, swapped for black or white when it would vanish on the fill."""
    if sum(abs(a - b) for a, b in zip(fill, mark, strict=True)) > 120:
        return mark
    return (20, 20, 20) if sum(fill) > 380 else (240, 240, 240)


def render_product_rgba(spec: ProductSpec) -> tuple[np.ndarray, np.ndarray]:
    """The product alone: (rgb (SIZE, SIZE, 3) float32 0..255, alpha (SIZE, SIZE) float32 0..1)."""
    mask, edge, (mx, my) = silhouette(spec.category, spec.variant)
    pat = _pattern_mask(spec.pattern, spec.pattern_scale)[..., None]
    col = np.asarray(spec.color, np.float32)
    acc = np.asarray(spec.accent, np.float32)
    rgb = col * (1.0 - pat) + acc * pat
    # Soft shading: a little darker towards the bottom-right, like a studio light.
    rgb = rgb * _SHADE[..., None]
    # Outline: darken the silhouette's rim.
    rgb = rgb * (1.0 - 0.55 * edge[..., None])
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    _draw_mark(
        ImageDraw.Draw(img), spec.mark_shape, mx, my, _mark_contrast(spec.color, spec.mark_color)
    )
    return np.asarray(img, np.float32), mask


def render_catalog_image(spec: ProductSpec) -> Image.Image:
    """The catalog (shop) image: the product centred on a plain light background."""
    rgb, alpha = render_product_rgba(spec)
    bg = np.full((SIZE, SIZE, 3), 246.0, np.float32) - 10.0 * (_YY / SIZE)[..., None]
    a = alpha[..., None]
    out = rgb * a + bg * (1 - a)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- street photos
def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """Coefficients for ``Image.transform(PERSPECTIVE)`` mapping output points ``dst`` to input ``src``."""
    a = []
    b = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.asarray(a, np.float64), np.asarray(b, np.float64)).tolist()


def _clutter(rng: np.random.Generator) -> Image.Image:
    base = rng.integers(40, 220, size=3)
    grad = rng.uniform(-60, 60, size=3)
    bg = base[None, None, :] + grad[None, None, :] * (_YY / SIZE)[..., None]
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 20))):
        x0, y0 = rng.integers(-20, SIZE, size=2)
        w, h = rng.integers(8, 60, size=2)
        c = tuple(int(v) for v in rng.integers(0, 256, size=3))
        kind = rng.integers(0, 3)
        if kind == 0:
            d.rectangle((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=c)
        elif kind == 1:
            d.ellipse((int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=c)
        else:
            d.line(
                (int(x0), int(y0), int(x0 + w), int(y0 + h)), fill=c, width=int(rng.integers(2, 6))
            )
    return img.filter(ImageFilter.BoxBlur(1))


def render_street_photo(spec: ProductSpec, seed: int, query_id: int) -> Image.Image:
    """A customer's photo of the product: clutter, geometry, light, blur, noise and occlusion."""
    rng = np.random.default_rng([seed, 7, query_id])
    rgb, alpha = render_product_rgba(spec)
    rgba = np.dstack([np.clip(rgb, 0, 255), alpha * 255.0]).astype(np.uint8)
    prod = Image.fromarray(rgba, "RGBA")
    # Geometry: rotate, then a random perspective warp that also scales (0.6-0.95) and shifts.
    angle = float(rng.uniform(-25, 25))
    prod = prod.rotate(angle, resample=Image.BILINEAR)
    s = float(rng.uniform(0.6, 0.95))
    cx, cy = SIZE / 2 + rng.uniform(-12, 12, size=2)
    half = SIZE * s / 2
    dst = np.array(
        [
            [cx - half, cy - half],
            [cx + half, cy - half],
            [cx + half, cy + half],
            [cx - half, cy + half],
        ]
    )
    dst = dst + rng.uniform(-0.12, 0.12, size=(4, 2)) * SIZE * s
    src = np.array([[0, 0], [SIZE, 0], [SIZE, SIZE], [0, SIZE]], dtype=np.float64)
    coeffs = _perspective_coeffs(src, dst)
    prod = prod.transform((SIZE, SIZE), Image.PERSPECTIVE, coeffs, resample=Image.BILINEAR)
    mask = prod.getchannel("A")
    img = _clutter(rng)
    img.paste(prod, (0, 0), mask)
    # Partial occlusion: a foreground object over part of the product.
    ys, xs = np.nonzero(np.asarray(mask) > 128)
    if xs.size:
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        ow = int((x1 - x0) * rng.uniform(0.2, 0.4))
        oh = int((y1 - y0) * rng.uniform(0.2, 0.4))
        side = rng.integers(0, 4)
        ox = int(x0 if side in (0, 2) else x1 - ow)
        oy = int(y0 if side in (0, 1) else y1 - oh)
        c = tuple(int(v) for v in rng.integers(0, 256, size=3))
        ImageDraw.Draw(img).ellipse((ox - 4, oy - 4, ox + ow, oy + oh), fill=c)
    # Lighting: brightness, colour cast and a directional gradient; then blur and noise.
    arr = np.asarray(img, np.float32)
    bright = rng.uniform(0.7, 1.25)
    cast = rng.uniform(0.9, 1.1, size=3)
    direction = rng.uniform(-1, 1, size=2)
    grad = 1.0 + 0.2 * (direction[0] * (_XX / SIZE - 0.5) + direction[1] * (_YY / SIZE - 0.5))
    arr = arr * bright * cast[None, None, :] * grad[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.4))))
    sigma = np.float32(rng.uniform(2, 8))
    arr = np.asarray(img, np.float32) + sigma * rng.standard_normal(
        (SIZE, SIZE, 3), dtype=np.float32
    )
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- writing, in-process or pooled
def _save(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG", optimize=False, compress_level=1)


def _render_job(job: tuple[str, ProductSpec, int, int, str]) -> None:
    kind, spec, seed, ident, path = job
    img = (
        render_catalog_image(spec) if kind == "catalog" else render_street_photo(spec, seed, ident)
    )
    _save(img, Path(path))


def render_images(
    jobs: Sequence[tuple[str, ProductSpec, int, int, str]],
    processes: int = 1,
    progress: Any = None,
) -> None:
    """Render and write every job ``(kind, spec, seed, id, path)``; kind is "catalog" or "street".

    Args:
        jobs: the images to write (paths must be in existing directories).
        processes: worker processes; 1 renders in this process.
        progress: an optional :class:`shopml.common.progress.Progress`, advanced per image.
    """
    if processes <= 1 or len(jobs) < 64:
        for job in jobs:
            _render_job(job)
            if progress is not None:
                progress.update()
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with ctx.Pool(processes) as pool:
        for _ in pool.imap_unordered(_render_job, jobs, chunksize=32):
            if progress is not None:
                progress.update()


def default_processes() -> int:
    """Worker processes for image rendering: the CPUs this process may use, at most 16."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(16, n))
