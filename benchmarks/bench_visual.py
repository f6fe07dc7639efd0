"""Benchmarks of shopml.visual: retrieval quality, ANN index trade-offs, GPU embedding speed.

    python benchmarks/bench_visual.py quality --world DIR [--image-size 96] [--budget-s 600]
    python benchmarks/bench_visual.py index [--n 1000000] [--dim 256]        (CPU, needs faiss)
    python benchmarks/bench_visual.py speed [--batch 256]                    (GPU; no faiss/pml)

Each prints a Markdown table last and appends rows to results/<suite>-<device>.csv with the shared
schema (suite, op, provider, mode, x_name, x_value, ms_p50, ms_p20, ms_p80, peak_mib, config_json,
device, torch, triton, git_sha, timestamp). Metrics that are not times (recall, queries/s, bytes
per vector) are in ``config_json`` under their names; ``ms_*`` hold the times.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _results import append_rows, results_path, run_meta

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- quality
def quality(args: argparse.Namespace) -> None:
    from shopml.visual.config import TrainConfig, VisNetConfig
    from shopml.visual.evaluate import street2shop
    from shopml.visual.models import load_model
    from shopml.visual.train import train

    world = Path(args.world)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    size = args.image_size
    runs_dir = Path(args.runs)
    models = args.models.split(",")
    table, rows = [], []
    for name in models:
        t0 = time.perf_counter()
        history = None
        if name == "effnet-frozen":
            model = load_model(f"pretrained:efficientnet_lite0@{size}", device=dev)
            cfg = {"trunk": "efficientnet_lite0", "head": "trunk", "image_size": size}
        else:
            if name == "effnet-finetune":
                mcfg = VisNetConfig(trunk="efficientnet_lite0", normalization="lite",
                                    image_size=size, embedding_dim=args.dim, deep_dim=args.deep_dim)  # fmt: skip
                tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                                   trunk_lr_scale=0.5, samples_per_product=4)  # fmt: skip
            elif name == "vgg16-scratch":
                mcfg = VisNetConfig(trunk="vgg16", image_size=size, embedding_dim=args.dim,
                                    deep_dim=args.deep_dim, vgg_fc_dim=args.vgg_fc,
                                    channels_last=dev == "cuda")  # fmt: skip
                tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr * 0.3,
                                   trunk_lr_scale=1.0, samples_per_product=4, warmup_steps=100)  # fmt: skip
            else:
                raise SystemExit(f"unknown model {name!r}")
            history = train(world, runs_dir / name, mcfg, tcfg, device=dev, pretrained=True,
                            resume=False, progress=False, max_seconds=args.budget_s)  # fmt: skip
            model = load_model(runs_dir / name, device=dev)
            cfg = {"model": mcfg.__dict__, "train": tcfg.__dict__}
        train_s = time.perf_counter() - t0
        res = street2shop(model, world, split="test", batch_size=128)
        res_cat = street2shop(model, world, split="test", within_category=True, batch_size=128)
        epochs = len(history["epochs"]) if history else 0
        steps = sum(e["steps"] for e in history["epochs"]) if history else 0
        cfg.update({"world": world.name, "epochs_done": epochs, "steps": steps,
                    "train_s": round(train_s, 1), "queries": res["queries"]})  # fmt: skip
        for mode, r in (("catalog", res), ("within_category", res_cat)):
            for k in (1, 5, 10, 20):
                rows.append({"suite": "visual-quality", "op": "street2shop", "provider": name,
                             "mode": mode, "x_name": "k", "x_value": k,
                             "config_json": json.dumps({**cfg, f"recall@{k}": r[f"recall@{k}"]})})  # fmt: skip
        rows.append({"suite": "visual-quality", "op": "style_precision", "provider": name,
                     "mode": "catalog", "x_name": "k", "x_value": 5,
                     "config_json": json.dumps({**cfg, "style_precision@5": res["style_precision@5"]})})  # fmt: skip
        table.append([name, size, epochs, steps, f"{train_s:.0f}",
                      *(f"{res[f'recall@{k}']:.3f}" for k in (1, 5, 10, 20)),
                      f"{res_cat['recall@1']:.3f}", f"{res_cat['recall@20']:.3f}",
                      f"{res['style_precision@5']:.3f}"])  # fmt: skip
        print(json.dumps({"model": name, **{k: v for k, v in res.items() if k != "per_category"}}),
              flush=True)  # fmt: skip
    out = Path(args.out or results_path("visual-quality"))
    append_rows(out, rows, run_meta())
    print(markdown(["model", "px", "epochs", "steps", "train s", "R@1", "R@5", "R@10", "R@20",
                    "R@1 in-cat", "R@20 in-cat", "style P@5"], table))  # fmt: skip


# --------------------------------------------------------------------------------------- index
def clustered(n: int, dim: int, clusters: int, seed: int, latent: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` centres. ``latent > 0``: the clusters live in a random
    ``latent``-dimensional subspace plus 5% isotropic noise (learned embeddings have a low intrinsic
    dimension); ``latent = 0``: isotropic noise in all ``dim`` dimensions (a worst case for ANN)."""
    rng = np.random.default_rng(seed)
    k = latent or dim
    centres = rng.standard_normal((clusters, k)).astype(np.float32)
    proj = (rng.standard_normal((k, dim)) / np.sqrt(k)).astype(np.float32) if latent else None
    out = np.empty((n, dim), np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        x = centres[rng.integers(0, clusters, m)] + 0.6 * rng.standard_normal((m, k), np.float32)
        if proj is not None:
            x = x @ proj
            x += (
                0.05
                * np.linalg.norm(x, axis=1, keepdims=True)
                / np.sqrt(dim)
                * rng.standard_normal((m, dim), np.float32)
            )
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def index_bench(args: argparse.Namespace) -> None:
    import faiss

    from shopml.visual.index import FaissIndex

    faiss.omp_set_num_threads(args.threads)
    n, d, nq, k = args.n, args.dim, args.queries, 10
    t = time.perf_counter()
    data = clustered(n + nq, d, args.clusters, seed=0, latent=args.latent)
    base, queries = data[:n], data[n:]
    ids = np.arange(n, dtype=np.int64)
    print(f"data {time.perf_counter() - t:.1f}s", flush=True)
    flat = faiss.IndexFlatIP(d)
    flat.add(base)
    t = time.perf_counter()
    _, truth = flat.search(queries, k)
    flat_s = time.perf_counter() - t
    del flat
    rows, table = [], []

    def record(factory, param, value, build_s, nbytes, search_s, got, truth=truth, indexed=n):
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth, strict=True)]))
        qps = nq / search_s
        cfg = {"n": n, "dim": d, "queries": nq, "k": k, "threads": args.threads, "build_s": round(build_s, 2),
               "bytes_per_vector": round(nbytes / n, 1), "qps": round(qps, 1), "recall@10": round(recall, 4),
               "clusters": args.clusters, "indexed": indexed, "latent_dim": args.latent}  # fmt: skip
        rows.append({"suite": "visual-index", "op": "search", "provider": factory, "mode": "cpu",
                     "x_name": param, "x_value": value, "ms_p50": round(1000 * search_s / nq, 4),
                     "config_json": json.dumps(cfg)})  # fmt: skip
        table.append([factory, f"{param}={value}", f"{build_s:.1f}", f"{nbytes / n:.0f}",
                      f"{qps:,.0f}", f"{recall:.3f}"])  # fmt: skip
        print(table[-1], flush=True)

    record("Flat", "-", "-", 0.0, n * d * 4, flat_s, truth)
    for factory, param, values in (
        ("HNSW32", "efSearch", (16, 32, 64, 128)),
        ("IVF1024,PQ32", "nprobe", (8, 16, 32, 64)),
        ("IVF1024,PQ32x4fs,RFlat", "nprobe", (8, 16, 32, 64)),
    ):
        if args.only and factory not in args.only.split(";"):
            continue
        idx = FaissIndex(d, factory, refine_k_factor=args.refine_k)
        t = time.perf_counter()
        if not idx.is_trained:
            sample = base[np.random.default_rng(1).choice(n, min(n, args.train_n), replace=False)]
            idx.train(sample)
        added = 0
        for s in range(0, n, 50_000):  # chunks, so a slow build stops inside its budget
            idx.add(base[s : s + 50_000], ids[s : s + 50_000])
            added = min(n, s + 50_000)
            if time.perf_counter() - t > args.build_budget_s:
                break
        build_s = time.perf_counter() - t
        nbytes = len(faiss.serialize_index(idx.index))
        sub_truth = truth
        if added < n:  # budget hit: exact truth over the indexed prefix
            print(f"{factory}: build budget hit after {added} vectors", flush=True)
            prefix = faiss.IndexFlatIP(d)
            prefix.add(base[:added])
            sub_truth = prefix.search(queries, k)[1]
        for v in values:
            idx.set_search_params(**({"ef_search": v} if param == "efSearch" else {"nprobe": v}))
            idx.search(queries[:50], k)  # warm-up
            t = time.perf_counter()
            _, got = idx.search(queries, k)
            record(factory, param, v, build_s, nbytes * n / added, time.perf_counter() - t, got,
                   sub_truth, added)  # fmt: skip
        del idx
    out = Path(args.out or results_path("visual-index", "cpu"))
    append_rows(out, rows, run_meta("cpu"))
    print(
        markdown(
            ["index", "search param", "build s", "bytes/vector", "queries/s", "recall@10"], table
        )
    )


# --------------------------------------------------------------------------------------- speed
def speed(args: argparse.Namespace) -> None:
    from shopml.visual.config import VisNetConfig
    from shopml.visual.models import VisNet

    if not torch.cuda.is_available():
        raise SystemExit("speed: needs a CUDA device")
    from triton.testing import do_bench

    torch.backends.cudnn.benchmark = True
    b, s = args.batch, 224
    configs = {
        "visnet-vgg16": VisNetConfig(trunk="vgg16", channels_last=True),  # the paper's, 4096-d
        "visnet-efficientnet_lite0": VisNetConfig(
            trunk="efficientnet_lite0", normalization="lite", embedding_dim=4096, channels_last=True
        ),  # fmt: skip
        "efficientnet_lite0-trunk": VisNetConfig(
            trunk="efficientnet_lite0", head="trunk", normalization="lite", channels_last=True
        ),  # fmt: skip
    }
    rows, table = [], []
    for name, cfg in configs.items():
        model = VisNet(cfg).cuda().eval().to(torch.bfloat16)
        x8 = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, device="cuda")

        def run(m, x8=x8, model=model):
            with torch.inference_mode():
                return m(model.normalize(x8).to(torch.bfloat16))

        for mode in args.modes.split(","):
            fn = model if mode == "eager" else torch.compile(model)
            t = time.perf_counter()
            out = run(fn)
            torch.cuda.synchronize()
            first_s = time.perf_counter() - t
            assert out.shape == (b, model.dim) and torch.isfinite(out).all()
            torch.cuda.reset_peak_memory_stats()
            base_mem = torch.cuda.memory_allocated()
            p50, p20, p80 = do_bench(lambda fn=fn: run(fn), warmup=100, rep=1000,
                                     quantiles=[0.5, 0.2, 0.8])  # fmt: skip
            peak = (torch.cuda.max_memory_allocated() - base_mem) / 2**20
            ips = b / (p50 / 1000)
            cfgj = {"batch": b, "image_size": s, "dtype": "bf16", "channels_last": True,
                    "images_per_s": round(ips, 1), "first_call_s": round(first_s, 1),
                    "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                    "dim": model.dim, "input": "uint8 on GPU, normalisation included"}  # fmt: skip
            rows.append({"suite": "visual-speed", "op": "embed", "provider": name, "mode": mode,
                         "x_name": "batch", "x_value": b, "ms_p50": round(p50, 3),
                         "ms_p20": round(p20, 3), "ms_p80": round(p80, 3), "peak_mib": round(peak, 1),
                         "config_json": json.dumps(cfgj)})  # fmt: skip
            table.append([name, mode, b, f"{p50:.2f}", f"{ips:,.0f}", f"{peak:.0f}"])
            print(table[-1], flush=True)
        del model
        torch.cuda.empty_cache()
    out = Path(args.out or results_path("visual-speed"))
    append_rows(out, rows, run_meta())
    print(markdown(["model", "mode", "batch", "ms p50", "images/s", "peak MiB"], table))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--world", required=True)
    q.add_argument("--models", default="effnet-frozen,effnet-finetune,vgg16-scratch")
    q.add_argument("--image-size", type=int, default=96)
    q.add_argument("--dim", type=int, default=256)
    q.add_argument("--deep-dim", type=int, default=512)
    q.add_argument("--vgg-fc", type=int, default=4096)
    q.add_argument("--epochs", type=int, default=20)
    q.add_argument("--batch", type=int, default=64)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--budget-s", type=float, default=600.0, help="training seconds per model")
    q.add_argument("--runs", default="/tmp/visual-bench-runs")
    q.add_argument("--out")
    i = sub.add_parser("index")
    i.add_argument("--n", type=int, default=1_000_000)
    i.add_argument("--dim", type=int, default=256)
    i.add_argument("--queries", type=int, default=2000)
    i.add_argument("--clusters", type=int, default=2000)
    i.add_argument("--train-n", type=int, default=100_000)
    i.add_argument("--latent", type=int, default=32, help="intrinsic dimension (0: isotropic)")
    i.add_argument("--threads", type=int, default=2)
    i.add_argument("--build-budget-s", type=float, default=900.0)
    i.add_argument("--refine-k", type=float, default=16.0)
    i.add_argument("--only", default="", help="factories to run, ';'-separated")
    i.add_argument("--out")
    s = sub.add_parser("speed")
    s.add_argument("--batch", type=int, default=256)
    s.add_argument("--modes", default="eager,compiled")
    s.add_argument("--out")
    args = ap.parse_args()
    {"quality": quality, "index": index_bench, "speed": speed}[args.cmd](args)


if __name__ == "__main__":
    main()
