"""A work directory over the tiny world with every artefact trained small, and a client on it."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from shopml.cli import app as cli
from shopml.serve.app import create_app
from shopml.serve.settings import Settings

_runner = CliRunner()


def _cli(*args: str) -> None:
    result = _runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def workdir(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    world = root / "world"
    shutil.copytree(tiny_world, world)
    visual = root / "visual"
    _cli("visual", "train", "--world", str(world), "--out", str(visual / "model"),
         "--trunk", "efficientnet_lite0", "--image-size", "64", "--embedding-dim", "32",
         "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8",
         "--samples-per-product", "2", "--no-progress", "--device", "cpu")  # fmt: skip
    _cli("visual", "index", "--model", str(visual / "model"), "--world", str(world),
         "--out", str(visual / "index"), "--device", "cpu")  # fmt: skip
    _cli("visual", "recommend", "--model", str(visual / "model"), "--index", str(visual / "index"),
         "--k", "10", "--out", str(visual / "recs.parquet"), "--device", "cpu",
         "--within-category")  # fmt: skip
    _cli("forecast", "train", "--data", str(world), "--out", str(root / "forecast"),
         "--horizon", "14", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "32",
         "--hidden", "16", "--device", "cpu")  # fmt: skip
    _cli("rank", "train", "--world", str(world), "--out", str(root / "rank"), "--epochs", "1",
         "--embed-dim", "32", "--max-history", "32", "--batch-size", "256", "--device", "cpu",
         "--attention-backend", "reference")  # fmt: skip
    return root


@pytest.fixture(scope="session")
def client(workdir):
    with TestClient(create_app(Settings(workdir=workdir, max_upload_bytes=2_000_000))) as c:
        yield c
