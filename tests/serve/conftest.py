"""A work directory over the tiny world, and a TestClient on it."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from shopml.serve.app import create_app
from shopml.serve.settings import Settings


@pytest.fixture(scope="session")
def workdir(tiny_world, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(tiny_world, root / "world")
    return root


@pytest.fixture(scope="session")
def client(workdir):
    with TestClient(create_app(Settings(workdir=workdir))) as c:
        yield c
