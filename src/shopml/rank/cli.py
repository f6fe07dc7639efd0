"""``shopml rank``: train and evaluate the click-through ranking model (thin; work lives in the part).

The one entry point, also for data-parallel runs::

    torchrun --nproc_per_node 2 -m shopml.rank.cli train --world WORLD --out RUN
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shopml.common.cli import config_options, exit_on_value_error
from shopml.rank.config import RankConfig

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)

_METRIC_KEYS = ("auc", "logloss", "normalized_entropy", "examples")
# the RankConfig fields `train` sets as options, with their defaults from the dataclass (the rest
# come from the data or keep the dataclass's defaults)
_HELP = {
    "sequence_backend": "jagged, padded or pooling.",
    "max_history": "Most recent events kept per impression.",
    "epochs": "Training epochs.",
    "batch_size": "Examples per step (global under DDP).",
    "lr": "AdamW learning rate.",
    "embed_dim": "Embedding / encoder width.",
    "num_layers": "Jagged self-attention blocks.",
    "num_heads": "Attention heads.",
    "num_bias_buckets": "Relative-time attention bias buckets (0: no bias).",
    "attention_backend": "Jagged attention kernels: auto, triton or reference.",
    "num_workers": "Data-loader workers.",
    "max_train_examples": "Train on the most recent N train impressions (0: all).",
    "max_eval_examples": "Evaluate on the first N test impressions (0: all).",
    "seed": "Random seed.",
    "activation_memory_budget": "Compiled GPU step: share of activations saved for the backward "
    "(1: AOTAutograd's choice; 0.5 recomputes more: less memory, a slower step).",
}


@app.command("train")
@exit_on_value_error
@config_options(RankConfig, list(_HELP), into="config", help=_HELP)
def train_cmd(
    world: Annotated[Path, typer.Option(help="World directory (catalog, events, impressions).")],
    out: Annotated[Path, typer.Option(help="Run directory to write.")],
    config: RankConfig,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the model (default: inside the CUDA graphs of runs of at least "
            "2,000 steps; a compile failure falls back to the uncompiled graphs).",
            show_default=False,
        ),
    ] = None,
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
