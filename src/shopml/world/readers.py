"""Moved to :mod:`shopml.formats.readers`. Kept only while ``shopml.serve.artefacts`` imports this
name (the product branch owns that line); delete it once nothing does."""

from shopml.formats.readers import read_catalog

__all__ = ["read_catalog"]
