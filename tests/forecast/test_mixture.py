"""Mixture head: log_prob against logsumexp and MixtureSameFamily; domain; sampling moments."""

from __future__ import annotations

import math

import pytest
import torch

from shopml.forecast.mixture import (
    MixtureDensityHead,
    as_torch_distribution,
    mixture_log_prob,
    mixture_mean,
    mixture_nll,
    mixture_sample,
    mixture_variance,
    mixture_weights,
)


def _args(shape=(5, 4), k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, k, generator=g)
    loc = 3 * torch.randn(*shape, k, generator=g)
    scale = torch.rand(*shape, k, generator=g) + 0.2
    y = 3 * torch.randn(*shape, generator=g)
    return y, logits, loc, scale


@pytest.mark.parametrize("k", [1, 2, 5])
def test_log_prob_matches_explicit_logsumexp_and_torch(k):
    y, logits, loc, scale = (t.double() for t in _args(k=k))
    ours = mixture_log_prob(y, logits, loc, scale)
    w = torch.softmax(logits, -1)
    dens = (
        w * torch.exp(-0.5 * ((y[..., None] - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))
    ).sum(-1)
    torch.testing.assert_close(ours, torch.log(dens), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, as_torch_distribution(logits, loc, scale).log_prob(y))


def test_log_prob_is_stable_far_from_every_component():
    y = torch.tensor([1e3])
    lp = mixture_log_prob(y, torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2))
    assert torch.isfinite(lp).all()
    assert lp.item() == pytest.approx(-0.5 * 1e6 - 0.5 * math.log(2 * math.pi), rel=1e-6)


def test_nll_mask_averages_only_masked_entries():
    y, logits, loc, scale = _args()
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[0, :2] = True
    expect = -mixture_log_prob(y, logits, loc, scale)[0, :2].mean()
    torch.testing.assert_close(mixture_nll(y, logits, loc, scale, mask), expect)


def test_head_domain_weights_sum_to_one_and_scales_floored():
    head = MixtureDensityHead(7, num_components=4, scale_floor=0.1)
    x = 10 * torch.randn(32, 7)
    logits, loc, scale = head(x)
    assert logits.shape == loc.shape == scale.shape == (32, 4)
    torch.testing.assert_close(mixture_weights(logits).sum(-1), torch.ones(32))
    assert (scale >= 0.1).all()
    with pytest.raises(ValueError, match="num_components"):
        MixtureDensityHead(7, num_components=0)


def test_sample_moments_match_analytic():
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    loc = torch.tensor([[-4.0, 0.0, 6.0]])
    scale = torch.tensor([[0.5, 1.0, 2.0]])
    n = 200_000
    g = torch.Generator().manual_seed(1)
    draws = mixture_sample(logits.expand(n, 3), loc.expand(n, 3), scale.expand(n, 3), generator=g)
    mean, var = mixture_mean(logits, loc, scale), mixture_variance(logits, loc, scale)
    ref = as_torch_distribution(logits, loc, scale)
    torch.testing.assert_close(mean, ref.mean)
    torch.testing.assert_close(var, ref.variance)
    se = math.sqrt(var.item() / n)
    assert abs(draws.mean().item() - mean.item()) < 5 * se
    assert draws.var().item() == pytest.approx(var.item(), rel=0.02)
    # the mixture CDF at -2: sum_k w_k Phi((-2 - mu_k) / sigma_k)
    cdf = sum(
        w * 0.5 * (1 + math.erf((-2 - m) / (s * math.sqrt(2))))
        for w, m, s in [(0.2, -4.0, 0.5), (0.5, 0.0, 1.0), (0.3, 6.0, 2.0)]
    )
    assert (draws < -2).float().mean().item() == pytest.approx(cdf, abs=0.004)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_component_choice_is_the_first_cumulative_weight_above_the_uniform(k):
    g = torch.Generator().manual_seed(k)
    logits, loc = torch.randn(4000, k, generator=g), torch.arange(k, dtype=torch.float32)
    u = torch.rand(4000, generator=g)
    u[:3] = torch.tensor([1e-7, 0.5, 1 - 1e-7])[:3]
    # with a tiny scale and u_normal = 0.5 the draw is the chosen component's loc
    draws = mixture_sample(
        logits, loc.expand(4000, k), torch.full((4000, k), 1e-6), u, torch.full_like(u, 0.5)
    )
    cum = torch.softmax(logits, -1).cumsum(-1)
    expected = torch.searchsorted(cum, u[:, None], right=True).squeeze(1).clamp(max=k - 1)
    assert torch.equal(draws.round().long(), expected)
