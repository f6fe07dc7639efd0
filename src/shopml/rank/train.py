"""Train a RankingModel on a world (or a user's files); single process or torchrun DDP.

Single process::

    shopml rank train --world WORLD --out RUN --sequence-backend jagged --epochs 2

Data-parallel (gloo on CPU, NCCL on GPU)::

    torchrun --nproc_per_node 2 -m shopml.rank.cli train --world WORLD --out RUN

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

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from shopml.common.checkpoint import config_from_dict, load_checkpoint, save_checkpoint
from shopml.common.distributed import DistContext, setup_distributed, teardown_distributed
from shopml.common.io import atomic_path, write_json
from shopml.common.memory import limit_heap_growth
from shopml.common.progress import Progress
from shopml.common.seeding import seed_everything
from shopml.rank.buckets import pack
from shopml.rank.config import RankConfig
from shopml.rank.data import load_examples, log_fill
from shopml.rank.evaluate import CHECKPOINT_KIND, evaluate_model
from shopml.rank.graphs import GraphTrainStep, make_optimizer, resolve_compile, select_step_mode
from shopml.rank.loader import BatchLoader, history_layout
from shopml.rank.tables import RankTables
from shopml.rank.vocab import build_vocab


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
    compile: bool | None = None,
    resume: bool = False,
    progress: bool = True,
    step: str = "auto",
) -> dict[str, Any]:
    """Train on ``world``'s train impressions, evaluate on its test ones, write the run to ``out``.

    Args:
        world: world directory (catalog/events/impressions parquet files).
        out: run directory (created).
        config: settings; vocabulary sizes are filled in from the catalog.
        device: "auto", "cpu" or "cuda[:N]" (under torchrun on CUDA: ``cuda:LOCAL_RANK``).
        compile: run the model through ``torch.compile`` (inside the CUDA graphs of the graph
            step, or around the model in the eager step); None ("auto"): for the graph step of
            a run of at least ``AUTO_COMPILE_MIN_STEPS`` steps
            (:func:`~shopml.rank.graphs.resolve_compile`); a compile failure falls back to the
            uncompiled graph step.
        resume: continue from ``out``'s last checkpoint (its config wins, except ``epochs``).
        progress: report progress (rank 0 only): a bar on a terminal, plain lines otherwise.
        step: "auto" (CUDA graphs where they run, see
            :func:`~shopml.rank.graphs.select_step_mode`), "graphs" or "eager".

    Returns:
        The hold-out metrics (also written to ``out/metrics.json`` by rank 0).

    Raises:
        ValueError: bad inputs, or ``out`` already holding a checkpoint without ``resume``.
    """
    limit_heap_growth()
    ctx = setup_distributed(device)
    finished = False
    try:
        metrics = _train(world, Path(out), config, ctx, compile, resume, progress, step)
        finished = True
        return metrics
    finally:
        # every rank waits for rank 0's evaluation before leaving (not after a failure: the
        # other ranks may never arrive)
        teardown_distributed(ctx, wait=finished)


def _train(
    world: str | os.PathLike[str],
    out: Path,
    config: RankConfig,
    ctx: DistContext,
    compile: bool | None,
    resume: bool,
    progress: bool,
    step: str,
) -> dict[str, Any]:
    from shopml.rank.model import RankingModel

    dev = ctx.device
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
    mode = select_step_mode(
        step, dev, config.sequence_backend, world_size=ctx.world_size, compile=compile
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
    del tables  # the examples hold what they need

    seed_everything(config.seed)
    model = RankingModel(config).to(dev)
    optimizer = make_optimizer(model, config.lr, config.weight_decay, dev)
    if saved_state is not None:
        model.load_state_dict(saved_state)
        optimizer.load_state_dict(saved_opt["optimizer"])
    step_model: torch.nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    use_cuda = dev.type == "cuda"
    loader = BatchLoader(
        train_ex,
        config.batch_size,
        history_layout(config.sequence_backend),
        shuffle=True,
        seed=config.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        num_workers=config.num_workers,
        pin_memory=use_cuda and mode == "eager",  # the graph step packs into pinned buffers
    )
    compile = resolve_compile(
        compile, mode, len(loader.global_batch_sizes()) * max(0, config.epochs - start_epoch)
    )
    if compile and mode == "eager":  # the graph step compiles the model inside its graphs
        step_model = torch.compile(step_model)
    log_path = out / "train_log.json"  # per-epoch records, appended to on --resume
    log: list[dict[str, Any]] = (
        json.loads(log_path.read_text()) if resume and log_path.is_file() else []
    )
    extra_base = {"vocab": vocab.to_dict(), "train_history": log_fill(train_ex)}
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)

    graph_step = None
    if mode == "graphs":
        budget = config.activation_memory_budget
        graph_step = GraphTrainStep(
            model, optimizer, grad_clip=config.grad_clip, autocast=use_cuda, compile=compile,
            memory_budget=budget if budget < 1 else None,
        )  # fmt: skip
    # Batches are built with valid offsets (checked on the CPU when collated): skip the jagged
    # ops' content checks, each a host-device synchronisation on CUDA.
    from shopml.jagged.checks import checks_enabled

    with checks_enabled(False):
        for epoch in range(start_epoch, config.epochs):
            record = _epoch(
                model, step_model, graph_step, optimizer, loader, config, ctx, epoch, progress
            )
            record["step_mode"] = mode
            record["compile"] = compile
            if graph_step is not None:
                record["graphs"] = graph_step.cache.captures
                record["fallback"] = graph_step.fallback_reason
                record["compile_fallback"] = graph_step.compile_fallback_reason
            log.append(record)
            if ctx.is_main:
                _save(out, model, optimizer, config, {**extra_base, "epoch": epoch + 1})
                write_json(log_path, log)

    metrics: dict[str, Any] = {}
    if ctx.is_main:
        metrics = evaluate_model(
            model, test_ex, batch_size=max(config.batch_size, 256), device=dev, autocast=use_cuda
        )
        metrics.update(
            {
                "split": "test",
                "sequence_backend": config.sequence_backend,
                "max_history": config.max_history,
                "epochs": config.epochs,
                "world_size": ctx.world_size,
                "device": str(dev),
                "step_mode": mode,
                "train_examples": len(train_ex),
                "train_examples_per_s": log[-1]["examples_per_s"] if log else None,
                "train_loss": log[-1]["train_loss"] if log else None,
            }
        )
        write_json(out / "metrics.json", metrics)
    return metrics


def _epoch(
    model: torch.nn.Module,
    step_model: torch.nn.Module,
    graph_step: GraphTrainStep | None,
    optimizer: torch.optim.Optimizer,
    loader: BatchLoader,
    config: RankConfig,
    ctx: DistContext,
    epoch: int,
    progress: bool,
) -> dict[str, Any]:
    """One epoch of steps; returns its log record. The loss is read on the host (a device sync)
    only every few seconds, for the progress report."""
    dev = ctx.device
    use_cuda = dev.type == "cuda"
    loader.set_epoch(epoch)
    sizes = loader.global_batch_sizes()
    bar = Progress(
        len(sizes),
        f"{config.sequence_backend} epoch {epoch + 1}/{config.epochs}",
        enabled=progress and ctx.is_main,
    )
    model.train()
    total_n, t0 = 0, time.perf_counter()
    loss_acc = torch.zeros((), device=dev)
    last_read, loss_shown = float("-inf"), float("nan")
    local_batch = -(-config.batch_size // ctx.world_size)
    for step, batch in enumerate(loader):
        scale = ctx.world_size / sizes[step]
        if graph_step is not None:
            packed = pack(batch, config.max_history, min_batch=local_batch, pin_memory=True)
            loss_sum = graph_step(packed, scale)
        else:
            batch = batch.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_cuda):
                logits = step_model(batch.history, batch.candidates)  # (b,)
            loss_sum = F.binary_cross_entropy_with_logits(
                logits.float(), batch.labels, reduction="sum"
            )
            optimizer.zero_grad(set_to_none=True)
            (loss_sum * scale).backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum = loss_sum.detach()
        loss_acc += loss_sum
        total_n += sizes[step]
        if bar.enabled:
            now = time.perf_counter()
            if now - last_read >= 2.0 or step == len(sizes) - 1:
                last_read = now
                # rank 0's mean loss so far (a host sync every 2 s, rank 0 only)
                loss_shown = float(loss_acc) / max(1, total_n // ctx.world_size)
            bar.update(step + 1, loss=loss_shown, ex_s=total_n / max(now - t0, 1e-9))
    if ctx.distributed:
        import torch.distributed as dist

        dist.all_reduce(loss_acc)
    elapsed = time.perf_counter() - t0
    total_loss = float(loss_acc) / max(total_n, 1)
    bar.close(f"loss {total_loss:.4f}, {total_n / max(elapsed, 1e-9):,.0f} examples/s")
    return {
        "epoch": epoch + 1,
        "train_loss": total_loss,
        "examples": total_n,
        "examples_per_s": total_n / max(elapsed, 1e-9),
        "seconds": elapsed,
    }
