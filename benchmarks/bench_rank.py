"""Benchmark the ranking model's training step and inference: jagged vs padded, eager vs fast.

For each case (B examples, max history N), one batch with heavy-tailed history lengths
(log-normal, sigma 1, scaled to a target mean fill, clamped to [1, N]) goes through the real data
pipeline (``RankExamples.collate``), then through every provider (``--providers``), each stating
its mode in the CSV (``config_json.mode``):

- ``jagged`` / ``padded`` / ``pooling``: eager PyTorch (fused AdamW);
- ``jagged+graphs`` / ``pooling+graphs``: the fast step of ``shopml.rank.graphs`` as ``shopml rank
  train`` runs it by default on a GPU (packed pinned batch; CUDA graph replay of the forward and
  backward of the model compiled by ``torch.compile`` with dynamic token counts, clipping and
  fused capturable AdamW); inference the same graphs, compiled;
- ``jagged+graphs+nocompile``: the graphs around the uncompiled model (``--no-compile``);
- ``jagged+graphs+static`` / ``+gather`` / ``+lowmem`` / ``+mem<X>``: variants of the default, for
  comparison: compiled for the bucket's exact shapes; every embedding table by a gather (no
  one-hot matmul); AOTAutograd's activation memory budget at 0.5 (``+lowmem``) or at X (e.g.
  ``+mem0.7``; ``--activation-memory-budget`` of ``shopml rank train``: more recomputation, less
  memory);
- ``jagged+graphs+bias``: the default with the relative-time bias of 16 buckets whatever
  ``--num-bias-buckets`` says (the model's default, beside peers without it in one run);
- ``jagged+compile`` / ``padded+compile``: ``torch.compile(model)`` (default mode), eager
  optimizer step; the compiled padded model is the peer to beat.

Ops: ``train_step`` (bf16 autocast, clipping, AdamW), ``inference`` (forward, no grad, bf16) and
``collate`` (the CPU collation of the batch). Times are medians (p20/p80 beside) of CUDA-event
timed repetitions after a warm-up of three steps (``triton.testing.do_bench``); the graph
providers' time includes copying the packed batch to the GPU. Peak memory is
``max_memory_allocated`` from before the first step (model and inputs excluded, and the current
stream's cuBLAS workspace, made once a process before any case: ``warm_cublas``; optimizer state,
gradients, activations and graph pools included); ``state MiB`` is what stays allocated after
the warm-up (gradients, optimizer state, static graph inputs and outputs). ``first s`` is the
wall time of the three warm-up steps (compilation, autotuning, captures). ``--profile PROVIDER``
appends torch.profiler tables of 5 train steps and 5 inference batches to ``--profile-out``. A provider that fails gets a row with its
status. Rows are appended to ``results/rank-<device>.csv`` in the shared benchmark schema as
each case ends; a Markdown table is printed last.

Usage (GPU machine; ``benchmarks/run_rank_gpu.sh`` runs the issue's cases)::

    PYTHONPATH=src python3 benchmarks/bench_rank.py --cases 256x1024 256x256 1024x1024 \
        --num-bias-buckets 0 --providers jagged+graphs padded+compile jagged+graphs+nocompile

Runs on CPU too (``--device cpu`` with small sizes: a smoke test, tests/test_benchmarks.py); the
numbers then mean little, and the graph providers run their step eagerly.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from shopml.rank.buckets import pack  # noqa: E402
from shopml.rank.config import RankConfig  # noqa: E402
from shopml.rank.data import RankExamples  # noqa: E402
from shopml.rank.graphs import GraphInference, GraphTrainStep, make_optimizer  # noqa: E402
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
    fn, device: torch.device, warmup: int = 1, reps: int = 3
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


PROVIDERS = {
    # name: (sequence backend, how the step runs)
    "jagged": ("jagged", "eager"),
    "jagged+graphs": ("jagged", "cuda-graphs over torch.compile"),
    "jagged+graphs+nocompile": ("jagged", "cuda-graphs"),
    "jagged+graphs+static": ("jagged", "cuda-graphs over torch.compile, static shapes"),
    "jagged+graphs+gather": ("jagged", "cuda-graphs over torch.compile, gathers only"),
    "jagged+graphs+lowmem": ("jagged", "cuda-graphs over torch.compile, memory budget 0.5"),
    **{
        f"jagged+graphs+mem{x}": ("jagged", f"cuda-graphs over torch.compile, memory budget {x}")
        for x in ("0.6", "0.7", "0.8", "0.9")
    },
    "jagged+graphs+bias": ("jagged", "cuda-graphs over torch.compile"),
    "jagged+compile": ("jagged", "torch.compile"),
    "padded": ("padded", "eager"),
    "padded+compile": ("padded", "torch.compile"),
    "pooling": ("pooling", "eager"),
    "pooling+graphs": ("pooling", "cuda-graphs over torch.compile"),
}


_WARMED: set[torch.device] = set()


def warm_cublas(device: torch.device) -> None:
    """Run one matmul of each kind on the current stream once per process, before any case's
    memory base: cuBLAS takes a workspace from PyTorch's allocator for each stream at its first
    matmul there (32 MiB on Hopper), which every provider's user pays alike; without this the
    process's first case carried it in its peak and state, the others in their base."""
    if device.type != "cuda" or device in _WARMED:
        return
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.ones(64, 64, device=device, dtype=dtype)
        torch.nn.functional.linear(a, a, a[0])
        a @ a
    torch.cuda.synchronize(device)
    _WARMED.add(device)


def run_case(
    provider: str,
    config: RankConfig,
    batch,
    device: torch.device,
    profile_path: Path | None = None,
    title: str = "",
) -> dict[str, object]:
    """Train-step and inference timings of one provider on one batch (see the module docstring).

    ``batch`` is the CPU batch in the provider's layout. Peak memory counts everything a step
    adds to the model and its inputs: optimizer state, gradients, activations and, for the graph
    step, the graphs' memory pool (measured from before the first step).
    """
    backend, how = PROVIDERS[provider]
    torch.manual_seed(0)
    model = RankingModel(config).to(device)
    opt = make_optimizer(model, 1e-3, 1e-4, device)
    use_amp = device.type == "cuda"
    out: dict[str, object] = {"mode": how}
    if how.startswith("cuda-graphs"):
        packed = pack(batch, config.max_history, pin_memory=device.type == "cuda")
        n_real = packed.examples
        comp = "torch.compile" in how and device.type == "cuda"  # off CUDA: the eager step
        dyn = not how.endswith("static shapes")
        if how.endswith("gathers only"):
            model.onehot_max_rows = 0
        budget = float(how.rsplit(" ", 1)[1]) if "memory budget" in how else None
        trainer = GraphTrainStep(
            model, opt, grad_clip=1.0, autocast=use_amp, compile=comp, dynamic=dyn,
            memory_budget=budget,
        )  # fmt: skip
        infer_runner = GraphInference(model, autocast=use_amp, compile=comp, dynamic=dyn)

        def train_step() -> None:
            trainer(packed, 1.0 / n_real)

        def infer() -> None:
            infer_runner(packed)

        out["bucket"] = dataclasses.asdict(packed.key)
    else:
        dev_batch = batch.to(device)
        step_model = torch.compile(model) if how == "torch.compile" else model

        def train_step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = step_model(dev_batch.history, dev_batch.candidates)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits.float(), dev_batch.labels
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        @torch.no_grad()
        def infer() -> None:
            model.eval()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                step_model(dev_batch.history, dev_batch.candidates)
            model.train()

    from shopml.jagged.checks import checks_enabled

    checks_enabled(False)  # offsets were checked when collated, as in training
    try:
        cuda = device.type == "cuda"
        if cuda:
            warm_cublas(device)
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(
            3 if cuda else 1
        ):  # warm-up: compilation, autotuning, eager first step, capture
            train_step()
        if cuda:
            torch.cuda.synchronize()
        out["first_s"] = time.perf_counter() - t0
        if cuda:
            out["state_mem"] = (torch.cuda.memory_allocated() - base) / 2**20
        out["train"] = bench_ms(train_step, device)
        if cuda:
            torch.cuda.synchronize()
            out["train_mem"] = (torch.cuda.max_memory_allocated() - base) / 2**20
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(3 if cuda else 1):
            infer()
        if cuda:
            torch.cuda.synchronize()
        out["infer_first_s"] = time.perf_counter() - t0
        out["infer"] = bench_ms(infer, device)
        if cuda:
            torch.cuda.synchronize()
            out["infer_mem"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            out["train_mem"] = out["infer_mem"] = float("nan")
        if how.startswith("cuda-graphs") and cuda:
            for runner in (trainer, infer_runner):
                if runner.fallback_reason is not None:
                    raise RuntimeError(f"graph step fell back to eager: {runner.fallback_reason}")
                if runner.compile_fallback_reason is not None:
                    raise RuntimeError(f"compile fell back: {runner.compile_fallback_reason}")
        if profile_path is not None and cuda:
            out["profile"] = profile_step(train_step, profile_path, title + " train")
            out["profile"] += "; infer " + profile_step(infer, profile_path, title + " infer")
        out["status"] = "ok"
    except torch.cuda.OutOfMemoryError:
        out["status"] = "oom"
    except Exception as exc:  # report and continue with the next case
        out["status"] = f"error: {type(exc).__name__}: {str(exc)[:300]}"
    finally:
        checks_enabled(True)
    return out


def profile_step(fn, path: Path, title: str) -> str:
    """torch.profiler table of 5 steps (device time by op), appended to ``path``; one line back."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / 5 * 1e3
    events = prof.key_averages()
    table = events.table(sort_by="self_device_time_total", row_limit=45, max_name_column_width=70)
    gpu_ms = sum(getattr(e, "self_device_time_total", 0.0) for e in events) / 5 / 1e3
    line = f"wall {wall:.3f} ms/step, device {gpu_ms:.3f} ms/step"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(f"== {title}: {line}\n{table}\n\n")
    return line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-history", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--batch-size", type=int, nargs="+", default=[256])
    p.add_argument("--cases", nargs="*", default=None,
                   help="BxN pairs (e.g. 256x1024 1024x1024) instead of every B and N")  # fmt: skip
    p.add_argument("--fill", type=float, default=0.2, help="target mean fill (mean length / N)")
    p.add_argument("--providers", "--backends", nargs="+", default=["jagged", "jagged+graphs",
                   "padded", "padded+compile"], choices=sorted(PROVIDERS))  # fmt: skip
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--num-heads", type=int, default=2)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-bias-buckets", type=int, default=16)
    p.add_argument("--num-items", type=int, default=100_000)
    p.add_argument("--profile", nargs="*", default=[],
                   help="providers to profile (torch.profiler, 5 steps; CUDA only)")  # fmt: skip
    p.add_argument("--profile-out", default="benchmarks/results/rank-profile.txt",
                   help="text file the profile tables are appended to")  # fmt: skip
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--out", default=None, help="CSV to append to (default results/rank-<device>.csv)"
    )
    p.add_argument("--git-sha", default=None)
    args = p.parse_args()

    device = torch.device(args.device)
    meta = run_meta(device, sha=args.git_sha)
    out = Path(args.out) if args.out else results_path("rank", device)
    if args.cases:
        cases = [tuple(int(x) for x in c.lower().split("x")) for c in args.cases]
    else:
        cases = [(b, n) for b in args.batch_size for n in args.max_history]
    table = []
    rng = np.random.default_rng(0)
    for b, n in cases:
        lengths = heavy_tailed_lengths(rng, b, n, args.fill)
        ex = synthetic_examples(rng, lengths, n, args.num_items)
        dist = {
            "B": b,
            "mean_fill": round(float(lengths.mean()) / n, 4),
            "p50": int(np.percentile(lengths, 50)),
            "p99": int(np.percentile(lengths, 99)),
            "max": int(lengths.max()),
        }
        idx = np.arange(b)
        rows = []
        for layout in ("jagged", "padded"):
            c_ms = bench_ms(
                lambda layout=layout, ex=ex, idx=idx: ex.collate(idx, layout),
                torch.device("cpu"),
                1,
                5,
            )
            rows.append(
                dict(op="collate", provider=layout, x_value=n, ms=c_ms, peak=float("nan"),
                     cfg={**dist, "mode": "host", "examples_per_s": b / (c_ms[0] / 1e3)})
            )  # fmt: skip
        append_rows(out, [_row(r) for r in rows], meta)
        for provider in args.providers:
            backend, how = PROVIDERS[provider]
            batch = ex.collate(idx, "padded" if backend == "padded" else "jagged")
            bias_buckets = 16 if provider.endswith("+bias") else args.num_bias_buckets
            config = RankConfig(
                num_items=args.num_items,
                num_categories=65,
                num_brands=513,
                max_history=n,
                embed_dim=args.embed_dim,
                num_heads=args.num_heads,
                num_layers=args.num_layers,
                num_bias_buckets=bias_buckets,
                mlp_dims=(256, 128),
                sequence_backend=backend,
            )
            name = provider + ("+nobias" if bias_buckets == 0 and backend != "pooling" else "")
            prof = Path(args.profile_out) if provider in args.profile else None
            res = run_case(provider, config, batch, device, prof, f"B={b} N={n} {provider}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            torch._dynamo.reset()
            cfg = {
                **dist,
                "E": args.embed_dim,
                "H": args.num_heads,
                "L": args.num_layers,
                "bias_buckets": bias_buckets,
                "mode": how,
                "status": res["status"],
                "first_step_s": round(float(res.get("first_s", float("nan"))), 2),
                "first_infer_s": round(float(res.get("infer_first_s", float("nan"))), 2),
                "state_mib": round(float(res.get("state_mem", float("nan"))), 1),
            }
            if "bucket" in res:
                cfg["bucket"] = res["bucket"]
            nan3 = (float("nan"),) * 3
            rows = []
            for op, key in (("train_step", "train"), ("inference", "infer")):
                ms = res.get(key, nan3)
                eps = b / (ms[0] / 1e3) if res["status"] == "ok" else float("nan")
                rows.append(
                    dict(op=op, provider=name, x_value=n, ms=ms,
                         peak=res.get(f"{key}_mem", float("nan")), cfg={**cfg, "examples_per_s": eps})
                )  # fmt: skip
            append_rows(out, [_row(r) for r in rows], meta)
            table.append((b, n, dist["mean_fill"], name, how, res))
            print(f"B={b} N={n} {name} [{how}]: {res['status']} train {res.get('train')} "
                  f"infer {res.get('infer')} mem {res.get('train_mem')} state "
                  f"{res.get('state_mem')} first {res.get('first_s')} / {res.get('infer_first_s')}"
                  + (f" profile: {res['profile']}" if "profile" in res else ""), flush=True)  # fmt: skip

    print(f"\nrank benchmark on {meta['device']} (torch {meta['torch']}, triton {meta['triton']}, "
          f"git {meta['git_sha']}), E={args.embed_dim}, H={args.num_heads}, L={args.num_layers}, "
          f"bias buckets {args.num_bias_buckets}, bf16; CSV: {out}\n")  # fmt: skip
    print("| B | N | mean fill | backend | mode | train ms | train ex/s | train peak MiB "
          "| state MiB | infer ex/s | infer peak MiB | first s | train vs padded+compile "
          "| infer vs padded+compile | train mem vs padded+compile |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ref = {(b, n): res for b, n, _, name, _, res in table
           if name.startswith("padded+compile") and res["status"] == "ok"}  # fmt: skip
    for b, n, fill, name, how, res in table:
        if res["status"] != "ok":
            print(f"| {b} | {n} | {fill:.3f} | {name} | {how} | {res['status'][:80]} "
                  "| | | | | | | | | |")  # fmt: skip
            continue
        tr = b / (res["train"][0] / 1e3)
        inf = b / (res["infer"][0] / 1e3)
        base = ref.get((b, n))
        if base:
            sp = f"{base['train'][0] / res['train'][0]:.2f}x"
            si = f"{base['infer'][0] / res['infer'][0]:.2f}x"
            mem = f"{res['train_mem'] / base['train_mem']:.2f}x"
        else:
            sp = si = mem = "n/a"
        print(f"| {b} | {n} | {fill:.3f} | {name} | {how} | {res['train'][0]:.2f} | {tr:,.0f} "
              f"| {res['train_mem']:,.0f} | {res.get('state_mem', float('nan')):,.0f} "
              f"| {inf:,.0f} | {res['infer_mem']:,.0f} | {res.get('first_s', float('nan')):.1f} "
              f"| {sp} | {si} | {mem} |")  # fmt: skip


def _row(r: dict) -> dict:
    return {
        "suite": "rank", "op": r["op"], "provider": r["provider"], "mode": "bf16",
        "x_name": "max_history", "x_value": r["x_value"],
        "ms_p50": f"{r['ms'][0]:.4f}", "ms_p20": f"{r['ms'][1]:.4f}",
        "ms_p80": f"{r['ms'][2]:.4f}", "peak_mib": f"{r['peak']:.1f}",
        "config_json": json.dumps(r["cfg"], sort_keys=True),
    }  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
