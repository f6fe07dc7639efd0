"""Data-parallel scaling of training: examples/s on 1, 2, ... G processes (torchrun), for the ranking
model and for VisNet.

For each G of ``--procs`` the script starts ``torchrun --standalone --nproc-per-node G`` on itself
with ``--worker``. Every rank joins the process group through :mod:`shopml.common.distributed`
(NCCL on GPUs, gloo on a CPU), builds the same model (seed 0), wraps it in
``DistributedDataParallel`` (gradient all-reduce overlapped with the backward, in buckets), draws
its own batches of ``--batch-size`` examples (per process: weak scaling, the global batch grows
with G) and times ``--steps`` optimizer steps after ``--warmup``; the slowest rank's time counts.
examples/s = G x B x steps / seconds; speed-up = examples/s(G) / examples/s(1); efficiency =
speed-up / G.

- ``rank``: the ranking model (jagged self-attention + target attention) on the heavy-tailed
  synthetic histories of bench_rank.py (B=1024 per GPU, N=1024 by default, issue #17), bf16
  autocast on CUDA, BCE loss, gradient clipping, AdamW.
- ``visual``: VisNet with an EfficientNet-Lite0 trunk at ``--image-size`` (224), the triplet loss
  with the semihard miner on random uint8 images, 4 views per label (the augmentation, which runs
  per rank on its own batch, is left out), bf16 autocast on CUDA, AdamW.

Rows go to ``results/scaling-<device>.csv`` (one per model and G; ``ms_p50`` is ms per step,
``config_json`` holds examples/s, speed-up and efficiency); a Markdown table is printed last.

Usage (a machine with G GPUs)::

    PYTHONPATH=src python3 benchmarks/bench_scaling.py --procs 1 2 4 8

On a CPU (``--device cpu``, gloo, tiny sizes) it is a smoke test (tests/test_benchmarks.py): the
numbers then say nothing about GPUs. Several machines: docs/multi-gpu.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import append_rows, results_path, run_meta

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

MODELS = ("rank", "visual")


def rank_step(args: argparse.Namespace, seed: int, device: torch.device):
    """One ranking-model training step on this rank's batch; returns ``(model, step)``."""
    from bench_rank import heavy_tailed_lengths, synthetic_examples

    from shopml.rank.config import RankConfig
    from shopml.rank.model import RankingModel

    rng = np.random.default_rng(seed)
    n = args.max_history
    lengths = heavy_tailed_lengths(rng, args.batch_size, n, args.fill)
    batch = synthetic_examples(rng, lengths, n, args.num_items)
    batch = batch.collate(np.arange(args.batch_size), "jagged").to(device)
    config = RankConfig(
        num_items=args.num_items, num_categories=65, num_brands=513, max_history=n,
        embed_dim=args.embed_dim, num_heads=2, num_layers=2, num_bias_buckets=16,
        mlp_dims=(256, 128), sequence_backend="jagged",
    )  # fmt: skip
    torch.manual_seed(0)
    model = RankingModel(config).to(device)

    def loss_fn(net: torch.nn.Module) -> torch.Tensor:
        logits = net(batch.history, batch.candidates)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), batch.labels)

    return model, loss_fn


def visual_step(args: argparse.Namespace, seed: int, device: torch.device):
    """One VisNet triplet step on this rank's random images; returns ``(model, step)``."""
    from shopml.visual.config import VisNetConfig
    from shopml.visual.losses import TripletLoss
    from shopml.visual.mining import make_miner
    from shopml.visual.models import VisNet

    cfg = VisNetConfig(
        trunk="efficientnet_lite0", normalization="lite", image_size=args.image_size,
        embedding_dim=args.embed_dim, deep_dim=2 * args.embed_dim,
    )  # fmt: skip
    torch.manual_seed(0)
    model = VisNet(cfg).to(device)
    g = torch.Generator().manual_seed(seed)
    s = args.image_size
    images = torch.randint(0, 256, (args.batch_size, 3, s, s), dtype=torch.uint8, generator=g)
    images = images.to(device)
    labels = torch.arange(args.batch_size, device=device) // 4
    miner, triplet = make_miner("semihard", 0.2), TripletLoss(0.2)

    def loss_fn(net: torch.nn.Module) -> torch.Tensor:
        emb = net(model.normalize(images.float() / 255.0))
        return triplet(emb.float(), labels, miner(emb.float(), labels))

    return model, loss_fn


def worker(args: argparse.Namespace) -> None:
    """One rank: time ``args.steps`` DDP steps; rank 0 writes the result JSON."""
    import torch.distributed as dist

    from shopml.common.distributed import setup_distributed, teardown_distributed
    from shopml.jagged.checks import checks_enabled

    ctx = setup_distributed(args.device)
    try:
        build = rank_step if args.model == "rank" else visual_step
        model, loss_fn = build(args, 1000 + ctx.rank, ctx.device)
        net = model
        if ctx.distributed:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        use_amp = ctx.device.type == "cuda"

        def step() -> None:
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(net)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        def sync() -> None:
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)

        with checks_enabled(False):  # the batches were checked when collated
            for _ in range(args.warmup):
                step()
            sync()
            if ctx.distributed:
                dist.barrier()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            seconds = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        if ctx.distributed:
            seconds = seconds.to(ctx.device)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)  # the slowest rank's time
        if ctx.is_main:
            sec = float(seconds.item())
            result = {
                "model": args.model,
                "procs": ctx.world_size,
                "seconds": sec,
                "ms_per_step": 1e3 * sec / args.steps,
                "examples_per_s": ctx.world_size * args.batch_size * args.steps / sec,
            }
            Path(args.result).write_text(json.dumps(result))
    finally:
        teardown_distributed(ctx)


def launch(args: argparse.Namespace, model: str, procs: int) -> dict:
    """Run the workers of one (model, G) under torchrun; returns rank 0's result."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(procs), str(Path(__file__).resolve()), "--worker",
            "--model", model, "--result", str(result), *worker_options(args),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
        if args.device == "cpu":
            env.setdefault("OMP_NUM_THREADS", "1")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        if done.returncode != 0 or not result.is_file():
            raise SystemExit(
                f"{model} on {procs} processes failed (exit {done.returncode}):\n"
                f"{done.stderr[-3000:]}"
            )
        return json.loads(result.read_text())


def worker_options(args: argparse.Namespace) -> list[str]:
    names = ("device", "batch_size", "steps", "warmup", "max_history", "fill", "num_items",
             "embed_dim", "image_size")  # fmt: skip
    return [x for n in names for x in (f"--{n.replace('_', '-')}", str(getattr(args, n)))]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--procs", type=int, nargs="+", default=None,
                   help="process counts (default: 1, 2, 4, ... up to the GPUs)")  # fmt: skip
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None,
                   help="examples per process (default: rank 1024, visual 64)")  # fmt: skip
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--max-history", type=int, default=1024)
    p.add_argument("--fill", type=float, default=0.2, help="mean history length / N")
    p.add_argument("--num-items", type=int, default=100_000)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--timeout", type=int, default=1800, help="seconds per (model, G) run")
    p.add_argument("--out", default=None, help="CSV (default results/scaling-<device>.csv)")
    p.add_argument("--git-sha", default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("steps", "warmup", "max_history", "num_items", "embed_dim", "image_size"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(
                f"--{name.replace('_', '-')}: expected a positive int, found {getattr(args, name)}"
            )
    if args.procs is not None and min(args.procs) < 1:
        p.error(f"--procs: expected counts >= 1, found {args.procs}")
    return args


def main() -> None:
    args = parse()
    if args.worker:
        worker(args)
        return
    if args.procs is None:
        n = torch.cuda.device_count() if args.device.startswith("cuda") else 2
        args.procs = [g for g in (1, 2, 4, 8) if g <= max(1, n)]
    if args.device.startswith("cuda") and max(args.procs) > torch.cuda.device_count():
        raise SystemExit(
            f"--procs: {max(args.procs)} processes need as many GPUs, found "
            f"{torch.cuda.device_count()}"
        )
    meta = run_meta(args.device, sha=args.git_sha)
    out = Path(args.out) if args.out else results_path("scaling", args.device)
    table = []
    for model in args.models:
        b = args.batch_size or (1024 if model == "rank" else 64)
        margs = argparse.Namespace(**{**vars(args), "batch_size": b})
        base = None
        for g in args.procs:
            res = launch(margs, model, g)
            base = base or (res["examples_per_s"] if g == 1 else None)
            speedup = res["examples_per_s"] / base if base else None  # needs G = 1 first
            cfg = {
                "batch_per_process": b, "global_batch": g * b, "steps": args.steps,
                "examples_per_s": round(res["examples_per_s"], 1),
                "speedup": speedup and round(speedup, 3),
                "efficiency": speedup and round(speedup / g, 3),
                **({"N": args.max_history, "mean_fill": args.fill, "E": args.embed_dim}
                   if model == "rank" else {"image_size": args.image_size, "dim": args.embed_dim}),
            }  # fmt: skip
            append_rows(
                out,
                [{"suite": "scaling", "op": "train_step", "provider": model, "mode": "ddp",
                  "x_name": "processes", "x_value": g, "ms_p50": f"{res['ms_per_step']:.3f}",
                  "config_json": json.dumps(cfg, sort_keys=True)}],
                meta,
            )  # fmt: skip
            table.append((model, g, b, res, speedup))
            print(f"{model} G={g}: {res['examples_per_s']:,.0f} ex/s", flush=True)
    print(f"\ndata-parallel scaling on {meta['device']} ({args.device}); CSV: {out}\n")
    print(
        "| model | processes | batch / process | ms / step | examples/s | speed-up | efficiency |"
    )
    print("|---|---|---|---|---|---|---|")
    for model, g, b, res, sp in table:
        ratio = f"{sp:.2f}x | {sp / g:.0%}" if sp else "- | -"
        print(f"| {model} | {g} | {b} | {res['ms_per_step']:.1f} | {res['examples_per_s']:,.0f} "
              f"| {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
