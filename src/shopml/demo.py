"""The end-to-end demo behind ``make demo``: grows with each part of shopml."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console


def run_demo(out: Path, scale: str = "small", seed: int = 0, device: str = "auto") -> None:
    """Generate a world in ``out/world`` and print its summary."""
    from shopml.world.describe import describe_world, print_summary
    from shopml.world.generate import generate_world

    console = Console()
    world_dir = Path(out) / "world"
    console.rule(f"shopml demo: generating a {scale} world in {world_dir}")
    generate_world(world_dir, scale=scale, seed=seed)
    print_summary(describe_world(world_dir), console=console)
