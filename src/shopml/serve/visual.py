"""Visual artefacts of a work directory: precomputed recommendations and the photo searcher.

Layout: ``visual/model`` (a VisNet run or checkpoint), ``visual/index`` (``shopml visual index``),
``visual/recs.parquet`` (``shopml visual recommend``; its ``.npz`` twin is what is loaded).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class SimilarLookup:
    """Constant-time lookup of precomputed recommendations, answers pre-serialised per product."""

    def __init__(self, recs: Any, catalog: Any) -> None:
        self.recs = recs
        self.catalog = catalog
        self._cache: dict[tuple[int, int], bytes] = {}

    def items(self, product_id: int, k: int) -> list[dict[str, Any]]:
        try:
            ids, scores = self.recs.lookup(product_id)
        except ValueError as exc:
            raise LookupError(
                f"product_id: no product {product_id} in the recommendations"
            ) from exc
        return [
            scored_item(self.catalog, int(i), float(s))
            for i, s in zip(ids[:k].tolist(), scores[:k].tolist(), strict=True)
        ]

    def json_bytes(self, product_id: int, k: int) -> bytes:
        """The whole ``SimilarResponse`` body, built once per (product, k) and then reused."""
        key = (int(product_id), int(k))
        body = self._cache.get(key)
        if body is None:
            payload = {"product_id": int(product_id), "items": self.items(product_id, k)}
            body = json.dumps(payload, separators=(",", ":")).encode()
            if len(self._cache) < 1_000_000:
                self._cache[key] = body
        return body


def scored_item(catalog: Any, product_id: int, score: float) -> dict[str, Any]:
    row = catalog.table.loc[product_id] if product_id in catalog.table.index else None
    return {
        "product_id": product_id,
        "score": round(score, 6),
        "title": None if row is None else str(row["title"]),
        "category": None if row is None else str(row["category"]),
        "image_url": f"/v1/products/{product_id}/image",
    }


@dataclass
class PhotoSearcher:
    """Embeds uploaded photos (a batch at a time) and searches the catalog index."""

    model: Any
    index: Any
    catalog: Any
    max_image_pixels: int

    def decode(self, data: bytes) -> Any:
        """Bytes -> RGB PIL image; ``ValueError`` for anything that is not a reasonable image."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                if width * height > self.max_image_pixels:
                    raise ValueError(
                        f"image: expected at most {self.max_image_pixels} pixels, "
                        f"found {width}x{height}"
                    )
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(
                f"image: expected a PNG or JPEG image, found undecodable data "
                f"({type(exc).__name__})"
            ) from exc
        return image.convert("RGB")

    def embed_batch(self, images: list[Any]) -> list[tuple[np.ndarray, int]]:
        """Embed one batch; each caller gets its vector and the size of the batch it rode in."""
        vectors = self.model.embed(images, batch_size=max(1, len(images)))
        return [(vector, len(images)) for vector in vectors]

    def search(self, vector: np.ndarray, k: int, category: str | None) -> list[dict[str, Any]]:
        scores, ids = self.index.search(vector[None, :], k, category=category)
        return [
            scored_item(self.catalog, int(i), float(s))
            for i, s in zip(ids[0].tolist(), scores[0].tolist(), strict=True)
            if i >= 0
        ]


def load_similar(workdir: Path, catalog: Any) -> SimilarLookup:
    from shopml.visual.recommend import Recommendations

    path = workdir / "visual" / "recs.parquet"
    if not path.is_file() and not path.with_suffix(".npz").is_file():
        raise FileNotFoundError(f"no recommendations at {path}")
    return SimilarLookup(Recommendations.load(path), catalog)


def load_searcher(workdir: Path, catalog: Any, device: str, max_image_pixels: int) -> PhotoSearcher:
    from shopml.visual.index import load_index
    from shopml.visual.models import load_model

    model_dir, index_dir = workdir / "visual" / "model", workdir / "visual" / "index"
    for path in (model_dir, index_dir):
        if not path.is_dir():
            raise FileNotFoundError(f"no visual artefact at {path}")
    model = load_model(model_dir, device=device)
    index = load_index(index_dir)
    if index.dim != model.dim:
        raise ValueError(f"index dim {index.dim} does not match the model's {model.dim}")
    return PhotoSearcher(
        model=model, index=index, catalog=catalog, max_image_pixels=max_image_pixels
    )
