"""Training loop: teacher-forced mixture NLL on random windows, early stopping on validation NLL.

Multi-process data parallel: launched under ``torchrun`` (``WORLD_SIZE > 1`` in the environment)
the loop joins the process group (NCCL on CUDA, Gloo on CPU), wraps the network in
``DistributedDataParallel`` and draws windows with a per-rank seed; every rank scores the same
validation windows, so the early-stopping decision is identical on all ranks.
"""

from __future__ import annotations

import copy
import os
import time
from typing import Any

import numpy as np
import torch

from shopml.common.devices import resolve_device
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.data import Panel, WindowSampler, validation_windows
from shopml.forecast.mixture import mixture_log_prob
from shopml.forecast.model import ARMDNNet, scale_target


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()}


class WindowModel(torch.nn.Module):
    """Whole teacher-forced pass in one ``forward`` (what DistributedDataParallel wraps)."""

    def __init__(self, net: ARMDNNet):
        super().__init__()
        self.net = net

    def forward(self, real, cat, static_cat, static_real, id_code, nu, z_prev):
        a = self.net.associative(real, cat)  # (B, L, A)
        s = self.net.static(static_cat, static_real, id_code, nu)  # (B, D_s)
        params, _ = self.net(a, z_prev, s)  # (B, L, K) each
        return params


def window_nll(
    net: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    config: ARMDNConfig,
    score_mask: torch.Tensor | None = None,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and count of scored steps of a window batch (teacher forcing).

    Step ``t`` is scored when it and step ``t - 1`` are observed (and ``score_mask`` allows it).
    """
    y, observed = batch["y"], batch["observed"]
    z, nu = scale_target(y, observed, config.context_length, config.scaling)  # (B, L), (B,)
    z_prev = torch.nn.functional.pad(z[:, :-1], (1, 0))  # (B, L)
    with torch.autocast(device_type=y.device.type, dtype=torch.bfloat16, enabled=amp):
        if isinstance(net, ARMDNNet):
            net = WindowModel(net)
        logits, loc, scale = net(
            batch["real"],
            batch["cat"],
            batch["static_cat"],
            batch["static_real"],
            batch["id_code"],
            nu,
            z_prev,
        )  # (B, L, K) each
    mask = observed.clone()
    mask[:, 1:] &= observed[:, :-1]
    mask[:, 0] = False
    if score_mask is not None:
        mask &= score_mask
    nll = -mixture_log_prob(z, logits, loc, scale)  # (B, L)
    mask_f = mask.to(nll.dtype)
    return (nll * mask_f).sum(), mask_f.sum()


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


@torch.no_grad()
def evaluate_nll(
    net: ARMDNNet, batch: dict[str, np.ndarray], config: ARMDNConfig, device: torch.device
) -> float:
    """Mean NLL of the scored steps of validation windows, in chunks of 4096 windows."""
    net.eval()
    total, count = 0.0, 0.0
    n = len(batch["y"])
    for lo in range(0, n, 4096):
        part = to_device({k: v[lo : lo + 4096] for k, v in batch.items()}, device)
        amp = config.amp and device.type == "cuda"
        s, c = window_nll(net, part, config, score_mask=part["score_mask"], amp=amp)
        total += float(s)
        count += float(c)
    return total / max(count, 1.0)


def fit_network(
    net: ARMDNNet, panel: Panel, config: ARMDNConfig, val_size: int, verbose: bool = False
) -> dict[str, Any]:
    """Train ``net`` in place; return a history dict (curve, best epoch, windows/s, seconds).

    The last ``val_size`` steps of every series are held out of training windows and score the
    validation NLL after every epoch; the best epoch's weights are restored at the end.
    """
    rank, world = _distributed()
    device = resolve_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)
    net.to(device)
    model: torch.nn.Module = WindowModel(net)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    rng = np.random.default_rng(config.seed + 1000 * rank)
    sampler = WindowSampler(panel, config.window_length, holdout=val_size, min_target=1, rng=rng)
    val = validation_windows(panel, config.window_length, val_size) if val_size > 0 else None
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    amp = config.amp and device.type == "cuda"
    curve: list[dict[str, float]] = []
    best, best_state, best_epoch, bad_epochs = float("inf"), None, -1, 0
    windows, t_train = 0, 0.0
    progress = None
    if verbose and rank == 0:
        from rich.progress import Progress

        progress = Progress(transient=True)
        progress.start()
        task = progress.add_task(
            "training AR-MDN", total=config.max_epochs * config.steps_per_epoch
        )
    t_start = time.perf_counter()
    try:
        for epoch in range(config.max_epochs):
            net.train()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            losses = []
            for _ in range(config.steps_per_epoch):
                batch = to_device(sampler.sample(config.batch_size), device)
                total, count = window_nll(model, batch, config, amp=amp)
                loss = total / count.clamp_min(1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                opt.step()
                losses.append(loss.detach())
                windows += config.batch_size
                if progress is not None:
                    progress.advance(task)
            train_loss = float(torch.stack(losses).mean())
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_train += time.perf_counter() - t0
            val_loss = evaluate_nll(net, val, config, device) if val is not None else train_loss
            curve.append({"epoch": epoch, "train_nll": train_loss, "val_nll": val_loss})
            if not np.isfinite(train_loss):
                raise RuntimeError(f"training diverged at epoch {epoch}: train NLL {train_loss}")
            if val_loss < best - 1e-4:
                best, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad_epochs += 1
                if bad_epochs >= config.patience:
                    break
    finally:
        if progress is not None:
            progress.stop()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {
        "curve": curve,
        "best_epoch": best_epoch,
        "best_val_nll": best,
        "epochs": len(curve),
        "windows": windows * world,
        "train_seconds": t_train,
        "windows_per_second": windows * world / max(t_train, 1e-9),
        "wall_seconds": time.perf_counter() - t_start,
        "device": str(device),
        "world_size": world,
    }
