"""``shopml jagged``: quick checks of the jagged kernels (thin; work lives in shopml.jagged)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def check(
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda[:N]'.")] = "auto",
    tol: Annotated[
        float, typer.Option(help="Largest allowed max-abs error vs the reference.")
    ] = 1e-4,
) -> None:
    """Self-test: every op (forward and backward) against the PyTorch reference on tiny inputs."""
    from shopml.common.devices import resolve_device
    from shopml.jagged.selfcheck import run_selfcheck

    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from exc
    results = run_selfcheck(dev)
    worst = 0.0
    for name, used, err in results:
        worst = max(worst, err)
        flag = "ok" if err <= tol else "FAIL"
        typer.echo(f"{name:24s} {used:16s} max|err| {err:.2e}  {flag}")
    if worst > tol:
        typer.echo(f"self-check failed: max error {worst:.2e} > tol {tol:.0e}", err=True)
        raise typer.Exit(1)
    typer.echo(f"all {len(results)} ops ok on {dev} (max error {worst:.2e})")
