"""Benchmark the ranking model: jagged vs padded vs pooling sequence backends.

For each max history N, one batch of B examples with heavy-tailed history lengths (log-normal,
sigma 1, scaled to a target mean fill, clamped to [1, N]) goes through the real data pipeline
(``RankExamples.collate``) and then, for every backend and torch.compile off/on:

- ``train_step``: forward + backward + gradient clipping + AdamW step, bf16 autocast;
- ``inference``: forward under ``torch.no_grad``, bf16 autocast;
- ``collate``: the CPU collation of the batch (the loader's cost per batch, no GPU).

Times are medians (p20/p80 beside) of CUDA-event timed repetitions after warm-up
(``triton.testing.do_bench``); peak memory is ``max_memory_allocated`` during one step above what
was allocated before it (model, optimizer state and inputs excluded). A backend that runs out of
memory gets a row with status "oom". Rows are appended to ``results/rank-<device>.csv`` in the
shared benchmark schema; a Markdown table is printed last.

Usage (GPU machine)::

    PYTHONPATH=src python3 benchmarks/bench_rank.py    # appends to results/rank-<device>.csv

Runs on CPU too (``--device cpu`` with small sizes: a smoke test, tests/test_benchmarks.py); the
numbers then mean little.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _results import append_rows, results_path, run_meta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from shopml.rank.config import RankConfig  # noqa: E402
from shopml.rank.data import RankExamples  # noqa: E402
from shopml.rank.model import RankingModel  # noqa: E402
from shopml.rank.vocab import RankVocab  # noqa: E402


def heavy_tailed_lengths(rng: np.random.Generator, b: int, n: int, fill: float) -> np.ndarray:
    """Log-normal (sigma 1) lengths clamped to [1, n], scaled so the mean is about ``fill * n``.

    A few users have histories many times the median (p99 / p50 is about 10 before clamping).
    """
    base = rng.lognormal(0.0, 1.0, b)

    def mean_for(scale: float) -> float:
        return float(np.clip(np.round(scale * base), 1, n).mean())

    lo, hi = 1e-3, 10.0 * n
    for _ in range(60):  # bisection on the scale
        mid = math.sqrt(lo * hi)
        if mean_for(mid) < fill * n:
            lo = mid
        else:
            hi = mid
    return np.clip(np.round(lo * base), 1, n).astype(np.int64)


def synthetic_examples(
    rng: np.random.Generator, lengths: np.ndarray, n: int, num_items: int
) -> RankExamples:
    """RankExamples over random events: example i's history is events [off_i, off_i + L_i)."""
    b = len(lengths)
    total = int(lengths.sum())
    offsets = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n_cat, n_brand = 64, 512
    vocab = RankVocab(
        product_ids=np.arange(1, num_items, dtype=np.int64),
        categories=tuple(f"c{i}" for i in range(n_cat)),
        brands=tuple(f"b{i}" for i in range(n_brand)),
        item_category=np.r_[0, rng.integers(1, n_cat + 1, num_items - 1)].astype(np.int64),
        item_brand=np.r_[0, rng.integers(1, n_brand + 1, num_items - 1)].astype(np.int64),
        item_price=np.r_[0, rng.normal(size=num_items - 1)].astype(np.float32),
    )
    imp_ts = np.full(b, 10**18, dtype=np.int64)
    # events: increasing times within each history, gaps of up to a few hours
    gaps = rng.integers(1, 4 * 3600, total).astype(np.int64) * 10**9
    rows = np.repeat(np.arange(b), lengths)
    after = np.r_[np.cumsum(gaps[::-1])[::-1], 0]  # after[t] = sum(gaps[t:])
    ev_ts = imp_ts[rows] - (after[:total] - after[offsets[1:]][rows])
    return RankExamples(
        vocab=vocab,
        max_history=n,
        num_time_buckets=24,
        ev_item=rng.integers(1, num_items, total).astype(np.int64),
        ev_action=rng.integers(1, 5, total).astype(np.int64),
        ev_ts=ev_ts,
        hist_start=offsets[:-1].copy(),
        hist_len=lengths,
        cand_item=rng.integers(1, num_items, b).astype(np.int64),
        imp_ts=imp_ts,
        labels=rng.integers(0, 2, b).astype(np.float32),
    )


def bench_ms(
    fn, device: torch.device, warmup: int = 3, reps: int = 10
) -> tuple[float, float, float]:
    """(p50, p20, p80) milliseconds."""
    if device.type == "cuda":
        from triton.testing import do_bench

        fn()
        torch.cuda.synchronize()
        q = do_bench(fn, warmup=25, rep=200, quantiles=[0.5, 0.2, 0.8])
        return float(q[0]), float(q[1]), float(q[2])
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return tuple(float(np.percentile(times, p)) for p in (50, 20, 80))  # type: ignore[return-value]


def peak_mib(fn, device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run_case(config: RankConfig, batch, device: torch.device, compile: bool) -> dict[str, object]:
    torch.manual_seed(0)
    model = RankingModel(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step_model = torch.compile(model) if compile else model
    use_amp = device.type == "cuda"

    def train_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = step_model(batch.history, batch.candidates)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    @torch.no_grad()
    def infer() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            step_model(batch.history, batch.candidates)

    out: dict[str, object] = {}
    t0 = time.perf_counter()
    from shopml.jagged.checks import checks_enabled

    checks_enabled(False)  # offsets were checked when collated, as in training
    try:
        train_step()  # warm-up (and compilation)
        infer()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out["first_s"] = time.perf_counter() - t0
        out["train_mem"] = peak_mib(train_step, device)
        out["train"] = bench_ms(train_step, device)
        out["infer_mem"] = peak_mib(infer, device)
        out["infer"] = bench_ms(infer, device)
        out["status"] = "ok"
    except torch.cuda.OutOfMemoryError:
        out["status"] = "oom"
    except Exception as exc:  # report and continue with the next case
        out["status"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-history", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--fill", type=float, default=0.2, help="target mean fill (mean length / N)")
    p.add_argument("--backends", nargs="+", default=["jagged", "padded", "pooling"])
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--compile-at", type=int, nargs="*", default=None,
                   help="max histories where compile 'on' runs (default: all)")  # fmt: skip
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--num-heads", type=int, default=2)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-bias-buckets", type=int, default=16)
    p.add_argument("--num-items", type=int, default=100_000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--out", default=None, help="CSV to append to (default results/rank-<device>.csv)"
    )
    p.add_argument("--git-sha", default=None)
    args = p.parse_args()

    device = torch.device(args.device)
    meta = run_meta(device, sha=args.git_sha)
    out = Path(args.out) if args.out else results_path("rank", device)
    rows: list[dict[str, object]] = []
    table = []

    def flush() -> None:
        """Append the pending rows to the CSV now (a run cut short keeps what it measured)."""
        append_rows(
            out,
            [
                {
                    "suite": "rank", "op": r["op"], "provider": r["provider"], "mode": "bf16",
                    "x_name": "max_history", "x_value": r["x_value"],
                    "ms_p50": f"{r['ms'][0]:.4f}", "ms_p20": f"{r['ms'][1]:.4f}",
                    "ms_p80": f"{r['ms'][2]:.4f}", "peak_mib": f"{r['peak']:.1f}",
                    "config_json": json.dumps(r["cfg"], sort_keys=True),
                }
                for r in rows
            ],
            meta,
        )  # fmt: skip
        rows.clear()

    rng = np.random.default_rng(0)
    for n in args.max_history:
        lengths = heavy_tailed_lengths(rng, args.batch_size, n, args.fill)
        ex = synthetic_examples(rng, lengths, n, args.num_items)
        dist = {
            "B": args.batch_size,
            "mean_fill": round(float(lengths.mean()) / n, 4),
            "p50": int(np.percentile(lengths, 50)),
            "p99": int(np.percentile(lengths, 99)),
            "max": int(lengths.max()),
        }
        idx = np.arange(args.batch_size)
        for layout in ("jagged", "padded"):
            c_ms = bench_ms(
                lambda layout=layout, ex=ex, idx=idx: ex.collate(idx, layout),
                torch.device("cpu"),
                1,
                5,
            )
            rows.append(
                dict(op="collate", provider=layout, x_value=n, ms=c_ms, peak=float("nan"),
                     cfg={**dist, "examples_per_s": args.batch_size / (c_ms[0] / 1e3)})
            )  # fmt: skip
        for backend in args.backends:
            layout = "padded" if backend == "padded" else "jagged"
            batch = ex.collate(idx, layout).to(device)
            config = RankConfig(
                num_items=args.num_items,
                num_categories=65,
                num_brands=513,
                max_history=n,
                embed_dim=args.embed_dim,
                num_heads=args.num_heads,
                num_layers=args.num_layers,
                num_bias_buckets=args.num_bias_buckets,
                mlp_dims=(256, 128),
                sequence_backend=backend,
            )
            for comp in args.compile:
                if comp == "on" and args.compile_at is not None and n not in args.compile_at:
                    continue
                provider = backend + ("+compile" if comp == "on" else "")
                if args.num_bias_buckets == 0 and backend != "pooling":
                    provider += "+nobias"
                res = run_case(config, batch, device, comp == "on")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                cfg = {
                    **dist,
                    "E": args.embed_dim,
                    "H": args.num_heads,
                    "L": args.num_layers,
                    "bias_buckets": args.num_bias_buckets,
                    "status": res["status"],
                    "first_step_s": round(float(res.get("first_s", float("nan"))), 2),
                }
                nan3 = (float("nan"),) * 3
                for op, key in (("train_step", "train"), ("inference", "infer")):
                    ms = res.get(key, nan3)
                    eps = args.batch_size / (ms[0] / 1e3) if res["status"] == "ok" else float("nan")
                    rows.append(
                        dict(op=op, provider=provider, x_value=n, ms=ms,
                             peak=res.get(f"{key}_mem", float("nan")),
                             cfg={**cfg, "examples_per_s": eps})
                    )  # fmt: skip
                table.append((n, dist["mean_fill"], provider, res, cfg))
                flush()
                print(f"N={n} {provider}: {res['status']} {res.get('train')} {res.get('infer')}",
                      flush=True)  # fmt: skip

    # Markdown table: ratios against padded at the same N and compile setting
    print(f"\nrank benchmark on {meta['device']}, B={args.batch_size}, E={args.embed_dim}, "
          f"H={args.num_heads}, L={args.num_layers}, bf16; CSV: {out}\n")  # fmt: skip
    print("| N | mean fill | backend | train ex/s | train peak MiB | infer ex/s | infer peak MiB "
          "| train speed vs padded | train mem vs padded |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    ref = {}
    for n, _, provider, res, _ in table:
        if provider.startswith("padded") and res["status"] == "ok":
            ref[(n, "+compile" in provider)] = res
    for n, fill, provider, res, _ in table:
        if res["status"] != "ok":
            print(f"| {n} | {fill:.3f} | {provider} | {res['status']} | | | | | |")
            continue
        tr = args.batch_size / (res["train"][0] / 1e3)
        inf = args.batch_size / (res["infer"][0] / 1e3)
        base = ref.get((n, "+compile" in provider))
        sp = f"{base['train'][0] / res['train'][0]:.2f}x" if base else "n/a (padded failed)"
        mem = f"{res['train_mem'] / base['train_mem']:.2f}x" if base else "n/a"
        print(f"| {n} | {fill:.3f} | {provider} | {tr:,.0f} | {res['train_mem']:,.0f} | {inf:,.0f} "
              f"| {res['infer_mem']:,.0f} | {sp} | {mem} |")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
