"""Test-wide fixtures and the ``gpu`` marker's skip rule (CUDA is queried at run time, not import)."""

from __future__ import annotations

import pytest

from shopml.common.devices import has_cuda


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None and not has_cuda():
        pytest.skip("needs a CUDA device")


@pytest.fixture(autouse=True)
def _seed() -> None:
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A tiny synthetic world directory, generated once per test session (seed 0)."""
    from shopml.world.generate import generate_world

    return generate_world(tmp_path_factory.mktemp("world") / "tiny", scale="tiny", seed=0)
