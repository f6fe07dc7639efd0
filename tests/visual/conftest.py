"""Fixtures of the visual tests: a drawn mini world (session-scoped)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def visual_world(tmp_path_factory):
    from synthetic import make_world

    return make_world(tmp_path_factory.mktemp("visual_world"), size=64, seed=0)
