"""Every docstring example in ``src/shopml`` runs (and holds) in CI: each module whose source has a
``>>>`` example is imported and run through :func:`doctest.testmod`."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
WITH_EXAMPLES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
    for p in (SRC / "shopml").rglob("*.py")
    if ">>>" in p.read_text()
)


def test_examples_are_found():
    assert {"shopml.common.cli", "shopml.formats.readers", "shopml.jagged.tensor"} <= set(
        WITH_EXAMPLES
    )


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples(module):
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS, raise_on_error=False
    )
    assert result.attempted > 0, f"{module}: no example ran"
    assert result.failed == 0, f"{module}: {result.failed} of {result.attempted} examples failed"
