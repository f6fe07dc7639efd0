"""Training VisNet with the triplet loss: online mining, augmentation, bf16, checkpoints, DDP.

One step: draw a batch of sample indices (several views of each product, two categories per batch),
augment the preloaded images on the device, embed (bf16 autocast on CUDA), mine triplets with a
pytorch-metric-learning miner, and take an AdamW step on the triplet hinge over squared L2.

Run directory layout::

    RUN/model/          the latest model checkpoint (shopml.common.checkpoint; kind visual.visnet)
    RUN/train_state.pt  optimizer, scheduler position, epoch and RNG states (resume)
    RUN/history.json    per-epoch loss, active-triplet fraction, negative granularity, seconds

Multi-process data parallel: ``torchrun --nproc-per-node N -m shopml.visual.cli train --world DIR
--out RUN`` (:mod:`shopml.common.distributed`); every rank draws its own batches, rank 0 writes the
run directory and reports progress (:class:`shopml.common.progress.Progress`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopml.common.distributed import DistContext, setup_distributed, teardown_distributed
from shopml.common.io import atomic_path, write_json
from shopml.common.progress import Progress
from shopml.common.seeding import seed_everything
from shopml.visual.config import TrainConfig, VisNetConfig
from shopml.visual.models import VisNet, build_model, load_model, save_model

STATE_FILE = "train_state.pt"


def _lr_factor(step: int, warmup: int, total: int, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay over the steps or the time budget, whichever ends first."""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_fraction)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(
    world_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_config: VisNetConfig,
    config: TrainConfig | None = None,
    device: str = "auto",
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
    steps_per_epoch: int | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Train (or resume) a VisNet on a world directory; returns the history dict.

    Args:
        world_dir: directory with catalog.parquet, street.parquet and images/.
        out_dir: run directory (created); see the module docstring for its layout.
        model_config: the architecture.
        config: the training run (defaults: ``TrainConfig()``).
        device: ``auto``, ``cpu`` or ``cuda[:N]`` (under torchrun: the local rank's GPU).
        pretrained: start EfficientNet-Lite0 from its shipped ImageNet weights (other trunks have
            no shipped weights: they start from ``weights`` or from random init).
        weights: a trunk weights file in torchvision format (VGG-16 / ResNet).
        resume: continue from ``out_dir/train_state.pt`` when present.
        progress: show a progress bar (rank 0 only).
        steps_per_epoch: batches per epoch (default: training samples / batch size).
        max_seconds: stop (after saving) once this much training time has passed in this call.
    """
    ctx = setup_distributed(device)
    try:
        return _train(
            ctx, world_dir, out_dir, model_config, config or TrainConfig(), pretrained, weights,
            resume, progress, steps_per_epoch, max_seconds,
        )  # fmt: skip
    finally:
        teardown_distributed(ctx)


def _train(
    ctx: DistContext,
    world_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    model_config: VisNetConfig,
    config: TrainConfig,
    pretrained: bool,
    weights: str | os.PathLike | None,
    resume: bool,
    progress: bool,
    steps_per_epoch: int | None,
    max_seconds: float | None,
) -> dict[str, Any]:
    from shopml.visual.augment import augment
    from shopml.visual.data import build_training_set
    from shopml.visual.losses import TripletLoss
    from shopml.visual.mining import (
        StyleBatchSampler,
        make_miner,
        make_sampler,
        negative_granularity,
        sampling_slots,
    )

    rank, dev = ctx.rank, ctx.device
    out_dir = Path(out_dir)
    seed_everything(config.seed + rank)
    generator = torch.Generator(device=dev).manual_seed(config.seed + 1000 * rank)

    data = build_training_set(
        world_dir, model_config.image_size, config.street_weight, config.val_fraction, config.seed
    )
    slots = torch.from_numpy(sampling_slots(data.is_street, config.street_weight))
    n_steps = steps_per_epoch or max(1, len(data) // config.batch_size)
    labels_np = data.look if config.merge_duplicates else data.product
    if config.batch_groups == "style":
        sampler = StyleBatchSampler(
            labels_np[slots.numpy()],
            data.style[slots.numpy()],
            data.category[slots.numpy()],
            config.batch_size,
            config.samples_per_product,
            n_steps,
            seed=config.seed + 1000 * rank,
        )
    else:
        sampler = make_sampler(
            labels_np[slots.numpy()],
            data.category[slots.numpy()],
            config.batch_size,
            config.samples_per_product,
            n_steps,
        )

    state_path = out_dir / STATE_FILE
    start_epoch, history = 0, {"epochs": [], "train_config": dataclasses.asdict(config)}
    if resume and state_path.is_file():
        model = load_model(out_dir, device="cpu").train()
        if model.config != model_config:
            raise ValueError(
                f"resume: the run in {out_dir} has model config {model.config}, "
                f"found {model_config}; use a new --out or resume=False"
            )
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        start_epoch = int(state["epoch"])
        history = state["history"]
        ema_state = None
        if state.get("raw_model") is not None:  # the checkpoint holds the EMA; the state, the raw
            ema_state = model.state_dict()
            model.load_state_dict(state["raw_model"])
    else:
        ships_weights = model_config.trunk == "efficientnet_lite0"
        model = build_model(
            model_config, pretrained=pretrained and ships_weights, weights=weights
        ).train()
        state, ema_state = None, None
    model.to(dev)
    ema = None
    if config.ema_decay > 0:
        ema = copy.deepcopy(model).eval()
        if ema_state is not None:
            ema.load_state_dict(ema_state)
        for p in ema.parameters():
            p.requires_grad_(False)
    trunk_pretrained = weights is not None or (
        pretrained and model_config.trunk == "efficientnet_lite0"
    )
    trunk_lr = config.lr * (config.trunk_lr_scale if trunk_pretrained else 1.0)
    freeze_trunk = trunk_lr == 0.0
    for p in model.trunk.parameters():
        p.requires_grad_(not freeze_trunk)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("trunk.")]
    groups = [{"params": head_params, "lr": config.lr}] if head_params else []
    if not freeze_trunk:
        groups.append({"params": list(model.trunk.parameters()), "lr": trunk_lr})
    if not head_params and freeze_trunk:
        raise ValueError("model_config: nothing to train (head 'trunk' with a frozen trunk)")
    base_lrs = [g["lr"] for g in groups]
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["generator"])
        np.random.set_state(state["numpy_rng"])

    net: torch.nn.Module = model
    if ctx.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    loss_fn = TripletLoss(config.margin)
    miner = make_miner(config.miner, config.margin)
    use_bf16 = config.bf16 and dev.type == "cuda"
    total_steps = config.epochs * n_steps
    labels_all = torch.from_numpy(labels_np).to(dev)
    style_all = torch.from_numpy(data.style)
    cat_all = torch.from_numpy(data.category)
    images_all = data.images.to(dev)  # (n, 3, S, S) uint8, resident on the device
    mask_all = data.mask.to(dev)  # (n, 1, S, S) uint8
    street_all = torch.from_numpy(data.is_street).to(dev)
    global_step = start_epoch * n_steps

    t_start = time.perf_counter()
    out_of_time = False
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        if freeze_trunk:
            model.trunk.eval()
        losses, active, gran = [], [], []
        with Progress(
            n_steps, f"epoch {epoch + 1}/{config.epochs}", enabled=progress and ctx.is_main
        ) as bar:  # closed on an exception too
            for i, batch in enumerate(sampler):
                if i >= n_steps:
                    break
                if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                    out_of_time = True
                    break
                step = epoch * n_steps + i
                for g, base in zip(optimizer.param_groups, base_lrs, strict=True):
                    frac = (time.perf_counter() - t_start) / max_seconds if max_seconds else 0.0
                    g["lr"] = base * _lr_factor(step, config.warmup_steps, total_steps, frac)
                idx = slots[torch.as_tensor(batch, dtype=torch.long)]
                idx_dev = idx.to(dev)
                x = images_all[idx_dev]  # (b, 3, S, S) uint8
                x = (
                    augment(x, generator, config.street_views, mask_all[idx_dev],
                            street_all[idx_dev], config.clean_views)
                    if config.augment
                    else x.float() / 255.0
                )  # fmt: skip
                x = model.normalize(x)
                labels = labels_all[idx_dev]
                with torch.autocast("cuda", torch.bfloat16, enabled=use_bf16):
                    emb = net(x)  # (b, dim) float32 unit vectors
                triplets = miner(emb, labels)
                loss = loss_fn(emb, labels, triplets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                global_step += 1
                if ema is not None:
                    _ema_update(ema, model, config.ema_decay, global_step)
                losses.append(loss.detach())
                # statistics every log_every steps only: each one waits for the device
                if i % max(1, config.log_every) == 0 or i == n_steps - 1:
                    with torch.no_grad():
                        a, p, n = triplets
                        if len(a):
                            d_ap = ((emb[a] - emb[p]) ** 2).sum(1)
                            d_an = ((emb[a] - emb[n]) ** 2).sum(1)
                            active.append(float((d_ap - d_an + config.margin > 0).float().mean()))
                        cpu = tuple(t.cpu() for t in triplets)
                        gran.append(negative_granularity(cpu, style_all[idx], cat_all[idx]))
                    bar.update(i + 1, loss=float(torch.stack(losses[-20:]).mean()))
            bar.update(len(losses))
            bar.close(f"time budget reached ({max_seconds:g} s)" if out_of_time else None)
        record = {
            "epoch": epoch + 1,
            "loss": float(torch.stack(losses).mean()) if losses else float("nan"),
            "active_triplets": float(np.mean(active)) if active else 0.0,
            "steps": len(losses),
            "seconds": time.perf_counter() - t0,
            "lr": optimizer.param_groups[0]["lr"],
            "stopped_early": out_of_time,
            "negatives": {k: float(np.mean([g[k] for g in gran])) for k in gran[0]} if gran else {},
        }
        final = out_of_time or epoch + 1 == config.epochs
        every = config.val_every > 0 and (epoch + 1) % config.val_every == 0
        if len(data.val_product) and rank == 0 and (final or every):
            record["val"] = validation_recall(ema or model, data, dev)
            history["val"] = record["val"]
        history["epochs"].append(record)
        if rank == 0:
            save_model(
                ema or model, out_dir / "model",
                extra={"train_config": dataclasses.asdict(config)},
            )  # fmt: skip
            with atomic_path(state_path) as tmp:
                torch.save(
                    {
                        "epoch": epoch + 1,
                        "optimizer": optimizer.state_dict(),
                        "history": history,
                        "torch_rng": torch.get_rng_state(),
                        "generator": generator.get_state(),
                        "numpy_rng": np.random.get_state(),
                        "raw_model": model.state_dict() if ema is not None else None,
                    },
                    tmp,
                )
            write_json(out_dir / "history.json", history)
        if out_of_time:
            break
    if start_epoch >= config.epochs and rank == 0 and not (out_dir / "model").exists():
        save_model(model, out_dir / "model")
    return history


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, step: int) -> None:
    """ema <- decay' ema + (1 - decay') model, decay' = min(decay, (1 + step) / (10 + step));
    buffers (BatchNorm statistics) are copied."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        e_params = [p for p in ema.parameters()]
        m_params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(e_params, m_params, 1.0 - d)
        for eb, mb in zip(ema.buffers(), model.buffers(), strict=True):
            eb.copy_(mb)


def validation_recall(
    model: VisNet, data: Any, device: torch.device, ks: tuple[int, ...] = (1, 5, 10, 20)
) -> dict[str, float]:
    """Street-to-shop recall@k of the held-out validation street photos against the whole
    (clean) catalog of a ``TrainingSet``."""
    from shopml.visual.evaluate import exact_search, recall_at_k

    catalog = model.embed(data.images[: data.n_catalog], batch_size=256, device=device)
    queries = model.embed(data.val_images, batch_size=256, device=device)
    _, pos = exact_search(queries, catalog, max(ks))
    out = recall_at_k(list(pos), data.val_product, ks)
    out["queries"] = len(data.val_product)
    return out
