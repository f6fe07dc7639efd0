"""common.cli.config_options: options from a config dataclass, its errors, and field_docs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from shopml.common.cli import config_options, exit_on_value_error, field_docs


@dataclass(frozen=True)
class Run:
    """A run.

    Attributes:
        epochs: passes over
            the data.
        lr: learning rate (``> 0``).
        fast: skip the slow parts.
        name: not exposed.
    """

    epochs: int = 3
    lr: float = 0.5
    fast: bool = False
    name: str = "run"

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr: expected > 0, found {self.lr}")


def _app():
    app = typer.Typer()

    @app.command()
    @exit_on_value_error
    @config_options(Run, ["epochs", "lr", "fast"], into="run")
    def main(out: str, run: Run, verbose: bool = False) -> None:
        typer.echo(f"{out} {run} {verbose}")

    return app


def test_options_carry_type_default_and_doc():
    runner = CliRunner()
    res = runner.invoke(_app(), ["o", "--lr", "0.25", "--fast", "--verbose"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "o Run(epochs=3, lr=0.25, fast=True, name='run') True"
    assert "Run(epochs=3, lr=0.5" in runner.invoke(_app(), ["o"]).output
    help_text = runner.invoke(_app(), ["--help"], terminal_width=200).output
    assert "passes over the data." in help_text and "learning rate (> 0)." in help_text
    assert "--name" not in help_text
    bad = runner.invoke(_app(), ["o", "--epochs", "two"])
    assert bad.exit_code == 2  # typer's own type check
    neg = runner.invoke(_app(), ["o", "--lr", "-1"])
    assert neg.exit_code == 2 and "lr: expected > 0" in neg.output  # the dataclass's check


def test_field_docs_joins_continuation_lines():
    assert field_docs(Run)["epochs"] == "passes over the data."


def test_misuse_is_refused():
    with pytest.raises(ValueError, match=r"fields: expected fields of Run .* \['steps'\]"):
        config_options(Run, ["steps"], into="run")
    with pytest.raises(ValueError, match="cls: expected a dataclass"):
        config_options(dict, into="run")

    def f(run: Run, epochs: int = 1) -> None: ...

    with pytest.raises(ValueError, match="into: expected a parameter of f, found 'cfg'"):
        config_options(Run, ["lr"], into="cfg")(f)

    with pytest.raises(ValueError, match=r"fields: \['epochs'\] are already parameters of f"):
        config_options(Run, ["epochs"], into="run")(f)
