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
    """Self-test: every Triton kernel (forward and backward) against the PyTorch reference.

    On CUDA the kernels run directly; on a CPU they run under the Triton interpreter (this
    command re-runs itself with TRITON_INTERPRET=1 when it is not set).
    """
    from shopml.common.devices import resolve_device
    from shopml.jagged import backend
    from shopml.jagged.selfcheck import kernels_runnable, run_selfcheck

    try:
        dev = resolve_device(device)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--device") from exc
    if not backend.HAS_TRITON:
        typer.echo("cannot check the kernels: triton is not installed", err=True)
        raise typer.Exit(1)
    if not kernels_runnable(dev):  # a CPU without the interpreter: Triton reads it at import
        raise typer.Exit(_check_under_interpreter(tol))
    results = run_selfcheck(dev)
    worst = 0.0
    failed = []
    for name, used, err in results:
        worst = max(worst, err)
        ok = err <= tol and "reference" not in used
        failed += [] if ok else [name]
        typer.echo(f"{name:24s} {used:20s} max|err| {err:.2e}  {'ok' if ok else 'FAIL'}")
    if failed:
        typer.echo(
            f"self-check failed: {', '.join(failed)} (max error {worst:.2e}, tol {tol:.0e}; "
            "a 'reference' module means the kernel did not run)",
            err=True,
        )
        raise typer.Exit(1)
    where = "cpu, Triton interpreter" if dev.type == "cpu" else str(dev)
    typer.echo(f"all {len(results)} ops ok on {where} (max error {worst:.2e})")


def _check_under_interpreter(tol: float) -> int:
    """Run ``shopml jagged check --device cpu`` in a child with TRITON_INTERPRET=1; its exit code."""
    import os
    import subprocess
    import sys

    typer.echo("a CPU without TRITON_INTERPRET=1: re-running under the Triton interpreter")
    cmd = [
        sys.executable,
        "-m",
        "shopml.cli",
        "jagged",
        "check",
        "--device",
        "cpu",
        "--tol",
        repr(tol),
    ]
    child = subprocess.run(
        cmd, env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True
    )
    typer.echo(child.stdout, nl=False)
    typer.echo(child.stderr, nl=False, err=True)
    return child.returncode


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
