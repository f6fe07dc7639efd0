"""Per-series random streams, bounded draws, conformal calibration, component selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from shopml.forecast.calibration import conformal_spread, interval_coverage
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.estimator import ARMDN
from shopml.forecast.mixture import counter_uniform, hash32
from shopml.forecast.predict import apply_spread

from .conftest import split_future
from .test_model import TINY


@pytest.fixture(scope="module")
def fitted(sales):
    df, static = sales
    hist, futr, _ = split_future(df, 7)
    return ARMDN(ARMDNConfig(**TINY)).fit(hist, static), hist, futr


def test_counter_uniforms_are_uniform_and_a_function_of_the_key_only():
    keys = torch.tensor([7, 123456789, 2**32 - 1, 0])
    u = counter_uniform(keys, 5000, counter=3, seed=1)
    assert u.shape == (4, 5000) and (u > 0).all() and (u < 1).all()
    for row in u:  # each stream looks uniform: mean, variance, deciles
        assert abs(float(row.mean()) - 0.5) < 0.02 and abs(float(row.var()) - 1 / 12) < 0.005
        hist = torch.histc(row, bins=10, min=0, max=1)
        assert (hist - 500).abs().max() < 90
    alone = counter_uniform(keys[1:2], 5000, counter=3, seed=1)
    assert torch.equal(alone[0], u[1])  # the same stream whatever else is in the batch
    assert not torch.equal(counter_uniform(keys, 5000, 4, 1), u)  # another step: another draw
    assert not torch.equal(counter_uniform(keys, 5000, 3, 2), u)  # another seed
    x = torch.arange(1 << 16)
    assert len(torch.unique(hash32(x))) == 1 << 16  # no collisions on 16-bit inputs


def test_a_series_forecast_does_not_depend_on_the_other_series(fitted):
    model, hist, futr = fitted
    one = model.predict(hist[hist["unique_id"] == 100], futr[futr["unique_id"] == 100])
    two_ids = [100, 103]
    both = model.predict(
        hist[hist["unique_id"].isin(two_ids)], futr[futr["unique_id"].isin(two_ids)]
    )
    everything = model.predict(hist, futr)
    for other in (both, everything):
        part = other[other["unique_id"] == 100].reset_index(drop=True)
        pd.testing.assert_frame_equal(one, part, rtol=1e-6)


def test_draws_are_bounded_by_the_series_own_history(fitted):
    model, hist, futr = fitted
    blown = ARMDN(model.config)
    blown.spec, blown.train_uids, blown.static_df = model.spec, model.train_uids, model.static_df
    blown.net = model._build_net()
    blown.net.load_state_dict(model.net.state_dict())
    k = blown.config.num_components
    with torch.no_grad():  # every component's location far above any sale: a blow-up
        blown.net.head.proj.bias[k : 2 * k] += 15.0
    _, samples = blown.predict(hist, futr, num_samples=50, return_samples=True)
    y_max = hist.groupby("unique_id")["y"].max().to_numpy()
    cap = model.config.sample_cap * y_max + 1.0
    assert (samples <= cap[:, None, None] * (1 + 1e-5)).all()
    assert (samples.max(axis=(1, 2)) > 0.5 * cap).all()  # the cap, not the model, bounds them


def test_conformal_spread_restores_coverage_at_every_level():
    rng = np.random.default_rng(0)
    n, s, v = 4000, 200, 3
    samples = 100 + 10 * rng.standard_normal((n, s, v))
    truth_sd = np.array([20.0, 10.0, 5.0])  # too narrow, right, too wide
    y = 100 + truth_sd * rng.standard_normal((n, v))
    observed = np.ones((n, v), bool)
    spread = conformal_spread(samples, y, observed, scaling="mean")  # (V, 5 levels)
    assert spread.shape == (3, 5)
    np.testing.assert_allclose(spread, np.repeat(truth_sd[:, None] / 10.0, 5, 1), rtol=0.12)
    fixed = apply_spread(torch.tensor(samples), torch.tensor(spread, dtype=torch.float64)).numpy()
    y_new = 100 + truth_sd * rng.standard_normal((n, v))
    for t in range(v):
        for level in (0.4, 0.8, 0.9):
            cov = interval_coverage(
                fixed[:, :, t : t + 1], y_new[:, t : t + 1], observed[:, :1], level
            )
            assert abs(cov - level) < 0.03, (t, level, cov)


def test_spread_per_level_fixes_a_wrong_shape():
    """Draws with the right 80% band but a centre far too narrow: one factor cannot fix both,
    the per-level spread does."""
    rng = np.random.default_rng(1)
    n, s = 3000, 400
    y = rng.standard_normal((n, 1)) * 10 + 100
    core = rng.standard_normal((n, s, 1)) * 2  # narrow centre
    tails = rng.standard_normal((n, s, 1)) * 14
    pick = rng.random((n, s, 1)) < 0.4
    samples = 100 + np.where(pick, tails, core)
    observed = np.ones((n, 1), bool)
    assert interval_coverage(samples, y, observed, 0.4) < 0.25
    spread = conformal_spread(samples, y, observed, scaling="mean")
    fixed = apply_spread(torch.tensor(samples), torch.tensor(spread, dtype=torch.float64)).numpy()
    y_new = rng.standard_normal((n, 1)) * 10 + 100
    for level in (0.4, 0.6, 0.8):
        assert abs(interval_coverage(fixed, y_new, observed, level) - level) < 0.04, level


def test_two_sided_spread_fixes_a_biased_median_per_side():
    """Draws centred 8 above the actuals: one factor per level covers 80% in total but misses
    only below the band; a factor per side misses 10% on each side, as the band should."""
    rng = np.random.default_rng(2)
    n, s = 4000, 200
    samples = 108 + 10 * rng.standard_normal((n, s, 1))
    y, y_new = (100 + 10 * rng.standard_normal((n, 1)) for _ in range(2))
    observed = np.ones((n, 1), bool)
    one = conformal_spread(samples, y, observed, scaling="mean")
    two = conformal_spread(samples, y, observed, scaling="mean", sides=2)
    assert two.shape == (1, 5, 2)
    assert (two[..., 0] > 1.2).all() and (two[..., 1] < 0.9).all()  # widen below, narrow above
    for spread, low_miss, high_miss in [(one, 0.2, 0.0), (two, 0.1, 0.1)]:
        fixed = apply_spread(torch.tensor(samples), torch.tensor(spread, dtype=torch.float64))
        lo, hi = np.quantile(fixed.numpy(), [0.1, 0.9], axis=1)
        assert abs((y_new < lo).mean() - low_miss) < 0.02, (spread.shape, (y_new < lo).mean())
        assert abs((y_new > hi).mean() - high_miss) < 0.02, (spread.shape, (y_new > hi).mean())
    with pytest.raises(ValueError, match="sides: expected 1 or 2, found 3"):
        conformal_spread(samples, y, observed, scaling="mean", sides=3)


def test_calibration_sides_default_by_frequency():
    # two-sided for monthly and quarterly data only; an explicit value wins
    assert [ARMDNConfig(freq=f).calibration_sides for f in ("D", "W", "H", "MS", "Q")] == [
        1, 1, 1, 2, 2,
    ]  # fmt: skip
    assert ARMDNConfig(freq="MS", spread_sides=1).calibration_sides == 1
    with pytest.raises(ValueError, match="spread_sides: expected None, 1 or 2, found 3"):
        ARMDNConfig(spread_sides=3)


def test_fit_selects_components_on_validation_and_calibrates(sales):
    df, static = sales
    model = ARMDN(ARMDNConfig(**{**TINY, "select_components": True})).fit(df, static)
    sel = model.history["selection"]
    assert set(sel) == {"K=3", "K=1"}
    assert model.config.num_components == int(min(sel, key=sel.get)[2:])
    assert model.history["best_val_wql"] == min(sel.values())
    cal = model.history["calibration"]
    spread = np.asarray(model.spread)
    assert spread.shape == (model.config.horizon, 5) and ((spread >= 0.25) & (spread <= 4)).all()
    # 42 validation actuals: calibrated coverage within sampling noise of 80%
    assert abs(cal["val_coverage_80_calibrated"] - 0.8) < 0.1


@pytest.mark.parametrize("scaling", ["log1p", "logmean", "mean"])
def test_scalings_invert_and_map_zero_sales_to_the_clip_floor(scaling):
    from shopml.forecast.network import scale_target, scale_values, unscale_target

    y = torch.tensor([[0.0, 3.0, 250.0, 9000.0], [1.0, 0.0, 2.0, 5.0]])
    observed = torch.ones_like(y, dtype=torch.bool)
    z, nu = scale_target(y, observed, 3, scaling)
    torch.testing.assert_close(unscale_target(z, nu[:, None], scaling), y, rtol=1e-5, atol=1e-3)
    zero = scale_values(torch.zeros(2), nu, scaling)
    torch.testing.assert_close(unscale_target(zero, nu, scaling), torch.zeros(2), atol=1e-5, rtol=0)
    if scaling == "logmean":  # centred: a series' usual level sits near 0 whatever its size
        level = torch.tensor([[90.0, 110.0, 100.0], [9e4, 1.1e5, 1e5]])
        z, _ = scale_target(level, torch.ones_like(level, dtype=torch.bool), 3, scaling)
        assert z.abs().max() < 0.15


@pytest.mark.parametrize("scaling", ["logmean", "mean"])
def test_respread_samples_matches_the_spread_applied_while_sampling(fitted, scaling):
    """Early stopping scores calibrated validation forecasts by re-spreading drawn samples: the
    same forecast the model gives with the spread applied inside sampling (no cap reached)."""
    from shopml.forecast.predict import respread_samples

    model, hist, futr = fitted
    m = ARMDN(model.config.replace(scaling=scaling, sample_cap=0.0))
    m.spec, m.train_uids, m.static_df = model.spec, model.train_uids, model.static_df
    m.net = m._build_net()
    m.net.load_state_dict(model.net.state_dict())
    _, raw = m.predict(hist, futr, num_samples=64, return_samples=True)
    one = np.linspace(0.5, 2.0, 5 * m.config.horizon, dtype=np.float32).reshape(-1, 5)
    two = np.stack([one, one[::-1]], axis=-1)  # (H, 5, 2): lower and upper factors differ
    for spread in (one, two):
        m.spread = spread.tolist()
        _, inside = m.predict(hist, futr, num_samples=64, return_samples=True)
        after = respread_samples(raw, spread, scaling)
        np.testing.assert_allclose(after, inside, rtol=2e-4, atol=2e-3)
        assert not np.allclose(after, raw, rtol=1e-2)
    assert not np.allclose(respread_samples(raw, one, scaling), after, rtol=1e-2)


def test_tf32_decoding_restores_the_users_matmul_setting():
    from shopml.forecast.predict import tf32_matmuls

    before = torch.get_float32_matmul_precision()
    try:
        for setting in ("highest", "high"):
            torch.set_float32_matmul_precision(setting)
            with tf32_matmuls():
                pass
            assert torch.get_float32_matmul_precision() == setting
    finally:
        torch.set_float32_matmul_precision(before)
