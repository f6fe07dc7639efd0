"""The AR-MDN network: embeddings + associative MLP + LSTM + Gaussian mixture head (tensors only).

Per step ``t`` of a series (letters: B windows, L steps, F real covariates, C categoricals, K
mixture components, H LSTM width)::

    e_t = [real_t, emb(weekday_t), emb(week_t), emb(month_t), emb(event_t), ...]
    a_t = W e_t + MLP(e_t)                           associative features (causal, known ahead)
    s   = [emb(product), emb(category), emb(brand), static reals, log(nu)]
    h_t = LSTM([e_t, z_{t-1}, s])                    z = scaled target (log1p or y / nu)
    (mixture_logits, loc, scale)_t = Head([h_t, a_t])  -> p(z_t) = sum_k w_k N(loc_k, scale_k)

The associative MLP's output reaches the mixture head directly (``assoc_route="head"``), so a
known-in-advance promotion or festival moves the forecast on its own step without waiting for
the LSTM state, while the LSTM reads the covariates themselves, as the no-MLP ablation's does.
The MLP's last layer starts at zero (``AssociativeMLP``). On Dominick's OJ this beat the former
wiring (``assoc_route="lstm_head"``: ``a_t = ReLU(MLP(e_t))`` into both the LSTM and the head,
kept for checkpoints written before) by 0.007 wQL over two seeds (benchmarks/README.md).

With ``config.output == "negbin"`` the head is ``counts.NegBinHead`` instead: a zero-inflated
negative binomial of the count ``y_t`` with mean ``nu * rate_t`` (:func:`output_log_prob`,
:func:`output_sample` dispatch on the head).

Training is teacher-forced (``z_{t-1}`` observed); forecasting feeds each path's own draw back
(ancestral sampling, ``predict.py``).

This module knows tensors; the estimator (``estimator.py``: frames, fitting, saving) builds it.
"""

from __future__ import annotations

import torch
from torch import nn

from shopml.forecast.config import ARMDNConfig
from shopml.forecast.counts import NEGBIN, NegBinHead, negbin_log_prob, negbin_sample
from shopml.forecast.mixture import MixtureDensityHead, mixture_log_prob, mixture_sample


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
    return scale_values(y, nu[:, None], scaling), nu


def scale_values(y: torch.Tensor, nu: torch.Tensor, scaling: str) -> torch.Tensor:
    """Units -> the scaled axis: ``log1p(y)`` ("log1p"), ``log1p(y) - log(nu)`` ("logmean":
    log scale centred on the series' level), ``y / nu`` ("mean"); ``nu`` broadcasts."""
    if scaling == "log1p":
        return torch.log1p(y)
    if scaling == "logmean":
        return torch.log1p(y) - torch.log(nu)
    return y / nu


def unscale_target(z: torch.Tensor, nu: torch.Tensor, scaling: str) -> torch.Tensor:
    """Inverse of :func:`scale_values`; ``nu`` broadcasts over trailing axes of ``z``."""
    if scaling == "log1p":
        return torch.expm1(z.clamp(max=20.0))
    if scaling == "logmean":
        return torch.expm1((z + torch.log(nu)).clamp(max=20.0))
    return z * nu


class AssociativeMLP(nn.Module):
    """``a_t = W e_t + MLP(e_t)``: a linear map of the causal inputs plus a one-hidden-layer MLP
    whose last layer starts at zero, so the head starts from a linear read of the covariates and
    the MLP adds only the interactions it earns."""

    def __init__(self, in_features: int, hidden: int, out_features: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_features),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.linear(e) + self.mlp(e)


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
        # ``associative`` returns [LSTM part | head part]: widths ``lstm_assoc``, ``head_assoc``
        self.route = config.assoc_route if config.use_assoc_mlp else "none"
        if self.route == "head":
            self.assoc_mlp: nn.Module = AssociativeMLP(
                assoc_in, config.assoc_hidden, config.assoc_dim, config.dropout
            )
            self.lstm_assoc, self.head_assoc = assoc_in, config.assoc_dim
        elif self.route == "lstm_head":
            self.assoc_mlp = nn.Sequential(
                nn.Linear(assoc_in, config.assoc_hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.assoc_hidden, config.assoc_dim),
                nn.ReLU(),
            )
            self.lstm_assoc, self.head_assoc = config.assoc_dim, config.assoc_dim
        else:
            self.assoc_mlp = nn.Identity()
            self.lstm_assoc, self.head_assoc = assoc_in, 0
        static_dim = (
            sum(e.embedding_dim for e in self.static_emb)
            + num_static_real
            + (config.id_embedding_dim if self.id_emb is not None else 0)
            + 1  # log(nu)
        )
        self.lstm = nn.LSTM(
            input_size=self.lstm_assoc + 1 + static_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        head_in = config.hidden_size + self.head_assoc
        self.head: nn.Module = (
            NegBinHead(head_in)
            if config.output == NEGBIN
            else MixtureDensityHead(
                head_in, config.num_components, config.scale_floor, config.scale_ceiling
            )
        )

    @property
    def count_output(self) -> bool:
        """Whether the head is the count head (``counts.py``) rather than the mixture."""
        return isinstance(self.head, NegBinHead)

    def associative(self, real: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """``real (B, L, F)`` float, ``cat (B, L, C)`` int64 -> ``a (B, L, A)``."""
        parts = [real] + [emb(cat[..., j]) for j, emb in enumerate(self.cat_emb)]
        e = torch.cat(parts, dim=-1)
        if self.route == "head":
            return torch.cat([e, self.assoc_mlp(e)], -1)
        return self.assoc_mlp(e)

    def split_assoc(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``a`` from :meth:`associative` -> (the LSTM's part, the head's part or None)."""
        if self.route == "head":
            return a[..., : self.lstm_assoc], a[..., self.lstm_assoc :]
        return a, (a if self.head_assoc else None)

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
        a_lstm, a_head = self.split_assoc(a)
        x = torch.cat([a_lstm, z_prev.unsqueeze(-1), s.unsqueeze(1).expand(-1, steps, -1)], -1)
        h, state = self.lstm(x, state)  # (B, L, H)
        head_in = h if a_head is None else torch.cat([h, a_head], -1)
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
        a, a_head = self.split_assoc(a)
        n_a = a.shape[-1]
        gate_x = a @ w_ih[:, :n_a].T  # (B, T, 4H)
        gate_x = gate_x + (s @ w_ih[:, n_a + 1 :].T)[:, None, :]
        gate_x = gate_x + self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0
        w_head = self.head.proj.weight  # (3K, H [+ A])
        hid = self.config.hidden_size
        head_x = self.head.proj.bias.expand(*a.shape[:2], -1)  # (B, T, 3K)
        if a_head is not None:
            head_x = head_x + a_head @ w_head[:, hid:].T
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
        n_a = self.lstm_assoc
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
        return self.head.domain_map(*raw.float().chunk(self.head.args_dim, dim=-1)), (
            torch.stack(new_h),
            torch.stack(new_c),
        )


# -- the output's likelihood and draws, whichever head ----------------------------------------
def output_log_prob(
    count: bool,
    params: tuple[torch.Tensor, ...],
    y: torch.Tensor,
    z: torch.Tensor,
    nu: torch.Tensor,
) -> torch.Tensor:
    """Log likelihood ``(B, L)`` of the targets: the mixture's density of the scaled ``z``, or
    (``count``) the count head's pmf of ``y`` in units; ``nu (B,)``, params ``(B, L, K)``."""
    if count:
        return negbin_log_prob(y, *params, nu[:, None])
    return mixture_log_prob(z, *params)


def output_sample(
    count: bool,
    params: tuple[torch.Tensor, ...],
    nu: torch.Tensor,
    u_first: torch.Tensor,
    u_second: torch.Tensor,
    y_cap: torch.Tensor,
    scaling: str,
) -> torch.Tensor:
    """One draw per path on the scaled axis, ``(B, S)``, from params ``(B, S, K)`` and uniforms
    ``(B, S)``; the count head draws a count in ``[0, y_cap]`` (``nu, y_cap (B,)``) and scales it."""
    if count:
        y = negbin_sample(*params, nu[:, None], u_first, u_second, y_cap[:, None])
        return scale_values(y, nu[:, None], scaling)
    return mixture_sample(*params, u_first, u_second)
