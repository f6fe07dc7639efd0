"""Ancestral sampling of forecast paths and their summary into a long frame.

For each series the LSTM first reads the last ``context_length`` observed steps (teacher forcing,
cuDNN/ATen ``nn.LSTM``), then its state is broadcast to ``num_samples`` paths; each future step
draws ``z`` from the mixture, clips it at zero (``nonneg="clip"``) and feeds it back as the next
step's ``z_{t-1}``. The decoding steps use :meth:`ARMDNNet.decode_step`, the same LSTM and head math
written as GEMMs on a ``(series, path)`` grid: the parts of the gates and of the head that come from
the covariates and static features are computed once per series and broadcast over the paths,
instead of being repeated ``S`` times. Series are processed in chunks so that
``chunk_series * num_samples`` rows bound the memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from shopml.common.devices import resolve_device
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.mixture import mixture_sample
from shopml.forecast.model import ARMDNNet, scale_target, unscale_target

if TYPE_CHECKING:
    from shopml.forecast.model import ARMDN


@torch.no_grad()
def sample_paths(
    net: ARMDNNet,
    config: ARMDNConfig,
    hist: dict[str, torch.Tensor],
    fut_real: torch.Tensor,
    fut_cat: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample paths for one chunk of series.

    Args:
        hist: context windows (``y (B, T)``, ``real (B, T, F)``, ``cat (B, T, C)``,
            ``observed (B, T)``, ``static_cat``, ``static_real``, ``id_code``), T = context_length.
        fut_real: ``(B, H, F)``; fut_cat: ``(B, H, C)`` covariates of the horizon.
        num_samples: S paths per series.

    Returns:
        ``(B, S, H)`` float32 samples on the original scale of ``y``.
    """
    net.eval()
    amp = config.amp and fut_real.device.type == "cuda"
    b, horizon = fut_real.shape[:2]
    z_hist, nu = scale_target(hist["y"], hist["observed"], config.context_length, config.scaling)
    z_prev_hist = torch.nn.functional.pad(z_hist[:, :-1], (1, 0))  # (B, T)
    with torch.autocast(device_type=fut_real.device.type, dtype=torch.bfloat16, enabled=amp):
        a_hist = net.associative(hist["real"], hist["cat"])  # (B, T, A)
        s = net.static(hist["static_cat"], hist["static_real"], hist["id_code"], nu)  # (B, Ds)
        _, (h, c) = net(a_hist, z_prev_hist, s)  # state after the last observed step
        a_fut = net.associative(fut_real, fut_cat)  # (B, H, A)
    # paths live on a (series, path) grid: per-series inputs broadcast over the S paths
    gate_x, head_x = net.decode_inputs(a_fut.float(), s.float())  # (B, H, 4H'), (B, H, 3K)
    h = h.float()[:, :, None, :].expand(-1, -1, num_samples, -1)  # (layers, B, S, H')
    c = c.float()[:, :, None, :].expand(-1, -1, num_samples, -1)
    z_prev = z_hist[:, -1:].expand(-1, num_samples)  # (B, S)
    state = (h, c)
    out = torch.empty(b, num_samples, horizon, device=fut_real.device)
    for t in range(horizon):
        (logits, loc, scale), state = net.decode_step(gate_x[:, t], head_x[:, t], z_prev, state)
        z = mixture_sample(logits, loc, scale, generator=generator)  # (B, S)
        if config.nonneg == "clip":
            z = z.clamp_min(0.0)
        out[:, :, t] = z
        z_prev = z
    y = unscale_target(out, nu[:, None, None], config.scaling)
    if config.nonneg == "clip":
        y = y.clamp_min(0.0)
    return y


def forecast_frame(
    model: ARMDN,
    df: pd.DataFrame,
    futr_df: pd.DataFrame | None,
    horizon: int,
    num_samples: int,
    quantiles: tuple[float, ...],
    static_df: pd.DataFrame | None,
    return_samples: bool,
    device: str | None,
    chunk_series: int | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
    """Implementation of :meth:`ARMDN.predict` (validation, features, chunked sampling, summary)."""
    from shopml.forecast.data import (
        build_panel,
        gather_windows,
        validate_frame,
        validate_futr,
        validate_static,
    )
    from shopml.forecast.features import dynamic_features

    cfg, spec, net = model.config, model.spec, model.net
    assert spec is not None and net is not None
    covs = model.covariates
    df = validate_frame(df, "df", cfg.freq, covariates=covs)
    static_df = validate_static(static_df)
    futr = validate_futr(futr_df, df, horizon, cfg.freq, covs)
    hist_df = df.groupby("unique_id", sort=True).tail(cfg.context_length)
    panel = build_panel(hist_df, spec, static_df, model.train_uids)
    n = panel.num_series
    fut_real, fut_cat = dynamic_features(futr, spec)
    fut_real = fut_real.reshape(n, horizon, -1)
    fut_cat = fut_cat.reshape(n, horizon, -1)
    dev = resolve_device(device or cfg.device)
    net.to(dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed)
    if chunk_series is None:
        chunk_series = max(1, (1 << 20) // num_samples)
    all_series = np.arange(n)
    chunks = []
    for lo in range(0, n, chunk_series):
        idx = all_series[lo : lo + chunk_series]
        hist = gather_windows(panel, idx, panel.lengths[idx], cfg.context_length)
        hist_t = {k: torch.from_numpy(v).to(dev) for k, v in hist.items()}
        fr = torch.from_numpy(fut_real[idx]).to(dev)
        fc = torch.from_numpy(fut_cat[idx]).to(dev)
        chunks.append(sample_paths(net, cfg, hist_t, fr, fc, num_samples, gen).cpu().numpy())
    samples = np.concatenate(chunks, axis=0)  # (n, S, H)
    frame = summarize_samples(futr[["unique_id", "ds"]], samples, quantiles)
    return (frame, samples) if return_samples else frame


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
