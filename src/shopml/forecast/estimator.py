"""The AR-MDN estimator: frames in, a fitted, calibrated network out; forecasts; save and load.

``ARMDN.fit`` validates the frame (``data.py``), fills missing periods (masked in the loss),
learns the feature spec, trains the network (``train.py``; early stopping on the calibrated
validation wQL of averaged weights; with ``scaling="auto"`` or ``select_floor`` the target
scaling and the scale floor are chosen first, on one-Gaussian probes), keeps the best of the
K-component model, its one-Gaussian version, on intermittent count panels the count head
(``output="auto"``, ``counts.py``), and the mixtures' pool on validation (``select_components``; with ``ensemble`` > 1 more seeds
join the pool), and calibrates the forecast's spread per horizon step on the validation horizons
(``calibration.py``). A pooled model (``members``) draws each member's share of the paths from
the member's own random streams and calibrates the pool. ``ARMDN.predict`` samples paths
(``predict.py``) and summarises them into a long frame. The network itself (``network.py``) knows
only tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from shopml.common.devices import resolve_device
from shopml.common.distributed import setup_distributed, teardown_distributed
from shopml.forecast.calibration import conformal_spread, interval_coverage
from shopml.forecast.config import AUTO_SCALING, FLOOR_FACTORS, SCALINGS, ARMDNConfig
from shopml.forecast.counts import candidate_key, keep_count_calibration, output_candidates
from shopml.forecast.data import (
    build_panel,
    fill_gaps,
    validate_frame,
    validate_futr,
    validate_static,
)
from shopml.forecast.features import (
    PRICE_WINDOW,
    FeatureSpec,
    dynamic_features,
    fit_feature_spec,
)
from shopml.forecast.network import ARMDNNet
from shopml.forecast.predict import respread_samples, sample_panel, summarize_samples
from shopml.forecast.train import fit_network, weighted_quantile_loss

CHECKPOINT_KIND = "forecast.armdn"


def _dist_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class ARMDN:
    """Associative and Recurrent Mixture Density Network forecaster (a global model).

    Example::

        model = ARMDN(ARMDNConfig(freq="D", horizon=28)).fit(df, static_df)
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
        self.members: list[ARMDNNet] = []  # further seeds of a seed ensemble (config.ensemble)
        self.train_uids: list[Any] = []
        self.static_df: pd.DataFrame | None = None
        self.spread: list | None = None  # (H, L) or (H, L, 2) calibration factors
        self.history: dict[str, Any] = {}
        # every model fitted by the last ``fit`` ("K=3", "K=1"), each fitted and calibrated
        self.candidates: dict[str, ARMDN] = {}

    @property
    def covariates(self) -> list[str]:
        """Covariate columns ``df`` and ``futr_df`` must carry (learned at fit)."""
        if self.spec is None:
            raise ValueError("model: expected a fitted model (call fit or load), found none")
        return list(self.spec.numeric_cols) + list(self.spec.cat_cols)

    def _build_net(self, config: ARMDNConfig | None = None) -> ARMDNNet:
        assert self.spec is not None
        return ARMDNNet(
            config or self.config,
            num_real=self.spec.num_real,
            cat_cardinalities=self.spec.cat_cardinalities,
            static_cardinalities=self.spec.static_cardinalities,
            num_static_real=len(self.spec.static_real_cols),
            num_ids=len(self.train_uids),
        )

    # ------------------------------------------------------------------------------------------
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
            val_size: steps of each validation horizon; ``config.validation_windows`` of them are held
                out at the end of each series for early stopping, selection and calibration
                (default: the horizon; 0 disables all three).
            verbose: report progress.
        """
        cfg = self.config
        df = validate_frame(df, "df", cfg.freq, missing=cfg.missing)
        df, observed = fill_gaps(df, cfg.freq, cfg.missing)
        static_df = validate_static(static_df)
        self.history, self.members = {}, []
        val_size = cfg.horizon if val_size is None else int(val_size)
        if val_size < 0:
            raise ValueError(f"val_size: expected >= 0, found {val_size}")
        self.spec = fit_feature_spec(df, cfg.freq, static_df)
        self.train_uids = sorted(df["unique_id"].unique().tolist())
        self.static_df = static_df
        panel = build_panel(df, self.spec, static_df, self.train_uids, observed=observed)
        owned = not _dist_initialized()
        ctx = setup_distributed(cfg.device)
        try:
            cfg, probes = self._choose_scaling(cfg, panel, val_size, ctx, verbose)
            candidates = [cfg]
            if cfg.select_components and cfg.num_components > 1 and val_size > 0:
                candidates.append(cfg.replace(num_components=1))
            candidates, intermittency = output_candidates(
                candidates, cfg, df["y"].to_numpy(), observed, val_size
            )
            fits = []
            for cand in candidates:  # a probe of the scaling stage is reused when it is one
                sub, val = probes.get(cand) or self._fit_candidate(
                    cand, panel, val_size, ctx, verbose
                )
                fits.append(sub)
            best = min(fits, key=lambda m: m.history["best_val_wql"])
            self.history["selection"] = {
                candidate_key(m.config): m.history["best_val_wql"] for m in fits
            }
            self.history["intermittency"] = intermittency
            self.candidates = {candidate_key(m.config): m for m in fits}
            mixtures = [m for m in fits if not m.net.count_output]  # only mixtures are pooled
            if (
                not best.net.count_output
                and (cfg.ensemble > 1 or len(mixtures) > 1)
                and val is not None
            ):
                best = self._ensemble(best, mixtures, panel, val, val_size, ctx, verbose)
        finally:
            if owned:
                teardown_distributed(ctx)
        self.config, self.net, self.members, self.spread = (
            best.config,
            best.net,
            best.members,
            best.spread,
        )
        self.history = {**best.history, **self.history}
        return self

    def _fit_candidate(self, config, panel, val_size, ctx, verbose):
        """A sibling trained (and calibrated) with ``config``, and the validation set it used."""
        sub = self._sibling(config)
        sub.net, sub.history, val = sub._train_net(config, panel, val_size, ctx, verbose)
        if config.calibrate and val is not None:
            sub._calibrate(panel, val, ctx.device)
        return sub, val

    def _choose_scaling(self, cfg, panel, val_size, ctx, verbose):
        """Resolve ``scaling="auto"`` and ``select_floor`` on validation with the one-Gaussian
        mixture, the cheapest candidate: first each scaling (at ``scale_floor``), then each
        floor of ``FLOOR_FACTORS`` (with the chosen scaling); the lowest validation wQL wins.

        Returns:
            ``(config, probes)``: ``cfg`` with its scaling and floor resolved, and the probe fits
            ``{config: (model, validation set)}`` (the winner is the K=1 candidate when there is
            one, so selection reuses it instead of fitting it again).
        """
        auto = cfg.scaling == "auto"
        if val_size <= 0 or not (auto or cfg.select_floor):
            return cfg.replace(scaling=AUTO_SCALING) if auto else cfg, {}
        probe = cfg.replace(num_components=1, output="mixture")
        probes: dict[ARMDNConfig, tuple[ARMDN, Any]] = {}
        table: dict[str, float] = {}

        def pick(options: list[ARMDNConfig]) -> ARMDNConfig:
            for c in options:
                if c not in probes:
                    probes[c] = self._fit_candidate(c, panel, val_size, ctx, verbose)
                    table[f"{c.scaling}/{c.scale_floor:g}"] = probes[c][0].history["best_val_wql"]
            return min(options, key=lambda c: probes[c][0].history["best_val_wql"])

        if auto:
            probe = pick([probe.replace(scaling=s) for s in SCALINGS])
        if cfg.select_floor:
            probe = pick([probe.replace(scale_floor=cfg.scale_floor * f) for f in FLOOR_FACTORS])
        self.history["scaling_selection"] = table
        chosen = cfg.replace(scaling=probe.scaling, scale_floor=probe.scale_floor)
        return chosen, probes

    def _sibling(self, config: ARMDNConfig) -> ARMDN:
        """An unfitted model sharing this one's feature spec, series and statics."""
        sub = ARMDN(config)
        sub.spec, sub.train_uids, sub.static_df = self.spec, self.train_uids, self.static_df
        return sub

    def _train_net(self, config, panel, val_size, ctx, verbose):
        torch.manual_seed(config.seed)  # initialisation depends on the config's seed only
        net = self._build_net(config)
        history, val = fit_network(net, panel, config, val_size, ctx, verbose)
        return net.cpu().eval(), history, val

    def _ensemble(self, best: ARMDN, fits, panel, val, val_size, ctx, verbose) -> ARMDN:
        """Pool ``best`` with the other selection candidates and ``ensemble - 1`` more seeds of
        its config; return the pool if its (calibrated) validation wQL beats ``best``'s."""
        cfg = best.config
        ens = self._sibling(cfg)
        ens.net, ens.history = best.net, dict(best.history)
        ens.members = [m.net for m in fits if m is not best]
        for i in range(1, cfg.ensemble):
            net, _, _ = self._train_net(
                cfg.replace(seed=cfg.seed + i), panel, val_size, ctx, verbose
            )
            ens.members.append(net)
        ens._calibrate(panel, val, ctx.device)
        single = best._validation_wql(panel, val, ctx.device)
        pooled = ens._validation_wql(panel, val, ctx.device)
        self.history["ensemble"] = {
            "members": 1 + len(ens.members),
            "val_wql_single": single,
            "val_wql_pooled": pooled,
            "kept": pooled < single,
        }
        return ens if pooled < single else best

    def _draw(self, panel, series, ends, fut_real, fut_cat, num_samples, y_cap, device, spread):
        """``(n, S, H)`` sample paths from the model, or pooled from every ensemble member
        (member ``i`` draws its share of the ``S`` paths from its own streams, seed + i)."""
        nets = [self.net, *self.members]
        if len(nets) == 1:
            return sample_panel(
                self.net, self.config, panel, series, ends, fut_real, fut_cat, num_samples,
                y_cap, device, spread,
            )  # fmt: skip
        counts = np.diff(np.linspace(0, num_samples, len(nets) + 1).round().astype(int))
        parts = [
            sample_panel(
                net,
                self.config.replace(seed=self.config.seed + i),
                panel,
                series,
                ends,
                fut_real,
                fut_cat,
                int(c),
                y_cap,
                device,
            )  # fmt: skip
            for i, (net, c) in enumerate(zip(nets, counts, strict=True))
            if c > 0
        ]
        smp = np.concatenate(parts, axis=1)
        if spread is not None:
            smp = respread_samples(smp, np.asarray(spread, np.float32), self.config.scaling)
            if self.config.sample_cap > 0:
                smp = np.minimum(smp, np.asarray(y_cap, np.float32)[:, None, None])
        return smp

    def _validation_samples(self, panel, val, device, spread=None) -> np.ndarray:
        return self._draw(
            panel, val.series, val.ends, val.fut_real, val.fut_cat, self.config.val_samples,
            val.y_cap, device, spread,
        )  # fmt: skip

    def _validation_wql(self, panel, val, device) -> float:
        """wQL of the model's forecast (calibrated when it is) of the validation horizons."""
        smp = self._validation_samples(panel, val, device, self.spread)
        return weighted_quantile_loss(val.y, smp, val.observed)

    def _calibrate(self, panel, val, device) -> None:
        """Per-step spread from the validation horizons (``calibration.py``)."""
        smp = self._validation_samples(panel, val, device)
        spread = conformal_spread(
            smp, val.y, val.observed, self.config.scaling, sides=self.config.calibration_sides
        )
        after = self._validation_samples(panel, val, device, spread)
        self.spread = spread.tolist()
        self.history["calibration"] = {
            "spread": self.spread,
            "val_coverage_80": interval_coverage(smp, val.y, val.observed),
            "val_coverage_80_calibrated": interval_coverage(after, val.y, val.observed),
            "val_wql_calibrated": weighted_quantile_loss(val.y, after, val.observed),
        }
        if self.net.count_output:  # see counts.keep_count_calibration
            raw = weighted_quantile_loss(val.y, smp, val.observed)
            kept = keep_count_calibration(raw, self.history["calibration"]["val_wql_calibrated"])
            self.spread = self.spread if kept else None
            self.history["calibration"]["kept"] = kept

    # ------------------------------------------------------------------------------------------
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

        A series' forecast depends only on the model, its own history and covariates, the horizon
        and ``num_samples``: never on the other series of ``df`` (per-series random streams).

        Args:
            df: history, same columns as at fit time (the last ``context_length`` steps of each
                series are read; the whole history bounds the draws, see ``sample_cap``).
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
        cfg, spec = self.config, self.spec
        covs = self.covariates
        df = validate_frame(df, "df", cfg.freq, covariates=covs, missing=cfg.missing)
        df, observed = fill_gaps(df, cfg.freq, cfg.missing)
        static_df = validate_static(self.static_df if static_df is None else static_df)
        futr = validate_futr(futr_df, df, horizon, cfg.freq, covs)
        y_max = df["y"].where(observed).groupby(df["unique_id"], sort=True).max().fillna(0.0)
        # the context, plus the periods its first steps' price features read (features.py)
        keep = cfg.context_length + PRICE_WINDOW
        tail = (df.groupby("unique_id").cumcount(ascending=False) < keep).to_numpy()
        panel = build_panel(
            df[tail].reset_index(drop=True), spec, static_df, self.train_uids, observed[tail]
        )
        n = panel.num_series
        fut_real, fut_cat = dynamic_features(futr, spec, history=df)
        spread = None
        if self.spread:  # (V, L) per validation step and level; steps past V reuse the last
            spread = np.asarray(self.spread, np.float32)
            spread = spread[np.minimum(np.arange(horizon), len(spread) - 1)]
        samples = self._draw(
            panel,
            np.arange(n),
            panel.lengths,
            fut_real.reshape(n, horizon, -1),
            fut_cat.reshape(n, horizon, -1),
            num_samples,
            cfg.sample_cap * y_max.to_numpy(np.float32) + 1.0,
            resolve_device(device or cfg.device),
            spread,
        )  # (n, S, H)
        frame = summarize_samples(futr[["unique_id", "ds"]], samples, tuple(quantiles))
        return (frame, samples) if return_samples else frame

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
            "spread": self.spread,
            "history": {k: v for k, v in self.history.items() if k != "curve"},
            "members": len(self.members),
            "member_components": [m.head.num_components for m in self.members],
        }
        state = {k: v.cpu() for k, v in self.net.state_dict().items()}
        for i, net in enumerate(self.members, start=1):
            state.update({f"member{i}.{k}": v.cpu() for k, v in net.state_dict().items()})
        save_checkpoint(path, state, self.config, CHECKPOINT_KIND, extra=extra)
        if self.static_df is not None:
            write_parquet(path / "static.parquet", self.static_df)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> ARMDN:
        """Load a model written by :meth:`save` onto ``device`` (also the device it predicts on)."""
        from shopml.common.checkpoint import config_from_dict, load_checkpoint

        dev = resolve_device(device)
        state, meta = load_checkpoint(path, CHECKPOINT_KIND, map_location=dev)
        saved = {"assoc_route": "lstm_head", **meta["config"]}  # checkpoints before the field
        config = config_from_dict(ARMDNConfig, saved).replace(device=str(dev))
        model = cls(config)
        extra = meta["extra"]
        model.spec = FeatureSpec.from_dict(extra["spec"])
        model.train_uids = list(extra["train_uids"])
        model.spread = extra.get("spread")
        model.history = dict(extra.get("history", {}))
        static_path = Path(path) / "static.parquet"
        model.static_df = pd.read_parquet(static_path) if static_path.is_file() else None
        nets = []
        ks = [config.num_components, *extra.get("member_components", [])]
        for i in range(int(extra.get("members", 0)) + 1):
            prefix = f"member{i}." if i else ""
            own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if not i:
                own = {k: v for k, v in own.items() if not k.startswith("member")}
            net = model._build_net(config.replace(num_components=ks[i]))
            net.load_state_dict(own)
            nets.append(net.to(dev).eval())
        model.net, model.members = nets[0], nets[1:]
        return model
