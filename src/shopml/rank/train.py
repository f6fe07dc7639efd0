"""Train a RankingModel on a world (or a user's files); single process or torchrun DDP.

Single process::

    shopml rank train --world WORLD --out RUN --sequence-backend jagged --epochs 2

Data-parallel (gloo on CPU, NCCL on GPU)::

    torchrun --nproc_per_node 2 -m shopml.rank.train --world WORLD --out RUN

Every step's global batch of ``batch_size`` examples is split between the ranks, and each rank's
loss is ``sum(per-example loss) * world_size / global batch size``; DDP averages gradients over the
ranks, so the update is the single-process update up to floating-point summation order.

A run directory holds::

    checkpoint/        model weights + config + vocabularies (shopml.common.checkpoint), every epoch
    optimizer.pt       AdamW state and the epoch reached (for --resume)
    metrics.json       hold-out metrics at the end: auc, logloss, normalized_entropy, examples, ...
    train_log.json     per-epoch train loss and examples/s
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from shopml.common.checkpoint import config_from_dict, load_checkpoint, save_checkpoint
from shopml.common.devices import resolve_device
from shopml.common.io import atomic_path, write_json
from shopml.common.seeding import seed_everything
from shopml.rank.config import SEQUENCE_BACKENDS, RankConfig
from shopml.rank.data import (
    RankTables,
    build_vocab,
    load_examples,
    log_fill,
)
from shopml.rank.evaluate import CHECKPOINT_KIND, evaluate_model
from shopml.rank.loader import BatchLoader, history_layout


def _dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


class _Progress:
    """A rich progress bar when rich is importable and enabled, else periodic plain lines."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.enabled = enabled
        self.total = total
        self.bar = None
        self.done = 0
        self.last_print = 0.0
        self.description = description
        if not enabled:
            return
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            return
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[eps]:,.0f} ex/s"),
            TimeElapsedColumn(),
        )
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, loss=float("nan"), eps=0.0)

    def update(self, completed: int, loss: float, eps: float) -> None:
        self.done = completed
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, loss=loss, eps=eps)
        elif time.time() - self.last_print > 5 or self.done == self.total:
            self.last_print = time.time()
            print(f"{self.description} {self.done}/{self.total} loss {loss:.4f} {eps:,.0f} ex/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _save(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: RankConfig,
    extra: dict[str, Any],
) -> None:
    save_checkpoint(out / "checkpoint", model.state_dict(), config, CHECKPOINT_KIND, extra=extra)
    with atomic_path(out / "optimizer.pt") as tmp:
        torch.save({"optimizer": optimizer.state_dict(), "epoch": extra["epoch"]}, tmp)


def train(
    world: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: RankConfig,
    *,
    device: str = "auto",
    compile: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on ``world``'s train impressions, evaluate on its test ones, write the run to ``out``.

    Args:
        world: world directory (catalog/events/impressions parquet files).
        out: run directory (created).
        config: settings; vocabulary sizes are filled in from the catalog.
        device: "auto", "cpu" or "cuda[:N]" (under torchrun on CUDA: ``cuda:LOCAL_RANK``).
        compile: wrap the model in ``torch.compile``.
        resume: continue from ``out``'s last checkpoint (its config wins, except ``epochs``).
        progress: show a progress bar (rank 0 only).

    Returns:
        The hold-out metrics (also written to ``out/metrics.json`` by rank 0).

    Raises:
        ValueError: bad inputs, or ``out`` already holding a checkpoint without ``resume``.
    """
    rank, world_size, local_rank = _dist_env()
    out = Path(out)
    dev = resolve_device(device)
    distributed = world_size > 1
    if distributed:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        metrics = _train(world, out, config, dev, compile, resume, progress, rank, world_size)
        if distributed:
            # rank 0 evaluates alone: the others wait for it rather than tear their end of the
            # process group down while it is still connected (CI once saw gloo abort a rank
            # in that window)
            dist.barrier()
        return metrics
    finally:
        if distributed:
            # the DDP wrapper's reducer holds the process group: free it now, while the
            # interpreter is whole, not during its shutdown
            gc.collect()
            if dist.is_initialized():
                dist.destroy_process_group()


def _train(
    world: str | os.PathLike[str],
    out: Path,
    config: RankConfig,
    dev: torch.device,
    compile: bool,
    resume: bool,
    progress: bool,
    rank: int,
    world_size: int,
) -> dict[str, Any]:
    from shopml.rank.model import RankingModel

    ckpt_dir = out / "checkpoint"
    start_epoch = 0
    saved_state = saved_opt = None
    if resume:
        if not ckpt_dir.is_dir():
            raise ValueError(f"resume: expected a checkpoint in {ckpt_dir}, found none")
        saved_state, meta = load_checkpoint(ckpt_dir, CHECKPOINT_KIND)
        saved_config = config_from_dict(RankConfig, meta["config"])
        config = saved_config.replace(epochs=config.epochs)
        start_epoch = int(meta["extra"]["epoch"])
        saved_opt = torch.load(out / "optimizer.pt", map_location="cpu", weights_only=True)
    elif ckpt_dir.exists():
        raise ValueError(
            f"out: {out} already holds a checkpoint; pass --resume to continue it or choose "
            "another directory"
        )

    tables = RankTables.from_world(world)
    vocab = build_vocab(tables.catalog)
    config = config.replace(
        num_items=vocab.num_items, num_categories=vocab.num_categories, num_brands=vocab.num_brands
    )
    train_ex, test_ex = load_examples(
        tables,
        vocab,
        config.max_history,
        config.num_time_buckets,
        config.max_train_examples,
        config.max_eval_examples,
    )

    seed_everything(config.seed)
    model = RankingModel(config).to(dev)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    if saved_state is not None:
        model.load_state_dict(saved_state)
        optimizer.load_state_dict(saved_opt["optimizer"])
    step_model: torch.nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if compile:
        step_model = torch.compile(step_model)

    use_cuda = dev.type == "cuda"
    loader = BatchLoader(
        train_ex,
        config.batch_size,
        history_layout(config.sequence_backend),
        shuffle=True,
        seed=config.seed,
        rank=rank,
        world_size=world_size,
        num_workers=config.num_workers,
        pin_memory=use_cuda,
    )
    log_path = out / "train_log.json"  # per-epoch records, appended to on --resume
    log: list[dict[str, Any]] = (
        json.loads(log_path.read_text()) if resume and log_path.is_file() else []
    )
    extra_base = {"vocab": vocab.to_dict(), "train_history": log_fill(train_ex)}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    # Batches are built with valid offsets (checked on the CPU when collated): skip the jagged
    # ops' content checks, each a host-device synchronisation on CUDA.
    from shopml.jagged.checks import checks_enabled

    with checks_enabled(False):
        _epochs(
            out, model, step_model, optimizer, loader, config, dev, start_epoch, progress, rank,
            world_size, log, extra_base,
        )  # fmt: skip

    metrics: dict[str, Any] = {}
    if rank == 0:
        metrics = evaluate_model(
            model, test_ex, batch_size=max(config.batch_size, 256), device=dev, autocast=use_cuda
        )
        metrics.update(
            {
                "split": "test",
                "sequence_backend": config.sequence_backend,
                "max_history": config.max_history,
                "epochs": config.epochs,
                "world_size": world_size,
                "device": str(dev),
                "train_examples": len(train_ex),
                "train_examples_per_s": log[-1]["examples_per_s"] if log else None,
                "train_loss": log[-1]["train_loss"] if log else None,
            }
        )
        write_json(out / "metrics.json", metrics)
    return metrics


def _epochs(
    out: Path,
    model: torch.nn.Module,
    step_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: BatchLoader,
    config: RankConfig,
    dev: torch.device,
    start_epoch: int,
    progress: bool,
    rank: int,
    world_size: int,
    log: list[dict[str, Any]],
    extra_base: dict[str, Any],
) -> None:
    """The training epochs: steps, progress, per-epoch checkpoint and log (rank 0 writes)."""
    use_cuda = dev.type == "cuda"
    log_path = out / "train_log.json"
    for epoch in range(start_epoch, config.epochs):
        loader.set_epoch(epoch)
        sizes = loader.global_batch_sizes()
        bar = _Progress(progress and rank == 0, len(sizes), f"epoch {epoch + 1}/{config.epochs}")
        model.train()
        total_n, t0 = 0, time.perf_counter()
        loss_acc = torch.zeros((), device=dev)
        for step, batch in enumerate(loader):
            batch = batch.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_cuda):
                logits = step_model(batch.history, batch.candidates)  # (b,)
            loss_sum = F.binary_cross_entropy_with_logits(
                logits.float(), batch.labels, reduction="sum"
            )
            loss = loss_sum * (world_size / sizes[step])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            loss_acc += loss_sum.detach()
            total_n += sizes[step]
            if bar.enabled and (step % 10 == 0 or step == len(sizes) - 1):
                # rank 0's mean loss so far (a host sync every 10 steps, rank 0 only)
                local_n = max(1, total_n // world_size)
                elapsed = time.perf_counter() - t0
                bar.update(step + 1, float(loss_acc) / local_n, total_n / max(elapsed, 1e-9))
        bar.close()
        if world_size > 1:
            dist.all_reduce(loss_acc)
        elapsed = time.perf_counter() - t0
        total_loss = float(loss_acc) / max(total_n, 1)
        log.append(
            {
                "epoch": epoch + 1,
                "train_loss": total_loss,
                "examples": total_n,
                "examples_per_s": total_n / max(elapsed, 1e-9),
                "seconds": elapsed,
            }
        )
        if rank == 0:
            _save(out, model, optimizer, config, {**extra_base, "epoch": epoch + 1})
            write_json(log_path, log)


# the RankConfig fields a training command sets (the rest come from the data or the defaults);
# `shopml rank train` (typer) and this argparse entry (torchrun, machines without typer) share it
CLI_FIELDS = (
    "sequence_backend", "max_history", "epochs", "batch_size", "lr", "embed_dim", "num_heads",
    "num_layers", "num_bias_buckets", "attention_backend", "num_workers", "max_train_examples",
    "max_eval_examples", "seed",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    defaults = RankConfig()
    p = argparse.ArgumentParser(
        prog="python -m shopml.rank.train", description="Train the shopml ranking model."
    )
    p.add_argument("--world", required=True, help="world directory")
    p.add_argument("--out", required=True, help="run directory")
    for name in CLI_FIELDS:
        default = getattr(defaults, name)
        choices = SEQUENCE_BACKENDS if name == "sequence_backend" else None
        p.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default, choices=choices
        )
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args: argparse.Namespace | dict) -> RankConfig:
    """The RankConfig of parsed options (an argparse namespace, or a dict of CLI_FIELDS)."""
    values = args if isinstance(args, dict) else vars(args)
    return RankConfig(**{name: values[name] for name in CLI_FIELDS})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m shopml.rank.train`` / torchrun; exit code 2 on bad inputs."""
    args = build_parser().parse_args(argv)
    try:
        metrics = train(
            args.world,
            args.out,
            config_from_args(args),
            device=args.device,
            compile=args.compile,
            resume=args.resume,
            progress=not args.no_progress,
        )
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    if metrics:
        print(
            json.dumps(
                {k: metrics[k] for k in ("auc", "logloss", "normalized_entropy", "examples")}
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
