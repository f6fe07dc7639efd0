"""The ``shopml`` command: assembles one typer sub-app per part.

Each part keeps its own thin sub-app in ``shopml/<part>/cli.py``; real work lives in the parts.
Sub-apps import their heavy dependencies inside the commands, so ``shopml --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Annotated

import typer

# Large CPU tensors on transparent huge pages (PyTorch reads this once, at its first CPU
# allocation, so before any part imports torch): on 2 CPU cores the tiny demo's forecast step
# took 118 s instead of 179-188, the run's system time (page faults) 72 s instead of 167-192,
# results and peak memory unchanged (benchmarks/README.md, "CPU: huge pages").
# THP_MEM_ALLOC_ENABLE=0 keeps 4 KiB pages.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from shopml import __version__
from shopml.common.cli import exit_on_value_error

app = typer.Typer(
    name="shopml",
    help="Rank, forecast and search one product catalog on GPUs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# part -> help line; a part's sub-app is registered only once its cli module exists.
PARTS = {
    "world": "Generate and describe synthetic retail worlds.",
    "jagged": "Jagged tensor kernels: a self-check of every op against its reference.",
    "rank": "Train and evaluate the click-through ranking model.",
    "forecast": "Train, predict and backtest AR-MDN demand forecasts.",
    "visual": "Train VisNet, index the catalog, search and recommend.",
}

for _part, _help in PARTS.items():
    try:
        _module = importlib.import_module(f"shopml.{_part}.cli")
    except ModuleNotFoundError as _exc:
        if _exc.name not in (f"shopml.{_part}", f"shopml.{_part}.cli"):
            raise
        continue
    app.add_typer(_module.app, name=_part, help=_help)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shopml {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """shopml: one system over one product catalog."""


@app.command()
@exit_on_value_error
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the world, models and report.")] = Path(
        "demo-out"
    ),
    scale: Annotated[str, typer.Option(help="World scale: tiny, small, medium, large.")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Generate a world, train and evaluate ranking, forecasting and visual search on it, and
    write DIR/report.html; then `shopml serve --workdir DIR` serves it."""
    from shopml.demo import run_demo

    run_demo(out=out, scale=scale, seed=seed, device=device)


def _log_config(level: str) -> dict:
    """uvicorn's logging config with timestamps, and the service's own ``shopml`` logger."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for formatter in config["formatters"].values():
        formatter["fmt"] = "%(asctime)s " + formatter["fmt"]
    config["loggers"]["shopml"] = {"handlers": ["default"], "level": level.upper()}
    return config


@app.command()
@exit_on_value_error
def serve(
    workdir: Annotated[Path, typer.Option(help="A work directory written by `shopml demo`.")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    device: Annotated[
        str | None, typer.Option(help="cpu or cuda for the models [default: cpu]")
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option(help="critical, error, warning, info or debug [default: info]"),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="Log every request [default: on]"),
    ] = None,
) -> None:
    """Serve the HTTP API and web page over WORKDIR's artefacts.

    Options left out come from SHOPML_<OPTION> environment variables (SHOPML_LOG_LEVEL, ...), else
    the defaults. It logs its address at start, then one access line per request.
    """
    import os

    import uvicorn

    from shopml.serve.settings import Settings

    if not workdir.is_dir():
        raise typer.BadParameter(f"expected a directory, found {workdir}", param_hint="--workdir")
    settings = Settings.from_env(
        workdir=workdir.resolve(), device=device, log_level=log_level, access_log=access_log
    )
    # the workers build their settings from the environment (uvicorn's factory takes no arguments)
    os.environ["SHOPML_WORKDIR"] = str(settings.workdir)
    os.environ["SHOPML_DEVICE"] = settings.device
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    typer.echo(
        f"shopml serve: {settings.workdir} at {url}/ (API docs {url}/docs), "
        f"{workers} worker(s), log level {settings.log_level}",
        err=True,
    )
    uvicorn.run(
        "shopml.serve.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        access_log=settings.access_log,
        log_config=_log_config(settings.log_level),
    )


if __name__ == "__main__":
    app()
