"""``shopml visual`` end to end on the tiny world, and its answers to bad inputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from shopml.cli import app

runner = CliRunner()
SMALL = ["--image-size", "64", "--embedding-dim", "32", "--deep-dim", "64", "--device", "cpu"]


def _ok(args):
    res = runner.invoke(app, ["visual", *args])
    assert res.exit_code == 0, res.output
    return res.output


def _fails(args, match):
    res = runner.invoke(app, ["visual", *args])
    assert res.exit_code == 2, res.output
    assert match in res.output
    return res.output


@pytest.fixture(scope="module")
def run_dir(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    _ok(["train", "--world", str(tiny_world), "--out", str(out), "--trunk", "efficientnet_lite0",
         "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--samples-per-product",
         "2", "--no-progress", *SMALL])  # fmt: skip
    return out


def test_cli_train_index_evaluate_recommend_search(tiny_world, run_dir, tmp_path):
    visual_world = tiny_world
    assert (run_dir / "model" / "model.safetensors").is_file()
    index = tmp_path / "index"
    _ok(["index", "--model", str(run_dir), "--world", str(visual_world), "--out", str(index),
         "--factory", "HNSW32", "--device", "cpu"])  # fmt: skip
    out = _ok(["evaluate", "--model", str(run_dir), "--world", str(visual_world), "--index",
               str(index), "--out", str(tmp_path / "m.json"), "--device", "cpu"])  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"recall@1", "recall@5", "recall@10", "recall@20", "per_category"} <= set(metrics)
    street = pd.read_parquet(visual_world / "street.parquet")
    n_test = int((street["split"] == "test").sum())
    assert (
        metrics["queries"] == n_test
        and json.loads(out.strip().splitlines()[-1])["queries"] == n_test
    )
    _ok(["recommend", "--model", str(run_dir), "--index", str(index), "--k", "5",
         "--out", str(tmp_path / "recs.parquet")])  # fmt: skip
    recs = pd.read_parquet(tmp_path / "recs.parquet")
    catalog = pd.read_parquet(visual_world / "catalog.parquet")
    # the default: look-alikes within the product's category (a small category may fill fewer)
    assert 0.9 * 5 * len(catalog) <= len(recs) <= 5 * len(catalog)
    category = dict(zip(catalog["product_id"], catalog["category"], strict=True))
    assert all(
        category[a] == category[b] for a, b in zip(recs["product_id"], recs["rec_id"], strict=True)
    )
    style = dict(zip(catalog["product_id"], catalog["style_id"], strict=True))
    assert (recs["product_id"] != recs["rec_id"]).all()
    assert all(
        style[a] != style[b] for a, b in zip(recs["product_id"], recs["rec_id"], strict=True)
    )
    photo = visual_world / street["image"].iloc[0]
    out = _ok(["search", str(photo), "--model", str(run_dir), "--index", str(index), "--k", "3",
               "--device", "cpu"])  # fmt: skip
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3] and all("product_id" in r for r in rows)
    cat = str(catalog["category"].iloc[0])
    out = _ok(["search", str(photo), "--model", str(run_dir), "--index", str(index), "--k", "500",
               "--category", cat, "--device", "cpu"])  # fmt: skip
    rows = [json.loads(line) for line in out.strip().splitlines()]
    assert len(rows) == int((catalog["category"] == cat).sum())  # k > category: all of it, no -1
    assert {r["category"] for r in rows} == {cat}


def test_cli_pretrained_model_and_milvus_backend(tiny_world, tmp_path):
    visual_world = tiny_world
    pytest.importorskip("milvus_lite")
    model = "pretrained:efficientnet_lite0@64"
    _ok(["index", "--model", model, "--world", str(visual_world), "--out", str(tmp_path / "mv"),
         "--backend", "milvus", "--device", "cpu"])  # fmt: skip
    _ok(["evaluate", "--model", model, "--world", str(visual_world), "--index", str(tmp_path / "mv"),
         "--within-category", "--out", str(tmp_path / "m.json"), "--device", "cpu"])  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    # the frozen trunk beats chance (about 1 in 20 within a tiny world's category; measured 0.21)
    assert metrics["within_category"] and metrics["recall@1"] >= 0.1, metrics


def test_cli_bad_inputs(tiny_world, run_dir, tmp_path):
    visual_world = tiny_world
    _fails(["evaluate", "--model", str(tmp_path / "nope"), "--world", str(visual_world),
            "--out", str(tmp_path / "m.json")], "model")  # fmt: skip
    _fails(["index", "--model", "pretrained:alexnet", "--world", str(visual_world),
            "--out", str(tmp_path / "i")], "trunk")  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    pd.read_parquet(visual_world / "catalog.parquet").iloc[:0].to_parquet(empty / "catalog.parquet")
    _fails(["index", "--model", str(run_dir), "--world", str(empty), "--out", str(tmp_path / "i"),
            "--device", "cpu"], "at least one product")  # fmt: skip
    index = tmp_path / "index"
    _ok(["index", "--model", str(run_dir), "--world", str(visual_world), "--out", str(index),
         "--device", "cpu"])  # fmt: skip
    _fails(["recommend", "--model", str(run_dir), "--index", str(index), "--k", "1000",
            "--out", str(tmp_path / "r.parquet")], "k: expected at most")  # fmt: skip
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _fails(
        ["search", str(corrupt), "--model", str(run_dir), "--index", str(index)], "could not decode"
    )
    _fails(["search", str(tmp_path / "missing.png"), "--model", str(run_dir), "--index", str(index)],
           "found none")  # fmt: skip
    _fails(["search", str(corrupt), "--model", "pretrained:efficientnet_lite0@64", "--index",
            str(index)], "dim")  # fmt: skip
    _fails(["train", "--world", str(empty), "--out", str(tmp_path / "r2"), "--trunk",
            "efficientnet_lite0", *SMALL], "at least one product")  # fmt: skip
    _fails(["train", "--world", str(visual_world), "--out", str(tmp_path / "r3"), "--miner", "x",
            *SMALL], "miner")  # fmt: skip
    assert not (tmp_path / "r.parquet").exists()


def test_cli_evaluate_own_photos_without_a_split(tiny_world, run_dir, tmp_path):
    """A user's own street photos have no ``split`` column: ``--split all`` must not need it
    (issue #16's rough edge); a named split says what is missing."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "images").symlink_to(tiny_world / "images")
    for name in ("catalog.parquet", "street.parquet"):
        df = pd.read_parquet(tiny_world / name)
        df.drop(columns=["split"], errors="ignore").to_parquet(own / name)
    _ok(["evaluate", "--model", str(run_dir), "--world", str(own), "--split", "all",
         "--out", str(tmp_path / "m.json"), "--device", "cpu"])  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["queries"] == 80 and metrics["split"] == "all"
    _fails(["evaluate", "--model", str(run_dir), "--world", str(own), "--split", "test",
            "--out", str(tmp_path / "t.json"), "--device", "cpu"], "['split']")  # fmt: skip
    _fails(["evaluate", "--model", str(run_dir), "--world", str(own), "--split", "val",
            "--out", str(tmp_path / "t.json"), "--device", "cpu"], "split: expected one of")  # fmt: skip
