"""Image loading and the model-owned preprocessing: any size or mode in, square uint8 tensors out.

Callers hand raw images (paths, bytes, PIL images or HxWxC uint8 arrays, in RGB, RGBA, greyscale,
palette or CMYK mode, PNG or JPEG) and the model turns them into what its weights expect: RGB with
transparency composited onto white, the shorter side resized to ``size`` (bilinear, antialiased),
a centre crop of ``size x size``, then (on the model's device) the per-trunk pixel normalisation.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image

# mean, std applied to pixels scaled to 0..1
_NORMS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "lite": ((127.0 / 255, 127.0 / 255, 127.0 / 255), (128.0 / 255, 128.0 / 255, 128.0 / 255)),
    "caffe": ((0.0, 0.0, 0.0), (1.0 / 255, 1.0 / 255, 1.0 / 255)),
}


def load_image(src: Any) -> Image.Image:
    """Open ``src`` as an RGB PIL image.

    Args:
        src: a path (str or PathLike), encoded bytes, a PIL image, or an HxW / HxWxC uint8 array.

    Raises:
        ValueError: naming the image when it is missing, unreadable, or of an unsupported type.
    """
    from PIL import Image, UnidentifiedImageError

    label = str(src) if isinstance(src, str | os.PathLike) else type(src).__name__
    try:
        if isinstance(src, Image.Image):
            img = src
        elif isinstance(src, bytes | bytearray):
            img = Image.open(io.BytesIO(src))
        elif isinstance(src, str | os.PathLike):
            if not Path(src).is_file():
                raise ValueError(f"image: expected an image file at {src}, found none")
            img = Image.open(src)
        elif isinstance(src, np.ndarray):
            if src.dtype != np.uint8 or src.ndim not in (2, 3):
                raise ValueError(
                    f"image: expected an HxW or HxWxC uint8 array, found {src.dtype} {src.shape}"
                )
            img = Image.fromarray(src)
        else:
            raise ValueError(
                f"image: expected a path, bytes, PIL image or uint8 array, found {type(src).__name__}"
            )
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"image: could not decode {label} as an image ({exc})") from exc
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparent pixels become white (catalog background)."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def resize_crop(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side of an RGB image to ``size`` and centre-crop; -> (size, size, 3) uint8."""
    from PIL import Image

    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError(f"image: expected a non-empty image, found size {img.size}")
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def to_uint8_batch(images: Sequence[Any], size: int) -> torch.Tensor:
    """Load and preprocess ``images``; -> (n, 3, size, size) uint8 CPU tensor."""
    if len(images) == 0:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    arrays = [resize_crop(load_image(src), size) for src in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def normalize_pixels(x: torch.Tensor, normalization: str) -> torch.Tensor:
    """uint8 (n, 3, H, W) on any device -> float32 normalised for the trunk's weights."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images: expected a (n, 3, H, W) tensor, found shape {tuple(x.shape)}")
    mean, std = _NORMS[normalization]
    mean_t = torch.tensor(mean, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=torch.float32).view(1, 3, 1, 1)
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    return (xf - mean_t) / std_t
