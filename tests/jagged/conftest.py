"""Make the helpers of tests/jagged (tolerances.py, cases.py) importable by the test modules; the
attention switches' fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def _reread_attention_settings() -> None:
    mod = sys.modules.get("shopml.jagged.triton.attention_common")  # not imported: nothing kept
    if mod is not None:
        mod.reread_settings()


@pytest.fixture(autouse=True)
def _attention_settings_from_the_environment(request, monkeypatch):
    """The attention's switches (``SHOPML_ATTN_*``) are read once per process and kept: every
    test starts from the environment as it is (and leaves nothing kept behind). Outside the
    Gluon kernels' own files (test_attention_gluon*.py: the kernels and the default routing),
    ``SHOPML_ATTN_GLUON=0``, so that on an sm_90 GPU the Triton kernels' tests test them."""
    if not request.module.__name__.rpartition(".")[2].startswith("test_attention_gluon"):
        monkeypatch.setenv("SHOPML_ATTN_GLUON", "0")
    _reread_attention_settings()
    yield
    _reread_attention_settings()


@pytest.fixture
def attn_switch(monkeypatch):
    """``attn_switch(name, value)`` sets an attention switch for the rest of the test."""

    def switch(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        _reread_attention_settings()

    return switch
