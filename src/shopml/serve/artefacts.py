"""Loading a work directory's artefacts for the service; each one optional, each failure explained."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("shopml.serve")


ARTEFACTS = ("catalog", "similar", "searcher", "forecaster", "ranker", "feed")


class ArtefactMissing(RuntimeError):
    """An endpoint's artefact is not loaded; the message says which and why."""


@dataclasses.dataclass
class Catalog:
    """The catalog table indexed by product id, and where its images live."""

    table: pd.DataFrame  # indexed by product_id
    root: Path
    search_text: pd.Series = dataclasses.field(init=False, repr=False)  # lower-case title etc.

    def __post_init__(self) -> None:
        fields = [c for c in ("title", "brand", "category", "color", "pattern") if c in self.table]
        text = self.table[fields].astype(str).agg(" ".join, axis=1) if fields else None
        self.search_text = (
            text.str.lower() if text is not None else pd.Series("", index=self.table.index)
        )

    def get(self, product_id: int) -> dict[str, Any]:
        if product_id not in self.table.index:
            raise LookupError(f"product_id: no product {product_id} in the catalog")
        row = self.table.loc[product_id]
        out = {"product_id": int(product_id)}
        for key, value in row.items():  # catalog cells are scalars
            if pd.isna(value):
                value = None
            elif isinstance(value, pd.Timestamp):
                value = value.date().isoformat()
            elif hasattr(value, "item"):
                value = value.item()
            out[str(key)] = value
        return out

    def image_path(self, product_id: int) -> Path:
        if product_id not in self.table.index:
            raise LookupError(f"product_id: no product {product_id} in the catalog")
        return self.root / str(self.table.at[product_id, "image"])


@dataclasses.dataclass
class Artefacts:
    """Everything the service loaded; ``missing`` maps artefact name -> reason it is unavailable."""

    workdir: Path
    catalog: Catalog | None = None
    similar: Any = None
    searcher: Any = None
    forecaster: Any = None
    ranker: Any = None
    feed: Any = None
    missing: dict[str, str] = dataclasses.field(default_factory=dict)

    def require(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            reason = self.missing.get(name, "not loaded")
            raise ArtefactMissing(f"{name} is not available: {reason}")
        return value


def _try(artefacts: Artefacts, name: str, loader: Any, *args: Any) -> None:
    try:
        setattr(artefacts, name, loader(*args))
    except FileNotFoundError as exc:
        artefacts.missing[name] = str(exc)
    except Exception as exc:  # a corrupt artefact must not stop the others from serving
        log.exception("loading %s failed", name)
        artefacts.missing[name] = f"failed to load: {exc}"


def load_catalog(workdir: Path) -> Catalog:
    from shopml.formats.readers import read_catalog

    world = workdir / "world"
    if not (world / "catalog.parquet").is_file():
        raise FileNotFoundError(f"no catalog at {world / 'catalog.parquet'}")
    table = read_catalog(world, check_images="exists").set_index("product_id", drop=False)
    table.index.name = None
    return Catalog(table=table.drop(columns=["product_id"]), root=world)


def load_artefacts(settings: Any) -> Artefacts:
    """Load every artefact that exists under ``settings.workdir``; record why the others are missing."""
    from shopml.serve import forecast, rank, visual

    workdir = Path(settings.workdir)
    artefacts = Artefacts(workdir=workdir)
    _try(artefacts, "catalog", load_catalog, workdir)
    if artefacts.catalog is None:
        for name in ARTEFACTS[1:]:
            artefacts.missing[name] = "needs the catalog"
        return artefacts
    catalog = artefacts.catalog
    _try(artefacts, "similar", visual.load_similar, workdir, catalog)
    _try(
        artefacts,
        "searcher",
        visual.load_searcher,
        workdir,
        catalog,
        settings.device,
        settings.max_image_pixels,
    )
    _try(
        artefacts,
        "forecaster",
        forecast.load_forecaster,
        workdir,
        settings.device,
        settings.forecast_chunk,
    )
    _try(artefacts, "ranker", rank.load_ranker, workdir, settings.device)
    if artefacts.ranker is None:
        artefacts.missing["feed"] = "needs the ranking model and its events"
    else:
        _try(artefacts, "feed", build_feed, artefacts)
    return artefacts


def build_feed(artefacts: Artefacts) -> Any:
    """The feed's candidate generator over the ranker's events, the catalog and the look-alikes."""
    from shopml.serve.feed import CandidateGenerator

    similar = artefacts.similar
    return CandidateGenerator(
        artefacts.ranker.events,
        artefacts.catalog.table["category"],
        lookalikes=None if similar is None else similar.recs.lookup,
    )
