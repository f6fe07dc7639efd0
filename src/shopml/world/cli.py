"""``shopml world``: generate and describe synthetic worlds (thin; work lives in shopml.world)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Generate and describe synthetic retail worlds.")

SCALES = ("tiny", "small", "medium", "large")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the world into.")],
    scale: Annotated[str, typer.Option(help="tiny, small, medium or large.")] = "tiny",
    seed: Annotated[int, typer.Option(help="Random seed (non-negative).")] = 0,
    processes: Annotated[int, typer.Option(help="Image workers (0: automatic).")] = 0,
) -> None:
    """Generate a seeded synthetic world (catalog, images, sales, users, events, impressions)."""
    import time

    from rich.console import Console

    from shopml.world.generate import generate_world

    if scale not in SCALES:
        raise typer.BadParameter(
            f"expected one of {list(SCALES)}, found {scale!r}", param_hint="--scale"
        )
    if seed < 0:
        raise typer.BadParameter(f"expected a non-negative int, found {seed}", param_hint="--seed")
    if processes < 0:
        raise typer.BadParameter(f"expected >= 0, found {processes}", param_hint="--processes")
    console = Console()
    t0 = time.perf_counter()
    try:
        path = generate_world(
            out, scale=scale, seed=seed, progress=True, processes=processes or None
        )
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(
        f"wrote a {scale} world (seed {seed}) to {path} in {time.perf_counter() - t0:.1f} s"
    )


@app.command()
def describe(
    world_dir: Annotated[Path, typer.Argument(help="A world directory.")],
) -> None:
    """Print counts, sales statistics and the history-length distribution of a world."""
    from rich.console import Console

    from shopml.world.describe import describe_world, print_summary

    console = Console()
    try:
        summary = describe_world(world_dir)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_summary(summary, console=console)
