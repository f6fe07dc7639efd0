"""``shopml rank``: train and evaluate the click-through ranking model (thin; work lives in the part).

The one entry point, also for data-parallel runs::

    torchrun --nproc_per_node 2 -m shopml.rank.cli train --world WORLD --out RUN
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shopml.common.cli import exit_on_value_error
from shopml.rank.config import RankConfig

_D = RankConfig()  # the defaults (one place: the dataclass)
app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)

_METRIC_KEYS = ("auc", "logloss", "normalized_entropy", "examples")
# the RankConfig fields `train` sets (the rest come from the data or the defaults)
CONFIG_OPTIONS = (
    "sequence_backend", "max_history", "epochs", "batch_size", "lr", "embed_dim", "num_heads",
    "num_layers", "num_bias_buckets", "attention_backend", "num_workers", "max_train_examples",
    "max_eval_examples", "seed",
)  # fmt: skip


@app.command("train")
@exit_on_value_error
def train_cmd(
    world: Annotated[Path, typer.Option(help="World directory (catalog, events, impressions).")],
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
    sequence_backend: Annotated[
        str, typer.Option(help="jagged, padded or pooling.")
    ] = _D.sequence_backend,
    max_history: Annotated[
        int, typer.Option(help="Most recent events kept per impression.")
    ] = _D.max_history,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = _D.epochs,
    batch_size: Annotated[
        int, typer.Option(help="Examples per step (global under DDP).")
    ] = _D.batch_size,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = _D.lr,
    embed_dim: Annotated[int, typer.Option(help="Embedding / encoder width.")] = _D.embed_dim,
    num_layers: Annotated[int, typer.Option(help="Jagged self-attention blocks.")] = _D.num_layers,
    num_heads: Annotated[int, typer.Option(help="Attention heads.")] = _D.num_heads,
    num_bias_buckets: Annotated[
        int, typer.Option(help="Relative-time attention bias buckets (0: no bias).")
    ] = _D.num_bias_buckets,
    attention_backend: Annotated[
        str, typer.Option(help="Jagged attention kernels: auto, triton or reference.")
    ] = _D.attention_backend,
    num_workers: Annotated[int, typer.Option(help="Data-loader workers.")] = _D.num_workers,
    max_train_examples: Annotated[
        int, typer.Option(help="Train on the most recent N train impressions (0: all).")
    ] = _D.max_train_examples,
    max_eval_examples: Annotated[
        int, typer.Option(help="Evaluate on the first N test impressions (0: all).")
    ] = _D.max_eval_examples,
    seed: Annotated[int, typer.Option(help="Random seed.")] = _D.seed,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="Use torch.compile.")] = False,
    step: Annotated[
        str,
        typer.Option(help="auto (CUDA graphs on one GPU for jagged/pooling), graphs or eager."),
    ] = "auto",
    progress: Annotated[
        bool, typer.Option(help="Report progress (plain lines when not on a terminal).")
    ] = True,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT's checkpoint.")
    ] = False,
) -> None:
    """Train on the world's train impressions; write checkpoints and RUN/metrics.json."""
    from shopml.rank.train import train

    options = locals()
    config = RankConfig(**{name: options[name] for name in CONFIG_OPTIONS})
    metrics = train(
        world,
        out,
        config,
        device=device,
        compile=compile,
        resume=resume,
        progress=progress,
        step=step,
    )
    if metrics:  # rank 0 of a data-parallel run (the others return no metrics)
        typer.echo(json.dumps({k: metrics[k] for k in _METRIC_KEYS}))


@app.command("evaluate")
@exit_on_value_error
def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Run directory written by `shopml rank train`.")],
    world: Annotated[Path, typer.Option(help="World directory to evaluate on.")],
    out: Annotated[Path | None, typer.Option(help="Write the metrics JSON here.")] = None,
    split: Annotated[str, typer.Option(help="train or test impressions.")] = "test",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Evaluate a trained run: prints (and writes) auc, logloss, normalized entropy, examples."""
    from shopml.rank.evaluate import evaluate_run

    metrics = evaluate_run(model, world, out, split=split, device=device)
    typer.echo(json.dumps({k: metrics[k] for k in _METRIC_KEYS}))


if __name__ == "__main__":  # python -m shopml.rank.cli / torchrun -m shopml.rank.cli
    app()
