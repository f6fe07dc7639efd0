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


@app.command()
def warmup(
    head_dims: Annotated[
        str, typer.Option(help="Comma-separated head dims, e.g. 64,128.")
    ] = "64,128",
    dtype: Annotated[str, typer.Option(help="bf16, fp16 or fp32.")] = "bf16",
    max_seqlens: Annotated[
        str, typer.Option(help="Comma-separated max lengths; one per power-of-two bucket suffices.")
    ] = "1024",
    heads: Annotated[int, typer.Option(help="Heads of the warm-up batch.", min=1)] = 2,
    causal: Annotated[str, typer.Option(help="'no', 'yes' or 'both'.")] = "no",
    device: Annotated[str, typer.Option(help="'auto' or 'cuda[:N]'.")] = "auto",
) -> None:
    """Precompile (and tune where nothing is remembered) the attention kernels for these shapes."""
    from shopml.common.devices import resolve_device
    from shopml.jagged.triton.warmup import (
        parse_causal,
        parse_dtype,
        parse_ints,
        warmup_attention,
    )

    try:
        dims = parse_ints(head_dims, "--head-dims", 16, 256)
        lengths = parse_ints(max_seqlens, "--max-seqlens", 1, 1 << 20)
        dt = parse_dtype(dtype)
        flags = parse_causal(causal)
        dev = resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if dev.type != "cuda":
        raise typer.BadParameter(
            f"--device: warmup compiles GPU kernels; expected a CUDA device, found {dev}"
        )
    rows = warmup_attention(dims, dt, lengths, heads=heads, causal=flags, device=dev)
    for r in rows:
        typer.echo(
            f"head_dim {r['head_dim']:4d}  max_seqlen {r['max_seqlen']:7d}  causal {r['causal']!s:5}"
            f"  {r['seconds']:7.2f} s  tiles: {', '.join(r['sources']) or 'already chosen'}"
        )
