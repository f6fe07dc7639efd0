"""Vector indexes over catalog embeddings: one ``VectorIndex`` interface, FAISS and Milvus backends.

Scores are inner products (cosine similarity for unit vectors): higher is closer. ``search``
returns ``(scores, ids)``, both ``(n, k)``; where fewer than k results exist the ids are -1 and the
scores -inf. Every vector carries an int64 id (the product id) and a category string, so a search
can be restricted to one category.

* ``FaissIndex``: any ``faiss.index_factory`` string ("Flat", "IVF1024,PQ32", "HNSW32", ...), GPU
  when faiss-gpu sees a device. Ids via ``IndexIDMap2`` (IVF indexes carry ids themselves). Remove:
  Flat and IVF remove in place; HNSW cannot unlink graph nodes, so removed ids become tombstones
  that every search filters out (an ``IDSelector``) until the index is rebuilt. Category search
  uses an ``IDSelectorBatch`` of that category's ids.
* ``MilvusIndex``: pymilvus ``MilvusClient``; a local ``.db`` path runs Milvus Lite (tests,
  prototypes), an ``http://host:19530`` URI a Milvus server or cluster (how a catalog outgrows one
  machine). Category search is a filter expression.

``load_index(path)`` opens either from the directory ``save`` wrote.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from shopml.common.io import atomic_path, write_json

META = "index.json"


def _check_vectors(vectors: np.ndarray, dim: int, name: str = "vectors") -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name}: expected shape (n, {dim}), found {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_k(k: int) -> None:
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k: expected a positive int, found {k!r}")


class VectorIndex(ABC):
    """A searchable set of (id, category, vector) rows; see the module docstring."""

    dim: int

    @abstractmethod
    def add(self, vectors: np.ndarray, ids: np.ndarray, categories: Any | None = None) -> None:
        """Add (n, dim) float32 vectors with (n,) int64 ids and optional (n,) category strings."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove the given ids; returns how many were present."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, category: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of (n, dim) queries: (scores float32 (n, k), ids int64 (n, k), -1 when missing)."""

    @abstractmethod
    def save(self, path: str | os.PathLike) -> Path:
        """Write the index into directory ``path``."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of live vectors."""


class FaissIndex(VectorIndex):
    """A FAISS index with ids, categories, removal and category-filtered search.

    Args:
        dim: vector width.
        factory: a ``faiss.index_factory`` string, e.g. "Flat", "IVF1024,PQ32", "HNSW32".
        nprobe: inverted lists visited per query (IVF indexes).
        ef_search: HNSW search breadth.
        use_gpu: "auto" (GPU when faiss-gpu sees one), True or False.
        refine_k_factor: with a refine stage (",RFlat"), exact re-ranking of k_factor * k candidates.
    """

    def __init__(
        self,
        dim: int,
        factory: str = "Flat",
        nprobe: int = 16,
        ef_search: int = 64,
        use_gpu: bool | str = "auto",
        refine_k_factor: float = 4.0,
    ) -> None:
        import faiss

        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, found {dim!r}")
        self.dim, self.factory = dim, factory
        self.nprobe, self.ef_search = nprobe, ef_search
        self.refine_k_factor = refine_k_factor
        try:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(
                f"factory: expected a faiss index_factory string, found {factory!r}"
            ) from exc
        self._is_ivf = faiss.try_extract_index_ivf(inner) is not None
        self._is_hnsw = "HNSW" in factory and not self._is_ivf
        # a bare IVF index stores ids itself; anything else (Flat, HNSW, refine...) gets an id map
        bare_ivf = isinstance(faiss.downcast_index(inner), faiss.IndexIVF)
        self.index = inner if bare_ivf else faiss.IndexIDMap2(inner)
        self._ids = np.empty(0, dtype=np.int64)
        self._cats = np.empty(0, dtype=object)
        self._deleted: set[int] = set()
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        self.use_gpu = bool(gpus) if use_gpu == "auto" else bool(use_gpu)
        if self.use_gpu and not gpus:
            raise ValueError("use_gpu: asked for a GPU index but faiss sees no GPU (faiss-cpu?)")
        self._gpu_index = None
        self._apply_params(self.index)

    # -- parameters -----------------------------------------------------------------------------
    def _apply_params(self, index: Any) -> None:
        import faiss

        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = self.nprobe
        inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
        if isinstance(inner, faiss.IndexRefine):
            inner.k_factor = self.refine_k_factor  # re-rank k_factor * k candidates exactly
        if self._is_hnsw:
            base = faiss.downcast_index(index.index) if hasattr(index, "index") else index
            if hasattr(base, "hnsw"):
                base.hnsw.efSearch = self.ef_search

    def set_search_params(
        self,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine_k_factor: float | None = None,
    ) -> None:
        if refine_k_factor is not None:
            self.refine_k_factor = refine_k_factor
        if nprobe is not None:
            self.nprobe = nprobe
        if ef_search is not None:
            self.ef_search = ef_search
        self._apply_params(self.index)
        self._gpu_index = None

    # -- content ---------------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def train(self, vectors: np.ndarray) -> None:
        """Train the quantisers (IVF / PQ) on representative vectors."""
        x = _check_vectors(vectors, self.dim)
        if self.index.is_trained:
            return
        try:
            self.index.train(x)
        except RuntimeError as exc:
            raise ValueError(
                f"vectors: index {self.factory!r} could not be trained on {len(x)} vectors ({exc}); "
                f"give more training vectors or use a smaller factory such as 'Flat'"
            ) from exc

    def add(self, vectors: np.ndarray, ids: np.ndarray, categories: Any | None = None) -> None:
        x = _check_vectors(vectors, self.dim)
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (len(x),):
            raise ValueError(f"ids: expected shape ({len(x)},), found {ids.shape}")
        cats = np.asarray(
            [""] * len(x) if categories is None else [str(c) for c in categories], dtype=object
        )
        if cats.shape != (len(x),):
            raise ValueError(f"categories: expected {len(x)} values, found {cats.shape}")
        if self._deleted and np.isin(ids, list(self._deleted)).any():
            self.compact()  # HNSW keeps removed nodes: drop them before an id comes back
        if len(np.unique(ids)) != len(ids) or np.isin(ids, self._ids).any():
            raise ValueError("ids: expected ids not already in the index and not repeated")
        if len(x) == 0:
            return
        if not self.index.is_trained:
            self.train(x)
        self.index.add_with_ids(x, ids)
        self._ids = np.concatenate([self._ids, ids])
        self._cats = np.concatenate([self._cats, cats])
        self._deleted -= set(ids.tolist())
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> int:
        import faiss

        ids = np.asarray(ids, dtype=np.int64)
        present = np.isin(self._ids, ids) & ~np.isin(self._ids, list(self._deleted))
        n = int(present.sum())
        if n == 0:
            return 0
        if self._is_hnsw:
            self._deleted |= set(self._ids[present].tolist())
        else:
            try:
                self.index.remove_ids(faiss.IDSelectorBatch(ids))
            except RuntimeError as exc:
                raise ValueError(
                    f"ids: index {self.factory!r} does not support removal ({exc}); rebuild it"
                ) from exc
            keep = ~present
            self._ids, self._cats = self._ids[keep], self._cats[keep]
        self._gpu_index = None
        return n

    def compact(self) -> None:
        """Rebuild a graph index without its removed (tombstoned) vectors."""
        import faiss

        if not self._deleted:
            return
        inner = faiss.downcast_index(self.index.index)
        order = faiss.vector_to_array(self.index.id_map)
        vectors = inner.reconstruct_n(0, inner.ntotal)
        cat_of = dict(zip(self._ids.tolist(), self._cats.tolist(), strict=True))
        keep = ~np.isin(order, list(self._deleted))
        fresh = FaissIndex(self.dim, self.factory, self.nprobe, self.ef_search, False)
        fresh.add(vectors[keep], order[keep], [cat_of[i] for i in order[keep].tolist()])
        self.index, self._ids, self._cats = fresh.index, fresh._ids, fresh._cats
        self._deleted = set()
        self._gpu_index = None

    def __len__(self) -> int:
        return int(len(self._ids) - len(self._deleted))

    def ids(self) -> np.ndarray:
        """The live ids, in insertion order."""
        if not self._deleted:
            return self._ids.copy()
        return self._ids[~np.isin(self._ids, list(self._deleted))]

    # -- search ----------------------------------------------------------------------------------
    def _searcher(self) -> Any:
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:  # pragma: no cover - needs faiss-gpu
            import faiss

            self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
        return self._gpu_index

    def search(
        self, queries: np.ndarray, k: int, category: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        _check_k(k)
        q = _check_vectors(queries, self.dim, "queries")
        n = len(q)
        if n == 0 or len(self) == 0:
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        selectors: list[Any] = []
        if category is not None:
            members = self._ids[self._cats == str(category)]
            if len(members) == 0:
                return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
            selectors.append(faiss.IDSelectorBatch(members))
        if self._deleted:
            dead = faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64))
            selectors.append(dead)
            selectors.append(faiss.IDSelectorNot(dead))
        if category is None and not self._deleted:
            scores, ids = self._searcher().search(q, k)
        else:
            # CPU path with an id selector (GPU indexes do not take selectors)
            sel = selectors[0] if category is not None else None
            if self._deleted:
                sel = selectors[-1] if sel is None else faiss.IDSelectorAnd(sel, selectors[-1])
            if self._is_ivf:
                params = faiss.SearchParametersIVF(sel=sel, nprobe=self.nprobe)
            elif self._is_hnsw:
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.ef_search, k))
            else:
                params = faiss.SearchParameters(sel=sel)
            scores, ids = _search_with_params(self.index, q, k, params)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        import faiss

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "index.faiss") as tmp:
            faiss.write_index(self.index, str(tmp))
        with atomic_path(path / "ids.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                ids=self._ids,
                categories=self._cats.astype(str),
                deleted=np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted)),
            )
        meta = {"backend": "faiss", "dim": self.dim, "factory": self.factory}
        meta.update({"nprobe": self.nprobe, "ef_search": self.ef_search, "count": len(self)})
        meta["refine_k_factor"] = self.refine_k_factor
        write_json(path / META, meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, use_gpu: bool | str = "auto") -> FaissIndex:
        import faiss

        path = Path(path)
        meta = _read_meta(path, "faiss")
        obj = cls(meta["dim"], meta["factory"], meta["nprobe"], meta["ef_search"], use_gpu,
                  meta.get("refine_k_factor", 4.0))  # fmt: skip
        try:
            obj.index = faiss.read_index(str(path / "index.faiss"))
            saved = np.load(path / "ids.npz", allow_pickle=False)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ValueError(f"index: could not read the FAISS index in {path} ({exc})") from exc
        obj._ids = saved["ids"].astype(np.int64)
        obj._cats = saved["categories"].astype(object)
        obj._deleted = set(saved["deleted"].tolist())
        obj._apply_params(obj.index)
        return obj


class MilvusIndex(VectorIndex):
    """A Milvus collection through pymilvus: Milvus Lite for a local ``.db`` file, else a server.

    Args:
        dim: vector width.
        uri: a local file path ending in ``.db`` (Milvus Lite) or ``http(s)://host:port``.
        collection: the collection name.
        index_type: a Milvus index type ("FLAT", "HNSW", "IVF_FLAT", "AUTOINDEX", ...).
        token: credentials for a server ("user:password" or an API key).
    """

    def __init__(
        self,
        dim: int,
        uri: str,
        collection: str = "catalog",
        index_type: str = "FLAT",
        token: str = "",
        create: bool = True,
    ) -> None:
        from pymilvus import DataType, MilvusClient

        self.dim, self.uri, self.collection, self.index_type = dim, str(uri), collection, index_type
        self.client = MilvusClient(uri=self.uri, token=token)
        if not self.client.has_collection(collection):
            if not create:
                raise ValueError(f"collection: expected {collection!r} in {uri}, found none")
            schema = self.client.create_schema(auto_id=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("category", DataType.VARCHAR, max_length=512)
            params = self.client.prepare_index_params()
            params.add_index(field_name="vector", index_type=index_type, metric_type="IP")
            self.client.create_collection(collection, schema=schema, index_params=params)
        self.client.load_collection(collection)

    def add(self, vectors: np.ndarray, ids: np.ndarray, categories: Any | None = None) -> None:
        x = _check_vectors(vectors, self.dim)
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (len(x),):
            raise ValueError(f"ids: expected shape ({len(x)},), found {ids.shape}")
        cats = [""] * len(x) if categories is None else [str(c) for c in categories]
        rows = [
            {"id": int(i), "vector": v.tolist(), "category": c}
            for i, v, c in zip(ids, x, cats, strict=True)
        ]
        for s in range(0, len(rows), 5000):
            self.client.insert(self.collection, rows[s : s + 5000])

    def remove(self, ids: np.ndarray) -> int:
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        present = self.client.get(self.collection, ids=ids, output_fields=["id"]) if ids else []
        if present:
            self.client.delete(self.collection, ids=[r["id"] for r in present])
        return len(present)

    def __len__(self) -> int:
        stats = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(stats[0]["count(*)"])

    def search(
        self, queries: np.ndarray, k: int, category: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_k(k)
        q = _check_vectors(queries, self.dim, "queries")
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if len(q) == 0:
            return scores, ids
        filt = "" if category is None else f"category == {json.dumps(str(category))}"
        hits = self.client.search(
            self.collection, data=q.tolist(), limit=k, filter=filt, output_fields=["id"]
        )
        for r, row in enumerate(hits):
            for c, h in enumerate(row[:k]):
                ids[r, c] = int(h["id"])
                scores[r, c] = float(h["distance"])
        return scores, ids

    def save(self, path: str | os.PathLike) -> Path:
        """Write a directory that reopens this collection (Milvus persists the data itself)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        uri = self.uri
        if not uri.startswith(("http://", "https://", "tcp://")):
            local = Path(uri).resolve()
            target = path.resolve() / local.name
            if local != target:
                self.client.close()
                shutil.copytree(local, target) if local.is_dir() else shutil.copy2(local, target)
                self.client = type(self.client)(uri=str(local))
                self.client.load_collection(self.collection)
            uri = local.name  # relative to the index directory
        meta = {"backend": "milvus", "dim": self.dim, "uri": uri, "collection": self.collection}
        meta["index_type"] = self.index_type
        write_json(path / META, meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, token: str = "") -> MilvusIndex:
        path = Path(path)
        meta = _read_meta(path, "milvus")
        uri = meta["uri"]
        if not uri.startswith(("http://", "https://", "tcp://")):
            uri = str(path / uri)
        return cls(meta["dim"], uri, meta["collection"], meta["index_type"], token, create=False)

    def close(self) -> None:
        self.client.close()


def _search_with_params(index: Any, q: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, ...]:
    """``index.search`` with SearchParameters through the SWIG entry point (immune to the torch
    wrappers that ``faiss.contrib.torch_utils`` installs, which drop the ``params`` argument)."""
    import faiss

    scores = np.empty((len(q), k), dtype=np.float32)
    ids = np.empty((len(q), k), dtype=np.int64)
    index.search_c(
        len(q), faiss.swig_ptr(q), k, faiss.swig_ptr(scores), faiss.swig_ptr(ids), params
    )
    return scores, ids


def _read_meta(path: Path, backend: str) -> dict[str, Any]:
    if not (path / META).is_file():
        raise ValueError(f"index: expected {META} in {path}, found no index directory there")
    meta = json.loads((path / META).read_text())
    if meta.get("backend") != backend:
        raise ValueError(
            f"index: expected a {backend} index in {path}, found {meta.get('backend')!r}"
        )
    return meta


def load_index(path: str | os.PathLike) -> VectorIndex:
    """Open an index directory written by ``FaissIndex.save`` or ``MilvusIndex.save``."""
    path = Path(path)
    if not (path / META).is_file():
        raise ValueError(f"index: expected {META} in {path}, found no index directory there")
    backend = json.loads((path / META).read_text()).get("backend")
    if backend == "faiss":
        return FaissIndex.load(path)
    if backend == "milvus":
        return MilvusIndex.load(path)
    raise ValueError(f"index: expected backend faiss or milvus in {path}, found {backend!r}")


# -- a catalog index directory: the index, the catalog rows it holds, their embeddings ----------
CATALOG_FILE = "catalog.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
VISUAL_META = "visual.json"


def build_catalog_index(
    model: Any,
    catalog: Any,
    out: str | os.PathLike,
    factory: str = "Flat",
    backend: str = "faiss",
    milvus_uri: str = "",
    batch_size: int = 64,
    model_name: str = "",
) -> tuple[VectorIndex, np.ndarray]:
    """Embed ``catalog``'s images with ``model`` and write an index directory ``out``: the index,
    ``catalog.parquet`` (its rows), ``embeddings.npy`` and ``visual.json``.

    Args:
        model: a ``VisNet`` (``embed``, ``dim``).
        catalog: frame with ``product_id``, ``category`` and absolute ``image`` paths
            (``shopml.visual.data.read_catalog``).
        factory / backend / milvus_uri: the FAISS factory string, or Milvus (Lite file in ``out``
            unless a URI is given).

    Returns:
        ``(index, embeddings (n, dim) float32)``.
    """
    from shopml.common.io import write_parquet

    out = Path(out)
    emb = model.embed(list(catalog["image"]), batch_size=batch_size)
    if backend == "faiss":
        idx: VectorIndex = FaissIndex(model.dim, factory)
    elif backend == "milvus":
        out.mkdir(parents=True, exist_ok=True)
        idx = MilvusIndex(model.dim, milvus_uri or str(out / "milvus.db"))
    else:
        raise ValueError(f"backend: expected faiss or milvus, found {backend!r}")
    idx.add(emb, catalog["product_id"].to_numpy(), catalog["category"].to_numpy())
    idx.save(out)
    write_parquet(out / CATALOG_FILE, catalog)
    with atomic_path(out / EMBEDDINGS_FILE) as tmp, open(tmp, "wb") as fh:
        np.save(fh, emb)
    write_json(out / VISUAL_META, {"model": model_name, "dim": model.dim, "count": len(catalog)})
    return idx, emb


def read_index_catalog(index_dir: str | os.PathLike) -> Any:
    """The catalog rows of an index directory written by :func:`build_catalog_index`."""
    from shopml.common.io import read_table

    return read_table(Path(index_dir) / CATALOG_FILE, "index catalog")
