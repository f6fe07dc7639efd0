"""Training loop: teacher-forced mixture NLL on random windows, early stopping on validation wQL.

Validation: the last ``config.validation_windows`` horizons of ``val_size`` steps of every series (at most
``val_series`` of them) are held out of the training windows; after every epoch the network
forecasts them by ancestral sampling (``val_samples`` paths, the same counter-based streams as
``predict``), each from the history before it, and the epoch with the lowest weighted quantile
loss (wQL, levels 0.1..0.9) is kept. The NLL is what the network minimises, but the forecast is
what users get: on OJ the epoch of best NLL was not the epoch of best wQL. With ``calibrate`` the
wQL is that of the calibrated forecast (the spread fitted on the same validation horizons,
``calibration.py``), so that an epoch whose median is better but whose raw intervals are too
narrow is not passed over for its intervals: calibration fixes those.

Multi-process data parallel: under ``torchrun`` the loop joins the process group through
:func:`shopml.common.distributed.setup_distributed` (NCCL on CUDA, gloo on CPU), wraps the network
in ``DistributedDataParallel`` and draws windows with a per-rank seed; every rank scores the same
validation windows, so the early-stopping decision is identical on all ranks. The caller (the
estimator) sets the group up and tears it down.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from shopml.common.distributed import DistContext
from shopml.common.progress import Progress
from shopml.forecast.calibration import conformal_spread
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.counts import NEGBIN
from shopml.forecast.data import Panel, WindowSampler, gather_windows
from shopml.forecast.network import ARMDNNet, output_log_prob, scale_target
from shopml.forecast.predict import observed_max, respread_samples, sample_panel

WQL_LEVELS = np.round(np.arange(0.1, 0.91, 0.1), 2)


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

    Step ``t`` is scored when it and step ``t - 1`` are observed (and ``score_mask`` allows it):
    filled gaps and padding are never scored.
    """
    y, observed = batch["y"], batch["observed"]
    z, nu = scale_target(y, observed, config.context_length, config.scaling)  # (B, L), (B,)
    z_prev = torch.nn.functional.pad(z[:, :-1], (1, 0))  # (B, L)
    with torch.autocast(device_type=y.device.type, dtype=torch.bfloat16, enabled=amp):
        if isinstance(net, ARMDNNet):
            net = WindowModel(net)
        params = net(
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
    nll = -output_log_prob(config.output == NEGBIN, params, y, z, nu)  # (B, L)
    mask_f = mask.to(nll.dtype)
    return (nll * mask_f).sum(), mask_f.sum()


@dataclass
class Validation:
    """Held-out horizons: the last ``holdout`` steps of ``series`` (see module docstring)."""

    series: np.ndarray  # (n,)
    ends: np.ndarray  # (n,) context end positions
    fut_real: np.ndarray  # (n, V, F)
    fut_cat: np.ndarray  # (n, V, C)
    y: np.ndarray  # (n, V)
    observed: np.ndarray  # (n, V) bool
    y_cap: np.ndarray  # (n,)
    windows: dict[str, np.ndarray]  # context + horizon windows, ``score_mask`` on the horizon


def validation_set(panel: Panel, config: ARMDNConfig, holdout: int, seed: int) -> Validation | None:
    """The validation horizons of the series long enough to have them (``None`` if none):
    ``config.validation_windows`` consecutive horizons of ``holdout`` steps at the end of each series,
    one row per (series, horizon), oldest horizon first."""
    n_val = config.validation_windows
    span = holdout * n_val
    ok = np.flatnonzero(panel.lengths >= span + 2)
    if holdout <= 0 or len(ok) == 0:
        return None
    if len(ok) > config.val_series:
        ok = np.sort(np.random.default_rng(seed).choice(ok, config.val_series, replace=False))
    series = np.tile(ok, n_val)
    ends = np.concatenate([panel.lengths[ok] - k * holdout for k in range(n_val, 0, -1)])
    fut = gather_windows(panel, series, ends + holdout, holdout)
    if not fut["observed"].any():
        return None
    cap = config.sample_cap * observed_max(panel, series, ends) + 1.0
    length = config.context_length + holdout
    windows = gather_windows(panel, series, ends + holdout, length)
    windows["score_mask"] = np.zeros((len(series), length), bool)
    windows["score_mask"][:, -holdout:] = True
    return Validation(
        series, ends, fut["real"], fut["cat"], fut["y"], fut["observed"], cap, windows
    )


@torch.no_grad()
def evaluate_nll(net: ARMDNNet, val: Validation, config: ARMDNConfig, device) -> float:
    """Mean NLL of the validation horizons' observed steps (teacher forced), 4096 at a time."""
    net.eval()
    total, count = 0.0, 0.0
    batch = val.windows
    for lo in range(0, len(batch["y"]), 4096):
        part = to_device({k: v[lo : lo + 4096] for k, v in batch.items()}, device)
        amp = config.amp and device.type == "cuda"
        s, c = window_nll(net, part, config, score_mask=part["score_mask"], amp=amp)
        total += float(s)
        count += float(c)
    return total / max(count, 1.0)


def weighted_quantile_loss(y: np.ndarray, samples: np.ndarray, observed: np.ndarray) -> float:
    """wQL (levels 0.1..0.9) of ``samples (n, S, V)`` against ``y (n, V)`` on observed steps."""
    q = np.quantile(samples, WQL_LEVELS, axis=1)  # (Q, n, V)
    e = y[None] - q
    loss = np.maximum(WQL_LEVELS[:, None, None] * e, (WQL_LEVELS[:, None, None] - 1) * e)
    denom = max(float(np.abs(y[observed]).sum()), 1e-9)
    return float(2.0 * (loss * observed[None]).sum(axis=(1, 2)).mean() / denom)


def validation_samples(
    net: ARMDNNet, config: ARMDNConfig, panel: Panel, val: Validation, device, spread=None
) -> np.ndarray:
    """``(n, val_samples, V)`` sampled validation forecasts."""
    return sample_panel(
        net,
        config,
        panel,
        val.series,
        val.ends,
        val.fut_real,
        val.fut_cat,
        config.val_samples,
        val.y_cap,
        device,
        spread,
    )


class WeightAverage:
    """Exponential moving average of a network's parameters (Polyak averaging).

    The decay ramps up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so the average
    does not drag the initial weights along. Validation, early stopping and the returned network
    use the averaged weights: a cheap variance reducer when the best epoch comes after a pass or
    two over the data (Dominick's OJ).
    """

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.shadow = [p.detach().clone() for p in net.parameters()]

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, net.parameters(), strict=True):
            s.lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def swap(self, net: torch.nn.Module) -> None:
        """Exchange the network's weights with the average (call twice to swap back)."""
        for s, p in zip(self.shadow, net.parameters(), strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def fit_network(
    net: ARMDNNet,
    panel: Panel,
    config: ARMDNConfig,
    val_size: int,
    ctx: DistContext,
    verbose: bool = False,
) -> tuple[dict[str, Any], Validation | None]:
    """Train ``net`` in place on ``ctx``'s device (and process group, under torchrun).

    Returns:
        a history dict (curve, best epoch, windows/s, seconds) and the validation set used; the
        best epoch's weights (lowest validation wQL) are restored.
    """
    device = ctx.device
    torch.manual_seed(config.seed)
    net.to(device)
    model: torch.nn.Module = WindowModel(net)
    if ctx.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    rng = np.random.default_rng(config.seed + 1000 * ctx.rank)
    sampler = WindowSampler(
        panel,
        config.window_length,
        holdout=val_size * config.validation_windows,
        min_target=1,
        rng=rng,
    )
    val = validation_set(panel, config, val_size, config.seed)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    amp = config.amp and device.type == "cuda"
    curve: list[dict[str, float]] = []
    average = WeightAverage(net, config.weight_average) if config.weight_average > 0 else None
    best, best_state, best_epoch, bad_epochs = float("inf"), None, -1, 0
    windows, t_train = 0, 0.0
    total_steps = config.max_epochs * config.steps_per_epoch
    bar = Progress(total_steps, "training AR-MDN", enabled=verbose and ctx.is_main)
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
                if average is not None:
                    average.update(net)
                losses.append(loss.detach())
                windows += config.batch_size
                bar.update(bar.completed + 1)
            train_loss = float(torch.stack(losses).mean())
            if device.type == "cuda":
                torch.cuda.synchronize()
            t_train += time.perf_counter() - t0
            if not np.isfinite(train_loss):
                raise RuntimeError(f"training diverged at epoch {epoch}: train NLL {train_loss}")
            if average is not None:
                average.swap(net)  # validate (and keep) the averaged weights
            if val is not None:
                smp = validation_samples(net, config, panel, val, device)
                if config.calibrate and config.output != NEGBIN:  # score it calibrated (a count
                    # head keeps its spread only where that helps: counts.keep_count_calibration)
                    spread = conformal_spread(
                        smp, val.y, val.observed, config.scaling, sides=config.calibration_sides
                    )
                    smp = respread_samples(smp, spread, config.scaling)
                val_loss = weighted_quantile_loss(val.y, smp, val.observed)
                val_nll = evaluate_nll(net, val, config, device)
            else:
                val_loss = val_nll = train_loss
            curve.append(
                {"epoch": epoch, "train_nll": train_loss, "val_nll": val_nll, "val_wql": val_loss}
            )
            bar.update(bar.completed, nll=train_loss, val_wql=val_loss)
            if val_loss < best - 1e-4:
                best, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                bad_epochs += 1
            if average is not None:
                average.swap(net)
            if bad_epochs >= config.patience:
                break
    finally:
        bar.close(f"best validation wQL {best:.4f} at epoch {best_epoch}")
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    history = {
        "curve": curve,
        "best_epoch": best_epoch,
        "best_val_wql": best,
        "best_val_nll": curve[best_epoch]["val_nll"] if best_epoch >= 0 else float("nan"),
        "epochs": len(curve),
        "windows": windows * ctx.world_size,
        "train_seconds": t_train,
        "windows_per_second": windows * ctx.world_size / max(t_train, 1e-9),
        "wall_seconds": time.perf_counter() - t_start,
        "device": str(device),
        "world_size": ctx.world_size,
    }
    return history, val
