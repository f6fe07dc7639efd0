"""VectorIndex backends: recall against exact search, ids, removal, categories, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from shopml.visual.evaluate import exact_search
from shopml.visual.index import FaissIndex, MilvusIndex, load_index


def _clustered(n, d, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _recall(ids, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, truth, strict=True)])


@pytest.fixture(scope="module")
def data():
    both = _clustered(3050, 32)  # queries from the same distribution as the base
    base, queries = both[:3000], both[3000:]
    ids = np.arange(3000, dtype=np.int64) * 7 + 5
    cats = np.array(["a", "b", "c"])[np.arange(3000) % 3]
    return base, queries, ids, cats


@pytest.mark.parametrize(
    ("factory", "min_recall"),
    [
        ("Flat", 1.0),
        ("HNSW32", 0.9),
        ("IVF64,Flat", 0.9),
        ("IVF64,PQ16x4", 0.3),
        ("IVF64,PQ8x4,RFlat", 0.5),
    ],
)
def test_faiss_matches_exact_search(data, factory, min_recall, tmp_path):
    base, queries, ids, cats = data
    index = FaissIndex(32, factory, nprobe=16, ef_search=64)
    index.add(base, ids, cats)
    assert len(index) == 3000
    scores, got = index.search(queries, 10)
    _, pos = exact_search(queries, base, 10)
    truth = ids[pos]
    assert _recall(got, truth) >= min_recall
    if factory == "Flat":
        np.testing.assert_array_equal(got, truth)
        np.testing.assert_allclose(
            scores, np.sort(queries @ base.T, axis=1)[:, ::-1][:, :10], atol=1e-5
        )
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    s2, g2 = again.search(queries, 10)
    np.testing.assert_array_equal(g2, got)
    np.testing.assert_allclose(s2, scores)


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF64,Flat"])
def test_faiss_remove_and_category_search(data, factory, tmp_path):
    base, queries, ids, cats = data
    index = FaissIndex(32, factory, nprobe=64, ef_search=128)
    index.add(base, ids, cats)
    _, before = index.search(queries[:5], 5)
    gone = np.unique(before[:, 0])
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0
    assert len(index) == 3000 - len(gone)
    _, after = index.search(queries[:5], 5)
    assert not np.isin(after, gone).any()
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx")
    _, after2 = again.search(queries[:5], 5)
    assert not np.isin(after2, gone).any() and len(again) == len(index)
    # category search returns that category only, and matches exact search within it
    _, got = index.search(queries, 5, category="b")
    member = (cats == "b") & ~np.isin(ids, gone)
    _, pos = exact_search(queries, base[member], 5)
    assert np.isin(got, ids[member]).all()
    assert _recall(got, ids[member][pos]) >= (1.0 if factory == "Flat" else 0.85)
    # ids are addable again after removal
    index.add(base[:1] * 0 + base[0], gone[:1], ["b"])


def test_faiss_pads_with_minus_one_and_checks_inputs(data):
    base, queries, ids, cats = data
    index = FaissIndex(32, "Flat")
    index.add(base[:3], ids[:3], cats[:3])
    scores, got = index.search(queries[:2], 5)
    assert got.shape == (2, 5) and (got[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    _, got = index.search(queries[:2], 5, category="nope")
    assert (got == -1).all()
    empty = FaissIndex(32, "HNSW32")
    assert (empty.search(queries[:2], 3)[1] == -1).all()
    with pytest.raises(ValueError, match="k"):
        index.search(queries, 0)
    with pytest.raises(ValueError, match="queries"):
        index.search(queries[:, :8], 3)
    with pytest.raises(ValueError, match="ids"):
        index.add(base[:2], ids[:2], cats[:2])  # already present
    with pytest.raises(ValueError, match="factory"):
        FaissIndex(32, "NotAnIndex")
    with pytest.raises(ValueError, match="trained"):
        FaissIndex(32, "IVF1024,PQ8").add(base[:100], ids[:100])
    with pytest.raises(ValueError, match="index"):
        load_index(base.__class__.__name__)


def test_milvus_lite_backend(data, tmp_path):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    base, queries, ids, cats = data
    n = 400
    index = MilvusIndex(32, str(tmp_path / "m.db"), index_type="FLAT")
    index.add(base[:n], ids[:n], cats[:n])
    assert len(index) == n
    scores, got = index.search(queries[:5], 10)
    _, pos = exact_search(queries[:5], base[:n], 10)
    np.testing.assert_array_equal(got, ids[:n][pos])
    _, got_b = index.search(queries[:5], 10, category="b")
    assert np.isin(got_b, ids[:n][cats[:n] == "b"]).all()
    assert index.remove(got[:, 0]) == len(np.unique(got[:, 0]))
    _, after = index.search(queries[:5], 10)
    assert not np.isin(after, got[:, 0]).any()
    _, many = index.search(queries[:1], n + 50)
    assert many.shape == (1, n + 50) and (many[:, len(index) :] == -1).all()
    index.save(tmp_path / "midx")
    index.close()
    again = load_index(tmp_path / "midx")
    np.testing.assert_array_equal(again.search(queries[:5], 10)[1], after)
