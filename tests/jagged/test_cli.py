"""``shopml jagged check``: the self-test command and its argument errors."""

from __future__ import annotations

from typer.testing import CliRunner

from shopml.cli import app


def test_jagged_check_passes():
    result = CliRunner().invoke(app, ["jagged", "check", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "all 16 ops ok on cpu" in result.output


def test_jagged_check_rejects_bad_device():
    result = CliRunner().invoke(app, ["jagged", "check", "--device", "tpu"])
    assert result.exit_code == 2
    assert "device" in result.output
