"""Ancestral sampling of forecast paths (tensors and panels; the estimator handles frames).

For each series the LSTM first reads the last ``context_length`` steps (teacher forcing,
``nn.LSTM``), then its state is broadcast to ``num_samples`` paths; each future step draws ``z``
from the mixture, clips it to ``[0, cap]`` (``cap``: ``sample_cap`` times the series' largest
observed value, so that a sampled spike fed back cannot breed the next one) and feeds it back as
the next step's ``z_{t-1}``. The decoding steps use :meth:`ARMDNNet.decode_step`, the LSTM and
head math as GEMMs on a ``(series, path)`` grid, with the covariate and static parts of the gates
computed once per series.

Randomness is counter-based (:func:`~shopml.forecast.mixture.counter_uniform`): every uniform is a
hash of (seed, series key, path, step), so a series' forecast is the same whatever other series
share the request, and whatever the chunking. After sampling, an optional per-step, per-level
``spread`` (from calibration) rescales each step's draws around their median on the scaled axis.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

from shopml.forecast.calibration import LEVELS
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.counts import untie_counts
from shopml.forecast.data import Panel, gather_windows
from shopml.forecast.mixture import counter_uniform
from shopml.forecast.network import (
    ARMDNNet,
    output_sample,
    scale_target,
    scale_values,
    unscale_target,
)


def series_keys(uids: list[Any]) -> np.ndarray:
    """``(S,)`` int64 random-stream keys of series ids (CRC-32 of ``str(uid)``)."""
    return np.array([zlib.crc32(str(u).encode()) for u in uids], dtype=np.int64)


@torch.no_grad()
def sample_paths(
    net: ARMDNNet,
    config: ARMDNConfig,
    hist: dict[str, torch.Tensor],
    fut_real: torch.Tensor,
    fut_cat: torch.Tensor,
    num_samples: int,
    keys: torch.Tensor,
    y_cap: torch.Tensor,
    spread: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample paths for one chunk of series.

    Args:
        hist: context windows (``y (B, T)``, ``real (B, T, F)``, ``cat (B, T, C)``,
            ``observed (B, T)``, ``static_cat``, ``static_real``, ``id_code``), T = context_length.
        fut_real: ``(B, H, F)``; fut_cat: ``(B, H, C)`` covariates of the horizon.
        num_samples: S paths per series.
        keys: ``(B,)`` int64 random-stream keys (:func:`series_keys`).
        y_cap: ``(B,)`` largest value a draw may take, in units of ``y``.
        spread: optional ``(H, L)`` or ``(H, L, 2)`` calibration factors (1 = as sampled), see
            :func:`apply_spread`.

    Returns:
        ``(B, S, H)`` float32 samples on the original scale of ``y``.
    """
    net.eval()
    dev = fut_real.device
    amp = config.amp and dev.type == "cuda"
    b, horizon = fut_real.shape[:2]
    z_hist, nu = scale_target(hist["y"], hist["observed"], config.context_length, config.scaling)
    z_prev_hist = torch.nn.functional.pad(z_hist[:, :-1], (1, 0))  # (B, T)
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
        a_hist = net.associative(hist["real"], hist["cat"])  # (B, T, A)
        s = net.static(hist["static_cat"], hist["static_real"], hist["id_code"], nu)  # (B, Ds)
        _, (h, c) = net(a_hist, z_prev_hist, s)  # state after the last context step
        a_fut = net.associative(fut_real, fut_cat)  # (B, H, A)
    # paths live on a (series, path) grid: per-series inputs broadcast over the S paths
    gate_x, head_x = net.decode_inputs(a_fut.float(), s.float())  # (B, H, 4H'), (B, H, 3K)
    h = h.float()[:, :, None, :].expand(-1, -1, num_samples, -1)  # (layers, B, S, H')
    c = c.float()[:, :, None, :].expand(-1, -1, num_samples, -1)
    z_lo = scale_values(torch.zeros_like(nu), nu, config.scaling)[:, None]  # (B, 1): y = 0
    if config.nonneg != "clip":
        z_lo = torch.full_like(z_lo, -float("inf"))
    z_hi = scale_values(y_cap, nu, config.scaling)[:, None]  # (B, 1)
    if config.sample_cap <= 0:
        z_hi = torch.full_like(z_hi, float("inf"))
        y_cap = torch.full_like(y_cap, float("inf"))  # the count head's bound (counts.py)
    z_prev = z_hist[:, -1:].expand(-1, num_samples)  # (B, S)
    state = (h, c)
    out = torch.empty(b, num_samples, horizon, device=dev)
    with tf32_matmuls():  # the decoding GEMMs
        for t in range(horizon):
            params, state = net.decode_step(gate_x[:, t], head_x[:, t], z_prev, state)
            u_k = counter_uniform(keys, num_samples, 2 * t, config.seed)
            u_n = counter_uniform(keys, num_samples, 2 * t + 1, config.seed)
            z = output_sample(net.count_output, params, nu, u_k, u_n, y_cap, config.scaling)
            z = torch.minimum(torch.maximum(z, z_lo), z_hi)  # (B, S)
            out[:, :, t] = z
            z_prev = z
    if spread is not None:
        out = apply_spread(out, spread.to(dev))
        out = torch.minimum(torch.maximum(out, z_lo[..., None]), z_hi[..., None])
    y = unscale_target(out, nu[:, None, None], config.scaling)
    if net.count_output:  # counts (also after calibration's stretch), reported untied
        u = [
            counter_uniform(keys, num_samples, 2 * horizon + t, config.seed) for t in range(horizon)
        ]
        y = untie_counts(y.round(), torch.stack(u, dim=-1))  # (B, S, H)
    return y.clamp_min(0.0) if config.nonneg == "clip" else y


@contextlib.contextmanager
def tf32_matmuls() -> Iterator[None]:
    """fp32 CUDA matmuls on TF32 tensor cores inside the block (the decoding GEMMs: a path's
    draw is noise far above TF32's rounding); the user's setting is restored after."""
    matmul = torch.backends.cuda.matmul
    name, tf32 = (
        ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else ("allow_tf32", True)
    )
    before = getattr(matmul, name)
    setattr(matmul, name, tf32)
    try:
        yield
    finally:
        setattr(matmul, name, before)


def to_host(x: torch.Tensor) -> torch.Tensor:
    """Start copying ``x`` to page-locked host memory without waiting (a plain ``.cpu()`` copy
    into pageable memory ran at 1.4 GB/s on an H200 host); synchronise before reading it."""
    if x.device.type != "cuda":
        return x
    host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
    return host.copy_(x, non_blocking=True)


def apply_spread(
    z: torch.Tensor, spread: torch.Tensor, levels: tuple[float, ...] = LEVELS
) -> torch.Tensor:
    """Rescale draws ``z (B, S, H)`` around their median by ``spread (H, L)`` (calibration).

    Each draw's factor is the spread interpolated (linearly, constant beyond the ends) at the
    draw's own central level ``|2 rank / S - 1|``, so the calibrated ``levels[j]`` interval is
    the original one stretched by ``spread[:, j]``. A ``(H,)`` spread scales every level alike;
    a ``(H, L, 2)`` spread stretches draws below the median by ``[..., 0]`` and the others by
    ``[..., 1]`` (``calibration.conformal_spread(sides=2)``).
    """
    med = z.median(dim=1, keepdim=True).values  # (B, 1, H)
    if spread.dim() == 1:
        return med + spread[None, None, :] * (z - med)
    s = z.shape[1]
    rank = z.argsort(dim=1).argsort(dim=1).float()  # (B, S, H)
    c = ((rank + 0.5) * (2.0 / s) - 1.0).abs()  # central level of each draw
    lv = torch.tensor(levels, dtype=z.dtype, device=z.device)  # (L,)
    idx = torch.searchsorted(lv, c.contiguous()).clamp(1, len(levels) - 1)  # (B, S, H)
    step = torch.arange(z.shape[2], device=z.device)
    w = ((c - lv[idx - 1]) / (lv[idx] - lv[idx - 1])).clamp(0.0, 1.0)

    def factor(sp: torch.Tensor) -> torch.Tensor:  # sp (H, L) -> (B, S, H)
        f0, f1 = sp.T[idx - 1, step], sp.T[idx, step]
        return f0 + w * (f1 - f0)

    if spread.dim() == 3:
        f = torch.where(z < med, factor(spread[..., 0]), factor(spread[..., 1]))
    else:
        f = factor(spread)
    return med + f * (z - med)


def respread_samples(samples: np.ndarray, spread: np.ndarray, scaling: str) -> np.ndarray:
    """Apply calibration ``spread (V, L)`` or ``(V, L, 2)`` to samples ``(n, S, V)`` already in units of ``y``.

    The same stretch as :func:`sample_paths` applies on the scaled axis (the stretch around the
    median is invariant to the per-series shift of ``logmean`` and to the factor of ``mean``),
    without the cap; results are clipped at 0.
    """
    log = scaling in ("log1p", "logmean")
    z = np.log1p(samples) if log else samples
    z = apply_spread(torch.from_numpy(np.ascontiguousarray(z)), torch.from_numpy(spread)).numpy()
    return np.clip(np.expm1(z) if log else z, 0.0, None)


def sample_panel(
    net: ARMDNNet,
    config: ARMDNConfig,
    panel: Panel,
    series: np.ndarray,
    ends: np.ndarray,
    fut_real: np.ndarray,
    fut_cat: np.ndarray,
    num_samples: int,
    y_cap: np.ndarray,
    device: torch.device,
    spread: np.ndarray | None = None,
    chunk_series: int | None = None,
) -> np.ndarray:
    """Sample the horizons after positions ``ends`` of ``series`` of a panel, in chunks.

    Args:
        series, ends: ``(n,)`` series indices and exclusive end positions of their contexts.
        fut_real, fut_cat: ``(n, H, F)``, ``(n, H, C)`` horizon covariates.
        y_cap: ``(n,)`` caps in units (``sample_cap`` times the largest observed value, + 1).
        chunk_series: series per chunk (default: about 2^20 paths per chunk).

    Returns:
        ``(n, S, H)`` float32 samples.
    """
    net.to(device)
    keys = series_keys([panel.uids[i] for i in series])
    if chunk_series is None:
        chunk_series = max(1, (1 << 20) // num_samples)
    spread_t = None if spread is None else torch.as_tensor(spread, dtype=torch.float32)
    chunks = []
    for lo in range(0, len(series), chunk_series):
        sl = slice(lo, lo + chunk_series)
        hist = gather_windows(panel, series[sl], ends[sl], config.context_length)
        hist_t = {k: torch.from_numpy(v).to(device) for k, v in hist.items()}
        out = sample_paths(
            net,
            config,
            hist_t,
            torch.from_numpy(np.ascontiguousarray(fut_real[sl])).to(device),
            torch.from_numpy(np.ascontiguousarray(fut_cat[sl])).to(device),
            num_samples,
            torch.from_numpy(keys[sl]).to(device),
            torch.from_numpy(np.asarray(y_cap[sl], np.float32)).to(device),
            spread_t,
        )
        chunks.append(to_host(out))  # copied while the next chunk samples
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
    return torch.cat(chunks).numpy()


def observed_max(panel: Panel, series: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``(n,)`` largest observed ``y`` of each series before position ``ends`` (0 if none)."""
    out = np.zeros(len(series), np.float32)
    for j, (s, e) in enumerate(zip(series, ends, strict=True)):
        lo = panel.offsets[s]
        seg = panel.y[lo : lo + e][panel.observed[lo : lo + e]]
        out[j] = seg.max() if len(seg) else 0.0
    return out


def quantile_column(q: float) -> str:
    return f"q{q:g}"


def summarize_samples(
    keys: pd.DataFrame, samples: np.ndarray, quantiles: tuple[float, ...]
) -> pd.DataFrame:
    """Long frame of ``keys`` (rows ordered series-major, horizon-minor) plus ``mean``,
    ``median`` and one column per quantile, from ``samples (n, S, H)``."""
    n, _, horizon = samples.shape
    flat = samples.transpose(0, 2, 1).reshape(n * horizon, -1)  # (n*H, S)
    out: dict[str, Any] = {
        "unique_id": keys["unique_id"].to_numpy(),
        "ds": keys["ds"].to_numpy(),
        "mean": flat.mean(1),
        "median": np.median(flat, axis=1),
    }
    if quantiles:
        qs = np.quantile(flat, quantiles, axis=1)  # (Q, n*H)
        for q, v in zip(quantiles, qs, strict=True):
            out[quantile_column(q)] = v
    return pd.DataFrame(out)
