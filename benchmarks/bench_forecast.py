"""AR-MDN benchmark: accuracy (rolling-origin backtest) and speed (training, sampling).

Modes:
  accuracy     AR-MDN, its ablations and the baselines on the same windows, on a synthetic world
               (sales-only generation with the world's own random streams, so the series equal
               ``generate_world(scale, seed)``'s sales.parquet; the "oracle" row scores the
               world's true law, the floor of every model), Dominick's orange juice (weekly,
               H = 8) or fpp3's monthly aus-retail / pbs panels (H = 12), each read from
               ``--data DIR`` written by ``shopml forecast fetch --dataset NAME --out DIR``.
               Appends to results/forecast_accuracy-<device>.csv.
  speed        training windows/s and wall time on the medium world; time to sample
               30k series x 28 days x 200 paths on the GPU and on the CPU. Appends rows in the
               project's timing schema to results/forecast_speed-<device>.csv. Imports no
               statsforecast / lightgbm / safetensors (the GPU machine lacks them).

Examples:
  PYTHONPATH=src nice -n 10 python benchmarks/bench_forecast.py accuracy --scale small
  PYTHONPATH=src python benchmarks/bench_forecast.py accuracy --dataset oj --data /tmp/oj
  PYTHONPATH=src python benchmarks/bench_forecast.py accuracy --dataset pbs --data /tmp/pbs \
      --windows 3 --baselines snaive,ets,lightgbm
  PYTHONPATH=src python3 benchmarks/bench_forecast.py speed --out-dir $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _results import append_rows, device_slug, git_sha

HERE = Path(__file__).resolve().parent
ACC_COLUMNS = [
    "suite", "dataset", "model", "wql", "crps", "crps_grid", "wmape", "mase", "coverage_50",
    "coverage_80", "coverage_90", "fallbacks", "seconds", "series", "windows", "horizon",
    "config_json", "device", "torch", "git_sha", "timestamp",
]  # fmt: skip


def md(frame: pd.DataFrame, digits: int = 4) -> str:
    """A Markdown table (no tabulate dependency)."""

    def fmt(v):
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])


# ------------------------------------------------------------------------------------------------
def world_sales(scale: str, seed: int = 0, truth: bool = False):
    """Sales (+ calendar columns) and static attributes of a world, without images or events;
    with ``truth``, also the hidden law of every sale: ``unique_id, ds, mean_base, p_regime,
    dispersion`` (``world/sales.py``: negative binomial of mean ``mean_base``, times
    ``DEAL_LIFT`` with probability ``p_regime``)."""
    from shopml.forecast.data import join_calendar
    from shopml.world import catalog as catalog_mod
    from shopml.world import sales as sales_mod
    from shopml.world.generate import END, SCALE_CONFIGS, START, _rng

    cfg = SCALE_CONFIGS[scale]
    cat = catalog_mod.make_catalog(_rng(seed, 1), cfg.n_products, START, END)
    chunks = list(
        sales_mod.sales_chunks(
            lambda c: _rng(seed, 3, c), cat.products, cat.truth, START, END, cfg.product_chunk
        )
    )
    df = pd.concat([s for s, _ in chunks], ignore_index=True)
    df = join_calendar(df, sales_mod.make_calendar(START, END))
    static = cat.products[["product_id", "category", "brand", "price"]].rename(
        columns={"product_id": "unique_id"}
    )
    static = static[static["unique_id"].isin(df["unique_id"].unique())].reset_index(drop=True)
    if not truth:
        return df, static
    law = pd.concat([t for _, t in chunks], ignore_index=True)
    k = pd.Series(cat.truth["dispersion"].to_numpy(), index=cat.products["product_id"].to_numpy())
    law = law[["unique_id", "ds", "mean_base", "p_regime"]]
    return df, static, law.assign(dispersion=k.loc[law["unique_id"]].to_numpy())


def world_oracle(
    law: pd.DataFrame, uids: np.ndarray, cutoffs: list[str], horizon: int, draws: int = 4000
) -> np.ndarray:
    """``(n, W, H, 19)`` quantiles (``QUANTILE_GRID``) of the true law of the scored days: the
    best forecast any model could make (it knows the hidden mean, deal probability and
    dispersion), from ``draws`` simulated sales per day (seeded)."""
    from shopml.forecast.baselines import QUANTILE_GRID
    from shopml.world.sales import DEAL_LIFT

    rng = np.random.default_rng(0)
    days = [pd.Timestamp(c) + pd.to_timedelta(np.arange(1, horizon + 1), "D") for c in cutoffs]
    keys = pd.MultiIndex.from_arrays(
        [np.repeat(uids, len(cutoffs) * horizon), np.tile(np.concatenate(days), len(uids))]
    )
    rows = law.set_index(["unique_id", "ds"]).loc[keys]
    mean, p, k = (rows[c].to_numpy()[:, None] for c in ("mean_base", "p_regime", "dispersion"))
    out = np.empty((len(rows), len(QUANTILE_GRID)))
    for lo in range(0, len(rows), 2000):
        sl = slice(lo, lo + 2000)
        m = mean[sl] * np.where(rng.random((len(mean[sl]), draws)) < p[sl], DEAL_LIFT, 1.0)
        y = rng.poisson(rng.gamma(k[sl], m / k[sl]))
        out[sl] = np.quantile(y, QUANTILE_GRID, axis=1).T
    return out.reshape(len(uids), len(cutoffs), horizon, -1)


# real panels: (name in the results, frequency, horizon) of each ``--dataset``
REAL = {
    "oj": ("dominicks-oj", "W", 8),
    "aus-retail": ("aus-retail", "MS", 12),
    "pbs": ("pbs", "MS", 12),
}


def real_sales(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A directory written by ``shopml forecast fetch``: ``(sales, static)``."""
    return pd.read_parquet(data_dir / "sales.parquet"), pd.read_parquet(data_dir / "static.parquet")


def dataset_setup(args) -> list[tuple[str, pd.DataFrame, pd.DataFrame, dict]]:
    out = []
    if args.dataset in ("world", "both"):
        df, static, law = world_sales(args.scale, args.seed, truth=True)
        if args.products:  # a random slice of the world's products (seeded), for the CPU
            ids = df["unique_id"].unique()
            keep = np.random.default_rng(args.seed).choice(
                ids, min(args.products, len(ids)), replace=False
            )
            df = df[df["unique_id"].isin(keep)].reset_index(drop=True)
            static = static[static["unique_id"].isin(keep)].reset_index(drop=True)
        cfg = dict(freq="D", horizon=28, context_length=args.context or 56)
        out.append((f"world-{args.scale}", df, static, cfg, law))
    real = "oj" if args.dataset == "both" else args.dataset
    if real in REAL:
        if args.data is None:
            raise SystemExit(
                f"--data DIR is needed (run `shopml forecast fetch --dataset {real} --out DIR`)"
            )
        name, freq, horizon = REAL[real]
        df, static = real_sales(Path(args.data))
        cfg = dict(freq=freq, horizon=horizon, context_length=args.context or 2 * horizon)
        out.append((name, df, static, cfg, None))
    return out


def run_backtests(args, variants: dict[str, dict], with_baselines: bool, suite: str) -> None:
    from shopml.forecast.backtest import backtest, score_grid
    from shopml.forecast.config import ARMDNConfig

    dev = device_slug()
    path = Path(args.out_dir) / f"forecast_accuracy-{dev}.csv"
    for name, df, static, dcfg, law in dataset_setup(args):
        print(f"== {name}: {df['unique_id'].nunique()} series, {len(df)} rows", flush=True)
        train = dict(
            max_epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size,
            seed=args.seed, device=args.device, hidden_size=args.hidden, num_layers=args.layers,
        )  # fmt: skip
        for label, change in variants.items():
            cfg = ARMDNConfig(**dcfg, **train, **change)
            t0 = time.perf_counter()
            res = backtest(
                df, static, cfg, args.windows,
                baselines=list(args.baselines) if with_baselines else [],
                out_dir=Path(args.out_dir) / f"fan-{name}" if with_baselines else None,
                ablations=with_baselines and not args.no_ablations,
                num_samples=args.num_samples, max_series=args.max_series, fan_charts=3,
                lightgbm_options={"max_rows": args.lgbm_rows},
                verbose=True,
            )  # fmt: skip
            table = res["metrics"]
            if law is not None:  # the world's true law: the floor of every model's scores
                t1 = time.perf_counter()
                grid = world_oracle(law, res["uids"], res["cutoffs"], cfg.horizon)
                row = score_grid(res["y_true"], res["observed"], grid, res["mase_scale"], None)
                row.update(model="oracle", seconds=time.perf_counter() - t1, fallbacks=0)
                table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            if label != "default":
                table = table.assign(model=[f"armdn[{label}]"])
            rows = []
            for r in table.to_dict("records"):
                rows.append(
                    {
                        **r,
                        "suite": suite,
                        "dataset": name,
                        "series": res["series"],
                        "windows": args.windows,
                        "horizon": cfg.horizon,
                        "config_json": json.dumps(
                            {
                                **dcfg,
                                **train,
                                **change,
                                "cutoffs": res["cutoffs"],
                                "train": res["train"].get(r["model"], {}),
                            }
                        ),
                        "device": dev,
                        "torch": torch.__version__,
                        "git_sha": git_sha(),
                        "timestamp": pd.Timestamp.now(tz="UTC").isoformat(),
                    }  # fmt: skip
                )
            append_rows(path, rows, fields=ACC_COLUMNS)
            print(md(table), flush=True)
            print(f"({time.perf_counter() - t0:.0f} s)", flush=True)


# ------------------------------------------------------------------------------------------------
def speed(args) -> None:
    """Training throughput on the medium world and sampling time 30k x 28 x 200."""
    from shopml.common.distributed import setup_distributed
    from shopml.forecast.config import ARMDNConfig
    from shopml.forecast.data import build_panel, gather_windows, validate_frame, validate_static
    from shopml.forecast.estimator import ARMDN
    from shopml.forecast.features import fit_feature_spec
    from shopml.forecast.predict import observed_max, sample_paths, series_keys, to_host
    from shopml.forecast.train import fit_network

    dev = device_slug()
    rows = []
    meta = dict(device=dev, torch=torch.__version__, git_sha=git_sha(),
                timestamp=pd.Timestamp.now(tz="UTC").isoformat(), suite="forecast")  # fmt: skip
    try:
        import triton

        meta["triton"] = triton.__version__
    except Exception:
        meta["triton"] = ""
    t0 = time.perf_counter()
    df, static = world_sales(args.scale, args.seed)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg = ARMDNConfig(freq="D", horizon=28, context_length=56, max_epochs=args.epochs,
                      steps_per_epoch=args.steps, batch_size=args.batch_size,
                      device=args.device, amp=args.amp, patience=args.epochs,
                      output="mixture" if args.output == "auto" else args.output)  # fmt: skip
    model = ARMDN(cfg)  # speed: one head (auto would fit both: time --output negbin separately)
    df = validate_frame(df, "df", "D")
    static = validate_static(static)
    model.spec = fit_feature_spec(df, "D", static)
    model.train_uids = sorted(df["unique_id"].unique().tolist())
    model.static_df = static
    panel = build_panel(df, model.spec, static, model.train_uids)
    t_prep = time.perf_counter() - t0
    n_series = panel.num_series
    print(f"{args.scale} world: {n_series} series, {len(df)} rows; generate {t_gen:.1f} s, "
          f"prepare {t_prep:.1f} s", flush=True)  # fmt: skip
    model.net = model._build_net()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    hist, _ = fit_network(model.net, panel, cfg, 28, setup_distributed(cfg.device))
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
    conf = {"scale": args.scale, "series": n_series, "rows": len(df), "batch": cfg.batch_size,
            "window": cfg.window_length, "hidden": cfg.hidden_size, "layers": cfg.num_layers,
            "K": cfg.num_components, "amp": cfg.amp, "epochs_run": hist["epochs"],
            "steps_per_epoch": cfg.steps_per_epoch, "prepare_s": t_prep, "generate_s": t_gen,
            "wall_s": hist["wall_seconds"], "best_val_wql": hist["best_val_wql"]}  # fmt: skip
    ms_per_step = 1e3 * hist["train_seconds"] / max(1, hist["epochs"] * cfg.steps_per_epoch)
    rows.append(
        {
            **meta,
            "op": "train_step",
            "provider": "armdn",
            "mode": "fwd+bwd",
            "x_name": "windows_per_s",
            "x_value": hist["windows_per_second"],
            "ms_p50": ms_per_step,
            "peak_mib": peak,
            "config_json": json.dumps(conf),
        }
    )
    rows.append({**meta, "op": "train_total", "provider": "armdn", "mode": "fit",
                 "x_name": "windows", "x_value": hist["windows"],
                 "ms_p50": 1e3 * (hist["wall_seconds"] + t_prep), "peak_mib": peak,
                 "config_json": json.dumps(conf)})  # fmt: skip
    print(f"train: {hist['windows_per_second']:.0f} windows/s, {hist['epochs']} epochs, "
          f"fit wall {hist['wall_seconds']:.1f} s (+ prepare {t_prep:.1f} s), "
          f"val wQL {hist['best_val_wql']:.4f}", flush=True)  # fmt: skip

    # sampling: every series, 28 steps, 200 paths
    devices = (["cuda"] if torch.cuda.is_available() else []) + (
        ["cpu"] if args.cpu_sampling else []
    )
    net = model.net
    idx = np.arange(n_series)
    ctx = gather_windows(panel, idx, panel.lengths, cfg.context_length)
    fut = gather_windows(panel, idx, panel.lengths, cfg.horizon)  # covariate shapes of a horizon
    keys = series_keys(panel.uids)
    y_cap = cfg.sample_cap * observed_max(panel, idx, panel.lengths) + 1.0
    spread = torch.ones(cfg.horizon, 5)  # (H, levels)
    for d in devices:
        net.to(d)
        for n_series_run in [n_series] if d == "cuda" else [args.cpu_series]:
            chunk = args.chunk if d == "cuda" else max(1, (1 << 18) // args.num_samples)
            times = []
            for rep in range(args.reps if d == "cuda" else 1):
                if d == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for lo in range(0, n_series_run, chunk):
                    sl = slice(lo, min(lo + chunk, n_series_run))
                    h = {k: torch.from_numpy(v[sl]).to(d) for k, v in ctx.items()}
                    out = sample_paths(
                        net,
                        cfg,
                        h,
                        torch.from_numpy(fut["real"][sl]).to(d),
                        torch.from_numpy(fut["cat"][sl]).to(d),
                        args.num_samples,
                        torch.from_numpy(keys[sl]).to(d),
                        torch.from_numpy(y_cap[sl]).to(d),
                        spread,  # the calibration's rescaling, as predict applies it
                    )
                    out = to_host(out)  # as sample_panel does
                if d == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                del rep
            if args.profile and d == "cuda":
                profile_sampling(args, net, cfg, ctx, fut, keys, y_cap, spread, dev)
            t = times[1:] if len(times) > 1 else times  # first rep warms up
            ms = 1e3 * np.array(t)
            print(f"sample {n_series_run} x {cfg.horizon} x {args.num_samples} on {d}: "
                  f"{np.median(ms) / 1e3:.2f} s (reps {[round(x / 1e3, 2) for x in ms]})",
                  flush=True)  # fmt: skip
            rows.append({**meta, "op": "sample", "provider": f"armdn-{d}", "mode": "infer",
                         "x_name": "series", "x_value": n_series_run,
                         "ms_p50": float(np.median(ms)), "ms_p20": float(np.percentile(ms, 20)),
                         "ms_p80": float(np.percentile(ms, 80)),
                         "config_json": json.dumps({"paths": args.num_samples,
                                                    "horizon": cfg.horizon, "chunk": chunk,
                                                    "threads": torch.get_num_threads(),
                                                    "output": cfg.output,
                                                    "amp": cfg.amp})})  # fmt: skip
            del out
    append_rows(Path(args.out_dir) / f"forecast_speed-{dev}.csv", rows)
    print(md(pd.DataFrame(rows)[["op", "provider", "x_name", "x_value", "ms_p50"]], 1))


def profile_sampling(args, net, cfg, ctx, fut, keys, y_cap, spread, dev: str) -> None:
    """One CUDA sampling pass over the first chunk under torch.profiler; kernel table to a file."""
    from torch.profiler import ProfilerActivity, profile

    from shopml.forecast.predict import sample_paths, to_host

    sl = slice(0, args.chunk)
    h = {k: torch.from_numpy(v[sl]).to("cuda") for k, v in ctx.items()}
    inputs = (torch.from_numpy(fut["real"][sl]).to("cuda"), torch.from_numpy(fut["cat"][sl]).to("cuda"),
              args.num_samples, torch.from_numpy(keys[sl]).to("cuda"),
              torch.from_numpy(y_cap[sl]).to("cuda"), spread)  # fmt: skip
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        to_host(sample_paths(net, cfg, h, *inputs))
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40)
    path = Path(args.out_dir) / f"forecast_sample_profile-{dev}.txt"
    path.write_text(f"sample_paths, one chunk of {args.chunk} series x {cfg.horizon} x "
                    f"{args.num_samples} paths, git {git_sha()}\n{table}\n")  # fmt: skip
    print(table, flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["accuracy", "speed"])
    p.add_argument("--dataset", choices=["world", *REAL, "both"], default="world")
    p.add_argument("--scale", default="small")
    p.add_argument("--products", type=int, default=0, help="world: a random slice (0: all)")
    p.add_argument(
        "--output", default="auto", help="AR-MDN head: auto (the CLI default), mixture, negbin"
    )
    p.add_argument(
        "--data",
        "--oj",
        default=None,
        help="oj, aus-retail, pbs: the directory from `shopml forecast fetch --dataset NAME`",
    )
    p.add_argument("--windows", type=int, default=2)
    p.add_argument("--baselines", type=lambda s: [] if s == "none" else s.split(","),
                   default=["snaive", "ets", "croston", "tsb", "lightgbm"])  # fmt: skip
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--context", type=int, default=0, help="0: 2H (the CLI's default)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--max-series", type=int, default=None)
    p.add_argument("--lgbm-rows", type=int, default=300_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--cpu-sampling", action="store_true")
    p.add_argument(
        "--profile",
        action="store_true",
        help="speed: also write a torch.profiler table of one CUDA sampling pass",
    )
    p.add_argument("--cpu-series", type=int, default=30_000)
    p.add_argument("--out-dir", default=str(HERE / "results"))
    args = p.parse_args(argv)
    git_sha()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "accuracy":
        run_backtests(
            args,
            {"default": {"output": args.output}},
            with_baselines=True,
            suite="forecast_accuracy",
        )
    else:
        speed(args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
