"""AR-MDN: embeddings + associative MLP + LSTM + Gaussian mixture head, and its user-facing API.

Per step ``t`` of a series (letters: B windows, L steps, F real covariates, C categoricals, K
mixture components, H LSTM width)::

    e_t = [real_t, emb(weekday_t), emb(week_t), emb(month_t), emb(event_t), ...]
    a_t = MLP(e_t)                                   associative features (causal, known ahead)
    s   = [emb(product), emb(category), emb(brand), static reals, log(nu)]
    h_t = LSTM([a_t, z_{t-1}, s])                    z = scaled target (log1p or y / nu)
    (mixture_logits, loc, scale)_t = Head([h_t, a_t])  -> p(z_t) = sum_k w_k N(loc_k, scale_k)

Training is teacher-forced (``z_{t-1}`` observed); forecasting feeds each path's own draw back
(ancestral sampling). The skip of ``a_t`` into the head lets a known-in-advance promotion or
festival move the forecast on its own step without waiting for the LSTM state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from shopml.forecast.config import ARMDNConfig
from shopml.forecast.features import FeatureSpec
from shopml.forecast.mixture import MixtureDensityHead

CHECKPOINT_KIND = "forecast.armdn"


def embedding_dim(cardinality: int, cap: int) -> int:
    """The ``min(cap, (cardinality + 1) // 2)`` rule (at least 1)."""
    return max(1, min(cap, (cardinality + 1) // 2))


def scale_target(
    y: torch.Tensor, observed: torch.Tensor, context_length: int, scaling: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale ``y (B, L)``; returns ``z (B, L)`` and ``nu (B,)`` (1 + mean observed context y)."""
    ctx_y = y[:, :context_length]
    ctx_obs = observed[:, :context_length].to(y.dtype)
    nu = 1.0 + (ctx_y * ctx_obs).sum(1) / ctx_obs.sum(1).clamp_min(1.0)  # (B,)
    z = torch.log1p(y) if scaling == "log1p" else y / nu[:, None]
    return z, nu


def unscale_target(z: torch.Tensor, nu: torch.Tensor, scaling: str) -> torch.Tensor:
    """Inverse of :func:`scale_target`; ``nu`` broadcasts over trailing axes of ``z``."""
    if scaling == "log1p":
        return torch.expm1(z.clamp(max=20.0))
    return z * nu


class ARMDNNet(nn.Module):
    """The AR-MDN network (see module docstring).

    Args:
        config: the model configuration.
        num_real: F, real covariates per step.
        cat_cardinalities: sizes of the per-step categoricals (calendar first, then string columns).
        static_cardinalities: sizes of the static categoricals (0 = unknown included).
        num_static_real: static real features per series.
        num_ids: number of training series (the product embedding has ``num_ids + 1`` rows).
    """

    def __init__(
        self,
        config: ARMDNConfig,
        num_real: int,
        cat_cardinalities: list[int],
        static_cardinalities: list[int],
        num_static_real: int,
        num_ids: int,
    ):
        super().__init__()
        self.config = config
        cap = config.max_embedding_dim
        self.cat_emb = nn.ModuleList(
            nn.Embedding(c, embedding_dim(c, cap)) for c in cat_cardinalities
        )
        self.static_emb = nn.ModuleList(
            nn.Embedding(c, embedding_dim(c, cap)) for c in static_cardinalities
        )
        self.id_emb = (
            nn.Embedding(num_ids + 1, config.id_embedding_dim)
            if config.id_embedding_dim > 0
            else None
        )
        assoc_in = num_real + sum(e.embedding_dim for e in self.cat_emb)
        if config.use_assoc_mlp:
            self.assoc_mlp: nn.Module = nn.Sequential(
                nn.Linear(assoc_in, config.assoc_hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.assoc_hidden, config.assoc_dim),
                nn.ReLU(),
            )
            self.assoc_out = config.assoc_dim
        else:
            self.assoc_mlp = nn.Identity()
            self.assoc_out = assoc_in
        static_dim = (
            sum(e.embedding_dim for e in self.static_emb)
            + num_static_real
            + (config.id_embedding_dim if self.id_emb is not None else 0)
            + 1  # log(nu)
        )
        self.lstm = nn.LSTM(
            input_size=self.assoc_out + 1 + static_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        head_in = config.hidden_size + (self.assoc_out if config.use_assoc_mlp else 0)
        self.head = MixtureDensityHead(head_in, config.num_components, config.scale_floor)

    def associative(self, real: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """``real (B, L, F)`` float, ``cat (B, L, C)`` int64 -> ``a (B, L, A)``."""
        parts = [real] + [emb(cat[..., j]) for j, emb in enumerate(self.cat_emb)]
        return self.assoc_mlp(torch.cat(parts, dim=-1))

    def static(
        self,
        static_cat: torch.Tensor,
        static_real: torch.Tensor,
        id_code: torch.Tensor,
        nu: torch.Tensor,
    ) -> torch.Tensor:
        """``(B, Cs)``, ``(B, Fs)``, ``(B,)``, ``(B,)`` -> static vector ``(B, D_s)``."""
        parts = [emb(static_cat[:, j]) for j, emb in enumerate(self.static_emb)]
        parts.append(static_real)
        if self.id_emb is not None:
            parts.append(self.id_emb(id_code))
        parts.append(torch.log(nu)[:, None])
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        a: torch.Tensor,
        z_prev: torch.Tensor,
        s: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """One pass of the LSTM and head.

        Args:
            a: ``(B, L, A)`` associative features; z_prev: ``(B, L)`` previous scaled targets;
            s: ``(B, D_s)`` static vector; state: optional LSTM ``(h, c)``, each
            ``(num_layers, B, H)``.

        Returns:
            ``((mixture_logits, loc, scale), state)`` with arguments ``(B, L, K)`` in fp32.
        """
        steps = a.shape[1]
        x = torch.cat([a, z_prev.unsqueeze(-1), s.unsqueeze(1).expand(-1, steps, -1)], -1)
        h, state = self.lstm(x, state)  # (B, L, H)
        head_in = torch.cat([h, a], -1) if self.config.use_assoc_mlp else h
        return self.head(head_in), state

    # -- fast decoding for ancestral sampling ------------------------------------------------
    def decode_inputs(self, a: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Path-independent parts of the first LSTM layer's gates and of the head.

        Ancestral sampling runs ``B x S`` paths, but ``a_t`` and ``s`` belong to the series, so
        their products with the weights are computed once per series and broadcast over paths.

        Args:
            a: ``(B, T, A)`` associative features of the forecast steps; s: ``(B, D_s)``.

        Returns:
            ``gate_x (B, T, 4H)`` (input part of layer-0 gates, biases included) and
            ``head_x (B, T, 3K)`` (associative part of the head, bias included).
        """
        w_ih = self.lstm.weight_ih_l0  # (4H, A + 1 + D_s)
        n_a = a.shape[-1]
        gate_x = a @ w_ih[:, :n_a].T  # (B, T, 4H)
        gate_x = gate_x + (s @ w_ih[:, n_a + 1 :].T)[:, None, :]
        gate_x = gate_x + self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0
        w_head = self.head.proj.weight  # (3K, H [+ A])
        hid = self.config.hidden_size
        head_x = self.head.proj.bias.expand(*a.shape[:2], -1)  # (B, T, 3K)
        if self.config.use_assoc_mlp:
            head_x = head_x + a @ w_head[:, hid:].T
        return gate_x, head_x

    def decode_step(
        self,
        gate_x: torch.Tensor,
        head_x: torch.Tensor,
        z_prev: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """One LSTM + head step for ``S`` paths per series, the same math as :meth:`forward`.

        Args:
            gate_x: ``(B, 4H)``, head_x: ``(B, 3K)`` from :meth:`decode_inputs` at this step;
            z_prev: ``(B, S)``; state: ``(h, c)``, each ``(num_layers, B, S, H)``.

        Returns:
            ``((mixture_logits, loc, scale), state)`` with arguments ``(B, S, K)``.
        """
        h, c = state
        n_a = self.assoc_out
        w_z = self.lstm.weight_ih_l0[:, n_a]  # (4H,)
        new_h, new_c = [], []
        inp = None
        for layer in range(self.config.num_layers):
            w_hh = getattr(self.lstm, f"weight_hh_l{layer}")
            if layer == 0:
                gates = gate_x[:, None, :] + z_prev[..., None] * w_z + h[0] @ w_hh.T
            else:
                w_ih = getattr(self.lstm, f"weight_ih_l{layer}")
                b = getattr(self.lstm, f"bias_ih_l{layer}") + getattr(
                    self.lstm, f"bias_hh_l{layer}"
                )
                gates = inp @ w_ih.T + h[layer] @ w_hh.T + b  # (B, S, 4H)
            i, f, g, o = gates.chunk(4, dim=-1)
            c_l = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
            h_l = torch.sigmoid(o) * torch.tanh(c_l)
            new_h.append(h_l)
            new_c.append(c_l)
            inp = h_l
        hid = self.config.hidden_size
        raw = inp @ self.head.proj.weight[:, :hid].T + head_x[:, None, :]  # (B, S, 3K)
        logits, loc, raw_scale = raw.float().chunk(3, dim=-1)
        return self.head.domain_map(logits, loc, raw_scale), (
            torch.stack(new_h),
            torch.stack(new_c),
        )


class ARMDN:
    """Associative and Recurrent Mixture Density Network forecaster (a global model).

    Example::

        model = ARMDN(ARMDNConfig(freq="D", horizon=28)).fit(df, static_df, val_size=28)
        fc = model.predict(df, futr_df, horizon=28, num_samples=200)
        model.save("run/"); model = ARMDN.load("run/")

    Args:
        config: an :class:`ARMDNConfig`; keyword ``overrides`` replace its fields.
    """

    def __init__(self, config: ARMDNConfig | None = None, **overrides: Any):
        config = config or ARMDNConfig()
        self.config = config.replace(**overrides) if overrides else config
        self.spec: FeatureSpec | None = None
        self.net: ARMDNNet | None = None
        self.train_uids: list[Any] = []
        self.static_df: pd.DataFrame | None = None
        self.history: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------
    @property
    def covariates(self) -> list[str]:
        """Covariate columns ``df`` and ``futr_df`` must carry (learned at fit)."""
        if self.spec is None:
            raise ValueError("model: expected a fitted model (call fit or load), found none")
        return list(self.spec.numeric_cols) + list(self.spec.cat_cols)

    def _build_net(self) -> ARMDNNet:
        assert self.spec is not None
        return ARMDNNet(
            self.config,
            num_real=self.spec.num_real,
            cat_cardinalities=self.spec.cat_cardinalities,
            static_cardinalities=self.spec.static_cardinalities,
            num_static_real=len(self.spec.static_real_cols),
            num_ids=len(self.train_uids),
        )

    def fit(
        self,
        df: pd.DataFrame,
        static_df: pd.DataFrame | None = None,
        val_size: int | None = None,
        verbose: bool = False,
    ) -> ARMDN:
        """Train on every series of ``df``.

        Args:
            df: long frame ``unique_id, ds, y`` + covariates (see ``data.py``).
            static_df: optional ``unique_id`` + static attributes.
            val_size: steps held out at the end of each series for early stopping on NLL
                (default: the horizon; 0 disables validation).
            verbose: show a progress bar.
        """
        from shopml.forecast.data import build_panel, validate_frame, validate_static
        from shopml.forecast.features import fit_feature_spec
        from shopml.forecast.train import fit_network

        cfg = self.config
        df = validate_frame(df, "df", cfg.freq)
        static_df = validate_static(static_df)
        val_size = cfg.horizon if val_size is None else int(val_size)
        if val_size < 0:
            raise ValueError(f"val_size: expected >= 0, found {val_size}")
        self.spec = fit_feature_spec(df, cfg.freq, static_df)
        self.train_uids = sorted(df["unique_id"].unique().tolist())
        self.static_df = static_df
        panel = build_panel(df, self.spec, static_df, self.train_uids)
        torch.manual_seed(cfg.seed)  # initialisation depends on the config's seed only
        self.net = self._build_net()
        self.history = fit_network(self.net, panel, cfg, val_size=val_size, verbose=verbose)
        return self

    def predict(
        self,
        df: pd.DataFrame,
        futr_df: pd.DataFrame | None = None,
        horizon: int | None = None,
        num_samples: int = 200,
        quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
        static_df: pd.DataFrame | None = None,
        return_samples: bool = False,
        device: str | None = None,
    ) -> pd.DataFrame | tuple[pd.DataFrame, np.ndarray]:
        """Forecast the ``horizon`` steps after the end of every series of ``df``.

        Args:
            df: history, same columns as at fit time (only the last ``context_length`` steps of
                each series are read).
            futr_df: ``unique_id, ds`` + every covariate for the horizon dates of every series.
            horizon: steps to forecast (default ``config.horizon``).
            num_samples: sample paths per series (ancestral sampling).
            quantiles: levels reported as columns ``q0.1``, ``q0.5``, ...
            static_df: static attributes (default: the table given at fit).
            return_samples: also return the paths, ``(n_series, num_samples, horizon)`` float32.
            device: override ``config.device``.

        Returns:
            long frame ``unique_id, ds, mean, median, q<level>...`` (sorted), and the samples when
            asked.
        """
        from shopml.forecast.predict import forecast_frame

        if self.net is None or self.spec is None:
            raise ValueError("model: expected a fitted model (call fit or load), found none")
        horizon = self.config.horizon if horizon is None else int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon: expected >= 1, found {horizon}")
        if num_samples < 1:
            raise ValueError(f"num_samples: expected >= 1, found {num_samples}")
        bad_q = [q for q in quantiles if not 0.0 < q < 1.0]
        if bad_q:
            raise ValueError(f"quantiles: expected levels in (0, 1), found {bad_q}")
        return forecast_frame(
            self,
            df,
            futr_df,
            horizon,
            num_samples,
            tuple(quantiles),
            self.static_df if static_df is None else static_df,
            return_samples,
            device,
        )

    # ------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model into directory ``path`` (weights, config, feature spec, statics)."""
        from shopml.common.checkpoint import save_checkpoint
        from shopml.common.io import write_parquet

        if self.net is None or self.spec is None:
            raise ValueError("model: expected a fitted model to save, found none")
        path = Path(path)
        extra = {
            "spec": self.spec.to_dict(),
            "train_uids": [u.item() if hasattr(u, "item") else u for u in self.train_uids],
            "history": {k: v for k, v in self.history.items() if k != "curve"},
        }
        save_checkpoint(path, self.net.state_dict(), self.config, CHECKPOINT_KIND, extra=extra)
        if self.static_df is not None:
            write_parquet(path / "static.parquet", self.static_df)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> ARMDN:
        """Load a model written by :meth:`save`."""
        from shopml.common.checkpoint import config_from_dict, load_checkpoint

        state, meta = load_checkpoint(path, CHECKPOINT_KIND, map_location="cpu")
        model = cls(config_from_dict(ARMDNConfig, meta["config"]))
        extra = meta["extra"]
        model.spec = FeatureSpec.from_dict(extra["spec"])
        model.train_uids = list(extra["train_uids"])
        model.history = dict(extra.get("history", {}))
        static_path = Path(path) / "static.parquet"
        model.static_df = pd.read_parquet(static_path) if static_path.is_file() else None
        model.net = model._build_net()
        model.net.load_state_dict(state)
        model.net.eval()
        del device
        return model
