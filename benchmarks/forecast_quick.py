"""Fast inner loop for AR-MDN design experiments: one AR-MDN variant, no baselines.

Runs the same rolling-origin backtest as ``shopml forecast backtest`` (same windows, same
scoring) for AR-MDN alone, with config fields overridden by ``--set field=value``, and prints
test wQL / wMAPE / coverage next to the validation wQL the model was selected on. Rows are
appended to results/forecast_quick-<device>.csv. Final numbers
come from the CLI, not from here.

Examples:
  OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 10 python benchmarks/forecast_quick.py \
      --data /tmp/oj --set weight_decay=1e-4 --set dropout=0.3
  PYTHONPATH=src python benchmarks/forecast_quick.py --dataset pbs --data /tmp/pbs
  PYTHONPATH=src python benchmarks/forecast_quick.py --world small --max-series 300
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _results import append_rows, device_slug, git_sha
from bench_forecast import ACC_COLUMNS, REAL, real_sales, world_sales

HERE = Path(__file__).resolve().parent


def parse_set(items: list[str]) -> dict:
    """``["lr=1e-3", "use_assoc_mlp=false"]`` -> typed overrides of ARMDNConfig fields."""
    from shopml.forecast.config import ARMDNConfig

    types = {f.name: f.type for f in dataclasses.fields(ARMDNConfig)}
    out = {}
    for item in items:
        key, _, raw = item.partition("=")
        if key not in types:
            raise SystemExit(f"--set: unknown field {key!r}; expected one of {sorted(types)}")
        kind = types[key]
        if kind in ("bool", bool):
            out[key] = raw.lower() in ("1", "true", "yes")
        elif kind in ("int", int):
            out[key] = int(raw)
        elif kind == "int | None":
            out[key] = None if raw.lower() == "none" else int(raw)
        elif kind in ("float", float):
            out[key] = float(raw)
        else:
            out[key] = raw
    return out


def main(argv: list[str] | None = None) -> None:
    from shopml.forecast.backtest import backtest
    from shopml.forecast.config import ARMDNConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=list(REAL), default="oj")
    p.add_argument(
        "--data",
        "--oj",
        default=None,
        help="directory from `shopml forecast fetch --dataset NAME` (NAME = --dataset)",
    )
    p.add_argument("--world", default=None, help="world scale (small) instead of OJ")
    p.add_argument("--windows", type=int, default=3)
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--max-series", type=int, default=None)
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--drop", nargs="*", default=[], help="covariate columns to leave out")
    p.add_argument("--label", default="")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    args = p.parse_args(argv)
    if args.world:
        df, static = world_sales(args.world, 0)
        base, name = dict(freq="D", horizon=28, context_length=56), f"world-{args.world}"
    else:
        if args.data is None:
            raise SystemExit("--data DIR or --world SCALE is needed")
        df, static = real_sales(Path(args.data))
        name, freq, horizon = REAL[args.dataset]
        base = dict(freq=freq, horizon=horizon, context_length=2 * horizon)
    df = df.drop(columns=args.drop)
    change = parse_set(args.sets)
    cfg = ARMDNConfig(**{**base, **change})
    t0 = time.perf_counter()
    res = backtest(
        df, static, cfg, args.windows, baselines=[], num_samples=args.num_samples,
        max_series=args.max_series, verbose=False,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    row = res["metrics"].iloc[0].to_dict()
    info = res["train"]["armdn"]
    label = args.label or ",".join(args.sets) or "default"
    print(
        f"[{label}] test wQL {row['wql']:.4f} wMAPE {row['wmape']:.4f} "
        f"cov80 {row['coverage_80']:.3f} | val {info.get('selection')} best epoch "
        f"{info.get('best_epoch')} of {info.get('epochs')} | {seconds:.0f} s",
        flush=True,
    )
    y, grid = res["y_true"], res["grids"]["armdn"]  # (n, W, H), (n, W, H, 19)
    inside = (y >= grid[..., 1]) & (y <= grid[..., 17])  # the 10%-90% band
    obs = res["observed"]
    bias = [grid[:, w, :, 9][obs[:, w]].sum() / y[:, w][obs[:, w]].sum() for w in range(y.shape[1])]
    print("  cov80 per window", np.round(inside.mean(axis=(0, 2)), 3), flush=True)
    print("  median / actual per window", np.round(bias, 3), flush=True)
    append_rows(
        Path(args.out_dir) / f"forecast_quick-{device_slug()}.csv",
        [
            {
                **row,
                "suite": "forecast_quick",
                "dataset": name,
                "model": f"armdn[{label}]",
                "seconds": seconds,
                "series": res["series"],
                "windows": args.windows,
                "horizon": cfg.horizon,
                "config_json": json.dumps(
                    {**change, "num_samples": args.num_samples, "train": info}, default=str
                ),
                "device": device_slug(),
                "torch": torch.__version__,
                "git_sha": git_sha(),
                "timestamp": pd.Timestamp.now(tz="UTC").isoformat(),
            }
        ],
        fields=ACC_COLUMNS,
    )


if __name__ == "__main__":
    main()
