"""The top-level `shopml` command: help and version (the demo: tests/test_demo.py)."""

from __future__ import annotations

from typer.testing import CliRunner

from shopml import __version__
from shopml.cli import app

runner = CliRunner()


def test_help_lists_the_world():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    assert "world" in res.output and "demo" in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"shopml {__version__}"
