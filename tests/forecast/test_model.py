"""AR-MDN: shapes, gradients, fit/predict/save/load round trip, planted bimodal law, bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from shopml.forecast.config import AUTO_SCALING, FLOOR_FACTORS, SCALINGS, ARMDNConfig
from shopml.forecast.data import WindowSampler, build_panel, validate_frame
from shopml.forecast.estimator import ARMDN
from shopml.forecast.features import fit_feature_spec
from shopml.forecast.network import ARMDNNet
from shopml.forecast.train import WindowModel, to_device, validation_set, window_nll

from .conftest import split_future

TINY = dict(
    horizon=7,
    context_length=14,
    hidden_size=16,
    num_layers=1,
    assoc_hidden=16,
    assoc_dim=8,
    id_embedding_dim=4,
    max_embedding_dim=4,
    batch_size=32,
    max_epochs=2,
    steps_per_epoch=10,
    val_samples=16,
    select_components=False,
    device="cpu",
)


@pytest.fixture(scope="module")
def fitted(sales):
    df, static = sales
    hist, futr, actual = split_future(df, 7)
    model = ARMDN(ARMDNConfig(**TINY)).fit(hist, static)
    return model, hist, futr, actual, static


def test_window_sampler_covers_only_admissible_windows(sales):
    df, static = sales
    df = validate_frame(df, "df", "D")
    spec = fit_feature_spec(df, "D", static)
    panel = build_panel(df, spec, static)
    sampler = WindowSampler(panel, 21, holdout=7, min_target=1, rng=np.random.default_rng(0))
    b = sampler.sample(512)
    assert b["y"].shape == (512, 21) and b["real"].shape[:2] == (512, 21)
    # the held-out last 7 days never appear: every window ends at least 7 steps before the end
    assert sampler.total == int(((panel.lengths - 7) - 2 + 1).sum())
    assert b["observed"][:, -1].all()


def test_every_parameter_gets_a_gradient_and_no_nan(sales):
    df, static = sales
    df = validate_frame(df, "df", "D")
    model = ARMDN(ARMDNConfig(**TINY))
    model.spec = fit_feature_spec(df, "D", static)
    model.train_uids = sorted(df["unique_id"].unique().tolist())
    panel = build_panel(df, model.spec, static, model.train_uids)
    net = model._build_net()
    batch = to_device(
        WindowSampler(panel, 21, 0, 1, np.random.default_rng(0)).sample(16), torch.device("cpu")
    )
    torch.nn.init.normal_(net.assoc_mlp.mlp[-1].weight)  # starts at zero: no gradient before
    total, count = window_nll(WindowModel(net), batch, model.config)
    (total / count).backward()
    assert torch.isfinite(total)
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if "id_emb" not in name and "static_emb" not in name and "cat_emb" not in name:
            assert p.grad.abs().sum() > 0, name


def test_fit_predict_save_load_round_trip(fitted, tmp_path):
    model, hist, futr, actual, _ = fitted
    fc, samples = model.predict(hist, futr, num_samples=100, return_samples=True)
    n = hist["unique_id"].nunique()
    assert samples.shape == (n, 100, 7) and (samples >= 0).all()
    assert list(fc.columns) == ["unique_id", "ds", "mean", "median", "q0.1", "q0.5", "q0.9"]
    assert len(fc) == n * 7 and not fc.isna().any().any()
    pd.testing.assert_frame_equal(fc[["unique_id", "ds"]], actual[["unique_id", "ds"]])
    assert (fc["q0.1"] <= fc["median"]).all() and (fc["median"] <= fc["q0.9"]).all()
    np.testing.assert_allclose(fc["median"], fc["q0.5"])
    model.save(tmp_path / "run")
    loaded = ARMDN.load(tmp_path / "run", device="cpu")
    assert loaded.config.device == "cpu" and next(loaded.net.parameters()).device.type == "cpu"
    assert loaded.spread == model.spread and loaded.config == model.config
    fc2 = loaded.predict(hist, futr, num_samples=100)
    pd.testing.assert_frame_equal(fc, fc2)
    for k, v in model.net.state_dict().items():
        torch.testing.assert_close(v, loaded.net.state_dict()[k])


def test_tiny_batch_can_be_overfit():
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=40)
    df = pd.DataFrame(
        {"unique_id": 1, "ds": ds, "y": np.tile([0.0, 5.0, 10.0, 5.0], 10) + rng.random(40) * 0}
    )
    cfg = ARMDNConfig(**{**TINY, "max_epochs": 8, "steps_per_epoch": 25, "lr": 1e-2})
    model = ARMDN(cfg).fit(df, val_size=0)
    curve = model.history["curve"]
    assert curve[-1]["train_nll"] < curve[0]["train_nll"] - 1.0


def _bimodal(n_series=40, n_days=60, seed=0):
    """y is 5 or 50 with probability 1/2 each, independent of everything observable."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=n_days)
    y = np.where(rng.random((n_series, n_days)) < 0.5, 5.0, 50.0)
    y = np.round(y * np.exp(0.05 * rng.standard_normal(y.shape)))
    return pd.DataFrame(
        {
            "unique_id": np.repeat(np.arange(n_series), n_days),
            "ds": np.tile(ds, n_series),
            "y": y.ravel(),
        }
    )


def test_mixture_learns_planted_bimodal_law_better_than_one_gaussian():
    df = _bimodal()
    cfg = ARMDNConfig(
        **{
            **TINY,
            "horizon": 4,
            "context_length": 8,
            "max_epochs": 6,
            "steps_per_epoch": 25,
            "batch_size": 64,
            "lr": 3e-3,
            "scale_floor": 0.02,
            "patience": 6,
            "scaling": "log1p",  # the planted law sits at fixed units: 5 or 50
        }
    )
    nll = {}
    for k in (1, 3):
        model = ARMDN(cfg.replace(num_components=k)).fit(df, val_size=4)
        nll[k] = model.history["best_val_nll"]
    # one Gaussian on log1p(y) in {1.8, 3.9}: NLL >= ~1.4; the mixture can go far below
    assert nll[1] > 1.2
    assert nll[3] < nll[1] - 0.8, nll


# ------------------------------------------------------------------------------------------------
def test_bad_inputs_raise_clear_errors(fitted):
    model, hist, futr, _, static = fitted
    with pytest.raises(ValueError, match="futr_df: covariates missing"):
        model.predict(hist, futr.iloc[:-1])
    with pytest.raises(ValueError, match=r"futr_df: missing column\(s\) \['price'\]"):
        model.predict(hist, futr.drop(columns=["price"]))
    with pytest.raises(ValueError, match="futr_df: 1 series not in the history"):
        extra = futr.iloc[:1].assign(unique_id=999)
        model.predict(hist, pd.concat([futr, extra]))
    with pytest.raises(ValueError, match="futr_df: the model uses covariates"):
        model.predict(hist, None)
    with pytest.raises(ValueError, match="duplicate"):
        model.predict(pd.concat([hist, hist.iloc[:1]]), futr)
    bad = hist.copy()
    bad.loc[3, "y"] = np.nan
    with pytest.raises(
        ValueError, match=r"column 'y' has 1 NaN value\(s\) \(first at unique_id=100, ds=2024-01-04"
    ):
        ARMDN(ARMDNConfig(**TINY, missing="refuse")).fit(bad, static)
    bad = hist.copy()
    bad.loc[3, "y"] = -1.0
    with pytest.raises(ValueError, match="negative"):
        ARMDN(ARMDNConfig(**TINY)).fit(bad, static)
    bad = hist.copy()
    bad.loc[5, "price"] = np.nan
    with pytest.raises(ValueError, match="column 'price' has 1 NaN"):
        model.predict(bad, futr)
    with pytest.raises(ValueError, match="series 100 has missing periods: 2024-01-10"):
        ARMDN(ARMDNConfig(**TINY, missing="refuse")).fit(hist.drop(index=[10]), static)
    with pytest.raises(ValueError, match="missing column"):
        ARMDN(ARMDNConfig(**TINY)).fit(hist.drop(columns=["y"]))
    with pytest.raises(ValueError, match="'ds' should be datetime64"):
        ARMDN(ARMDNConfig(**TINY)).fit(hist.assign(ds=hist["ds"].astype(str)))
    with pytest.raises(ValueError, match="freq: expected one of D, W"):
        ARMDNConfig(freq="5min")
    with pytest.raises(ValueError, match="fitted"):
        ARMDN().predict(hist, futr)


def test_weekly_frequency_and_no_covariates():
    rng = np.random.default_rng(0)
    ds = pd.date_range("2020-01-02", periods=40, freq="7D")
    df = pd.DataFrame(
        {
            "unique_id": np.repeat(["a", "b"], 40),
            "ds": np.tile(ds, 2),
            "y": rng.poisson(20, 80).astype(float),
        }
    )
    model = ARMDN(ARMDNConfig(**{**TINY, "freq": "W", "horizon": 3, "context_length": 6})).fit(df)
    fc = model.predict(df, horizon=3, num_samples=50)
    assert fc["ds"].tolist()[:3] == list(
        pd.date_range(ds[-1] + pd.Timedelta(days=7), periods=3, freq="7D")
    )
    assert fc["unique_id"].tolist() == ["a"] * 3 + ["b"] * 3


@pytest.mark.parametrize(
    "assoc",
    [
        {"use_assoc_mlp": False},
        {"use_assoc_mlp": True, "assoc_route": "head"},
        {"use_assoc_mlp": True, "assoc_route": "lstm_head"},
    ],
)
@pytest.mark.parametrize("layers", [1, 2])
def test_decode_step_matches_lstm_forward(assoc, layers):
    cfg = ARMDNConfig(**{**TINY, "num_layers": layers, **assoc, "dropout": 0.0})
    net = ARMDNNet(
        cfg,
        num_real=3,
        cat_cardinalities=[7, 54],
        static_cardinalities=[4],
        num_static_real=1,
        num_ids=5,
    ).eval()
    for p in net.parameters():  # the zero-initialised last layer of the MLP must count too
        torch.nn.init.normal_(p, std=0.3)
    b, s_paths = 3, 4
    real, cat = torch.randn(b, 1, 3), torch.randint(0, 7, (b, 1, 2))
    a = net.associative(real, cat)  # (B, 1, A)
    s = net.static(
        torch.randint(0, 4, (b, 1)), torch.randn(b, 1), torch.arange(b), torch.rand(b) + 1
    )
    h0 = torch.randn(layers, b, s_paths, cfg.hidden_size)
    c0 = torch.randn(layers, b, s_paths, cfg.hidden_size)
    z_prev = torch.randn(b, s_paths)
    with torch.no_grad():
        gate_x, head_x = net.decode_inputs(a, s)
        (lg, lo, sc), (h1, c1) = net.decode_step(gate_x[:, 0], head_x[:, 0], z_prev, (h0, c0))
        # reference: nn.LSTM + head on the flattened (series * paths) rows
        rows = b * s_paths
        ref, (hr, cr) = net(
            a.repeat_interleave(s_paths, 0),
            z_prev.reshape(rows, 1),
            s.repeat_interleave(s_paths, 0),
            (h0.reshape(layers, rows, -1).contiguous(), c0.reshape(layers, rows, -1).contiguous()),
        )
    for ours, theirs in zip((lg, lo, sc), ref, strict=True):
        torch.testing.assert_close(ours.reshape(rows, -1), theirs[:, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h1.reshape(layers, rows, -1), hr, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c1.reshape(layers, rows, -1), cr, rtol=1e-4, atol=1e-5)


def test_seed_ensemble_pools_member_paths_and_round_trips(sales, tmp_path):
    df, static = sales
    hist, futr, _ = split_future(df, 7)
    model = ARMDN(ARMDNConfig(**{**TINY, "ensemble": 2, "calibrate": False})).fit(hist, static)
    info = model.history["ensemble"]
    assert info["members"] == 2 and info["kept"] == (
        info["val_wql_pooled"] < info["val_wql_single"]
    )
    assert len(model.members) == (1 if info["kept"] else 0)
    # pool two members by hand: each draws its share of the paths from its own seed's streams
    other = ARMDN(model.config.replace(seed=model.config.seed + 1, ensemble=1))
    other.spec, other.train_uids, other.static_df = model.spec, model.train_uids, static
    other.net = model._build_net(model.config.replace(num_components=1))  # pools mix K
    torch.manual_seed(5)
    for p in other.net.parameters():
        p.data.normal_(0, 0.1)
    single = ARMDN(model.config.replace(ensemble=1))
    single.spec, single.train_uids, single.static_df = model.spec, model.train_uids, static
    single.net = model.net
    pooled = ARMDN(model.config)
    pooled.spec, pooled.train_uids, pooled.static_df = model.spec, model.train_uids, static
    pooled.net, pooled.members = model.net, [other.net]
    _, s_pool = pooled.predict(hist, futr, num_samples=10, return_samples=True)
    _, s_a = single.predict(hist, futr, num_samples=5, return_samples=True)
    _, s_b = other.predict(hist, futr, num_samples=5, return_samples=True)
    np.testing.assert_allclose(s_pool, np.concatenate([s_a, s_b], axis=1), rtol=1e-6)
    assert not np.allclose(s_a, s_b)
    pooled.save(tmp_path / "ens")
    loaded = ARMDN.load(tmp_path / "ens")
    assert len(loaded.members) == 1
    _, s_load = loaded.predict(hist, futr, num_samples=10, return_samples=True)
    np.testing.assert_allclose(s_load, s_pool, rtol=1e-6)


def test_weight_average_tracks_the_weights_and_swaps_back():
    from shopml.forecast.train import WeightAverage

    net = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in net.parameters()]
    avg = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # the weights jump once, then stay
    for _ in range(200):
        avg.update(net)
    for s, p, p0 in zip(avg.shadow, net.parameters(), start, strict=True):
        torch.testing.assert_close(s, p.detach(), atol=1e-6, rtol=0)  # caught up with the jump
        assert not torch.allclose(p0, p.detach())
    avg2 = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    avg2.update(net)  # one update moves the average only part of the way (ramped decay 2/11)
    moved = [(s - p0 - 1.0).abs().max() for s, p0 in zip(avg2.shadow, start, strict=True)]
    assert all(0.05 < float(m) < 0.95 for m in moved)
    before = [p.detach().clone() for p in net.parameters()]
    avg2.swap(net)
    assert not torch.allclose(before[0], next(net.parameters()).detach())
    avg2.swap(net)
    for b, p in zip(before, net.parameters(), strict=True):
        torch.testing.assert_close(b, p.detach())


def test_validation_windows_tile_the_held_out_end_and_training_never_reads_it(sales):
    df, static = sales
    df = validate_frame(df, "df", "D")
    cfg = ARMDNConfig(**{**TINY, "val_windows": 2, "val_series": 3})
    spec = fit_feature_spec(df, "D", static)
    panel = build_panel(df, spec, static, sorted(df["unique_id"].unique().tolist()))
    val = validation_set(panel, cfg, holdout=7, seed=0)
    n = 3
    assert val.y.shape == (2 * n, 7)
    np.testing.assert_array_equal(val.series[:n], val.series[n:])
    lengths = panel.lengths[val.series[:n]]
    np.testing.assert_array_equal(val.ends[:n], lengths - 14)  # the older horizon first
    np.testing.assert_array_equal(val.ends[n:], lengths - 7)
    for row in (0, n):  # each row's actuals are the panel's targets right after its context
        s, e = val.series[row], val.ends[row]
        lo = panel.offsets[s]
        np.testing.assert_array_equal(val.y[row], panel.y[lo + e : lo + e + 7])
    # the model scores the newest horizon with both earlier ones in its context window
    assert val.windows["y"].shape == (2 * n, cfg.context_length + 7)
    np.testing.assert_array_equal(val.windows["y"][n:, -7:], val.y[n:])


def test_validation_windows_default_by_frequency(sales):
    # one held-out horizon for monthly / quarterly data, two otherwise; an explicit value wins
    assert [ARMDNConfig(freq=f).validation_windows for f in ("D", "W", "H", "MS", "Q")] == [
        2, 2, 2, 1, 1,
    ]  # fmt: skip
    assert ARMDNConfig(freq="MS", val_windows=2).validation_windows == 2
    with pytest.raises(ValueError, match="val_windows: expected None or >= 1, found 0"):
        ARMDNConfig(val_windows=0)
    df, static = sales
    df = validate_frame(df, "df", "D")
    spec = fit_feature_spec(df, "D", static)
    panel = build_panel(df, spec, static, sorted(df["unique_id"].unique().tolist()))
    cfg = ARMDNConfig(**{**TINY, "val_series": 3}).replace(val_windows=None)
    assert validation_set(panel, cfg, holdout=7, seed=0).y.shape == (2 * 3, 7)
    val = validation_set(panel, cfg.replace(val_windows=1), holdout=7, seed=0)
    assert val.y.shape == (3, 7)
    np.testing.assert_array_equal(val.ends, panel.lengths[val.series] - 7)


def test_checkpoint_without_assoc_route_loads_the_former_wiring(sales, tmp_path):
    import json

    df, static = sales
    hist, futr, _ = split_future(df, 7)
    model = ARMDN(ARMDNConfig(**{**TINY, "assoc_route": "lstm_head", "max_epochs": 1})).fit(
        hist, static
    )
    model.save(tmp_path / "old")
    meta_path = tmp_path / "old" / "config.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["assoc_route"]  # as written before the field existed
    meta_path.write_text(json.dumps(meta))
    loaded = ARMDN.load(tmp_path / "old")
    assert loaded.config.assoc_route == "lstm_head"
    pd.testing.assert_frame_equal(
        model.predict(hist, futr, num_samples=20), loaded.predict(hist, futr, num_samples=20)
    )


def test_scaling_and_floor_are_chosen_on_validation_and_the_probe_is_reused(
    sales, tmp_path, monkeypatch
):
    df, static = sales
    hist, futr, _ = split_future(df, 7)
    cfg = ARMDNConfig(
        **{**TINY, "scaling": "auto", "select_floor": True, "select_components": True}
    )
    fitted_configs = []
    fit_one = ARMDN._fit_candidate

    def counting(self, config, *args):
        fitted_configs.append(config)
        return fit_one(self, config, *args)

    monkeypatch.setattr(ARMDN, "_fit_candidate", counting)
    model = ARMDN(cfg).fit(hist, static)
    table = model.history["scaling_selection"]
    # the three scalings at the configured floor, then the winner's two other floors
    by_scaling = {
        k.split("/")[0]: v for k, v in table.items() if k.endswith(f"/{cfg.scale_floor:g}")
    }
    assert set(by_scaling) == set(SCALINGS) and len(table) == 5
    scaling = min(by_scaling, key=by_scaling.get)
    floors = {k: v for k, v in table.items() if k.startswith(f"{scaling}/")}
    assert sorted(float(k.split("/")[1]) for k in floors) == pytest.approx(
        [cfg.scale_floor * f for f in FLOOR_FACTORS]
    )
    chosen = min(floors, key=floors.get)
    for cand in model.candidates.values():  # every candidate uses the chosen scaling and floor
        assert f"{cand.config.scaling}/{cand.config.scale_floor:g}" == chosen
    # the K=1 candidate is the winning probe itself: five probes and the K=3 candidate, no refit
    assert model.candidates["K=1"].history["best_val_wql"] == table[chosen]
    assert len(fitted_configs) == 6 and len(set(fitted_configs)) == 6
    assert [c.num_components for c in fitted_configs] == [1] * 5 + [3]
    assert model.config.scaling == scaling  # resolved: the saved model never reads "auto"
    fc = model.predict(hist, futr)
    again = ARMDN.load(model.save(tmp_path / "m")).predict(hist, futr)
    np.testing.assert_allclose(again["q0.9"], fc["q0.9"], rtol=1e-6)
    # no validation horizons: nothing to choose on, "auto" is AUTO_SCALING
    plain = ARMDN(cfg.replace(select_components=False)).fit(hist, static, val_size=0)
    assert plain.config.scaling == AUTO_SCALING and "scaling_selection" not in plain.history
