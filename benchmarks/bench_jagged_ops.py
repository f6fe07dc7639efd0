"""Benchmark the jagged feature-interaction ops on a GPU: Triton vs. padded dense PyTorch, the
PyTorch reference, and nested tensors (NJT) where they offer the op.

Usage (GPU machine, from the repo root)::

    PYTHONPATH=src python3 benchmarks/bench_jagged_ops.py [--quick] [--out CSV] [--git-sha SHA]

Appends rows of the shared CSV schema to ``benchmarks/results/jagged_ops-<device>.csv`` and prints
a Markdown table last. Lengths are heavy-tailed: ``Exponential(mean = fill * N)`` clamped to
``[1, N]`` (all equal to N at fill 1.0); every row records the real mean fill, p50 and p99.
Before timing, each op's Triton result is checked against the reference. Timings run with
content checks off (``shopml.jagged.checks_enabled(False)``, the documented hot-loop setting: no
device syncs); the provider ``triton+checks`` times the default (checks on) once, forward only.
Eager timings include host overhead (Python, autograd, Triton launches); the providers
``triton/graph`` and ``padded/graph`` replay the same call captured in a CUDA graph
(``do_bench_cudagraph``: device time without host overhead, and without an L2 flush). Bandwidth and FLOP
rates count real bytes / FLOPs (from the real lengths, inputs read once, outputs written once)
and are compared with ceilings measured in the same run (device copy, cuBLAS matmul).
Imports only torch, triton, numpy-free stdlib and shopml.jagged (no typer/rich).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from _results import append_rows, results_path, run_meta
from triton.testing import do_bench, do_bench_cudagraph

from shopml.jagged import checks_enabled, ops
from shopml.jagged import ops_reference as ref
from shopml.jagged.tensor import lengths_to_offsets

SUITE = "jagged_ops"
QUANTILES = [0.5, 0.2, 0.8]


def make_lengths(b: int, n: int, fill: float, gen: torch.Generator) -> torch.Tensor:
    if fill >= 1.0:
        return torch.full((b,), n, dtype=torch.int64)
    lam = torch.empty(b).exponential_(1.0 / (fill * n), generator=gen)
    return lam.round().clamp(1, n).to(torch.int64)


def length_stats(lengths: torch.Tensor, n: int) -> dict:
    lf = lengths.float()
    return {
        "mean_fill": round(lf.mean().item() / n, 4),
        "len_p50": int(lf.quantile(0.5).item()),
        "len_p99": int(lf.quantile(0.99).item()),
    }


def timeit(fn: Callable[[], object], warmup: int, rep: int) -> tuple[list[float], float]:
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    ms = do_bench(fn, warmup=warmup, rep=rep, quantiles=QUANTILES)
    return list(ms), peak


# ------------------------------------------------------------------------------ ceilings
def ceilings(warmup: int, rep: int) -> dict:
    x = torch.empty(2**28, dtype=torch.float32, device="cuda")  # 1 GiB
    x.normal_()
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=warmup, rep=rep, quantiles=QUANTILES)[0]
    out = {"copy_gbps": 2 * x.numel() * 4 / ms / 1e6}
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        ms = do_bench(lambda a=a, b=b: a @ b, warmup=warmup, rep=rep, quantiles=QUANTILES)[0]
        torch.backends.cuda.matmul.allow_tf32 = prev
        out[f"mm_tflops_{str(dtype).split('.')[-1]}"] = 2 * 8192**3 / ms / 1e9
    return out


# ------------------------------------------------------------------------------ cases
class Case:
    """One op at one shape: providers (name -> fn(grad) builder), bytes and flops of the op."""

    def __init__(self, op, b, n, d, fill, dtype, gen):
        self.op, self.b, self.n, self.d, self.fill, self.dtype = op, b, n, d, fill, dtype
        lengths = make_lengths(b, n, fill, gen)
        self.stats = length_stats(lengths, n)
        self.lengths = lengths.cuda()
        self.offsets = lengths_to_offsets(lengths).to(torch.int32).cuda()
        self.t = int(lengths.sum())
        self.t2 = int((lengths * lengths).sum())
        self.max_len = int(lengths.max())
        self.mask = torch.arange(n, device="cuda")[None, :] < self.lengths[:, None]  # (B, N)
        self.esize = torch.empty((), dtype=dtype).element_size()

    def rand(self, *shape):
        return torch.randn(*shape, device="cuda", dtype=self.dtype)

    def padded(self, values, n=None):
        return ref.jagged_to_padded(values, self.offsets, self.n if n is None else n)


def build(case: Case):
    """Providers for ``case.op``: dict name -> (fn, inputs needing grad), plus (bytes, flops)."""
    c, off, n, d, t, t2, b = case, case.offsets, case.n, case.d, case.t, case.t2, case.b
    e = c.esize
    prov: dict[str, tuple[Callable[[], torch.Tensor], list[torch.Tensor]]] = {}
    if c.op == "jagged_to_padded":
        x = c.rand(t, d)
        prov["triton"] = (lambda: ops.jagged_to_padded(x, off, n, backend="triton"), [x])
        prov["reference"] = (lambda: ops.jagged_to_padded(x, off, n, backend="reference"), [x])
        nt = torch.nested.nested_tensor_from_jagged(x, off.long(), max_seqlen=n)
        prov["nested"] = (lambda: torch.nested.to_padded_tensor(nt, 0.0, (b, n, d)), [])
        return prov, (t * d + b * n * d) * e, 0
    if c.op == "padded_to_jagged":
        xp = c.rand(b, n, d)
        prov["triton"] = (lambda: ops.padded_to_jagged(xp, off, t, backend="triton"), [xp])
        prov["reference"] = (lambda: ops.padded_to_jagged(xp, off, t, backend="reference"), [xp])
        flat = torch.nonzero(c.mask.reshape(-1)).squeeze(1)  # precomputed: no sync when timed
        prov["padded"] = (lambda: xp.reshape(b * n, d)[flat], [xp])
        return prov, 2 * t * d * e, 0
    if c.op == "jagged_dense_bmm":
        x, y = c.rand(t, d), c.rand(b, d, d)
        xp = c.padded(x)
        prov["triton"] = (lambda: ops.jagged_dense_bmm(x, off, y, n, backend="triton"), [x, y])
        prov["reference"] = (
            lambda: ops.jagged_dense_bmm(x, off, y, n, backend="reference"),
            [x, y],
        )
        prov["padded"] = (lambda: torch.bmm(xp, y), [xp, y])
        return prov, (2 * t * d + b * d * d) * e, 2 * t * d * d
    if c.op == "jagged_jagged_bmm":
        x, y = c.rand(t, d), c.rand(t, d)
        xp, yp = c.padded(x), c.padded(y)
        prov["triton"] = (lambda: ops.jagged_jagged_bmm(x, y, off, n, backend="triton"), [x, y])
        prov["reference"] = (
            lambda: ops.jagged_jagged_bmm(x, y, off, n, backend="reference"),
            [x, y],
        )
        prov["padded"] = (lambda: torch.bmm(xp.transpose(1, 2), yp), [xp, yp])
        return prov, (2 * t * d + b * d * d) * e, 2 * t * d * d
    if c.op == "jagged_softmax":
        x = c.rand(t, d)
        xp = c.padded(x)
        neg = ~c.mask[:, :, None]
        prov["triton"] = (lambda: ops.jagged_softmax(x, off, n, backend="triton"), [x])
        prov["reference"] = (lambda: ops.jagged_softmax(x, off, n, backend="reference"), [x])
        prov["padded"] = (lambda: torch.softmax(xp.masked_fill(neg, float("-inf")), dim=1), [xp])
        nt = torch.nested.nested_tensor_from_jagged(x, off.long(), max_seqlen=n)
        prov["nested"] = (lambda: torch.softmax(nt, dim=1).values(), [])
        return prov, 2 * t * d * e, 0
    if c.op == "jagged_dense_add":
        x, y = c.rand(t, d), c.rand(b, n, d)
        xp = c.padded(x)
        prov["triton"] = (lambda: ops.jagged_dense_add(x, off, y, backend="triton"), [x, y])
        prov["reference"] = (lambda: ops.jagged_dense_add(x, off, y, backend="reference"), [x, y])
        prov["padded"] = (lambda: xp + y, [xp, y])
        return prov, 3 * t * d * e, 0
    if c.op == "jagged_sum":
        x = c.rand(t, d)
        xp = c.padded(x)
        prov["triton"] = (lambda: ops.jagged_sum(x, off, backend="triton"), [x])
        prov["reference"] = (lambda: ops.jagged_sum(x, off, backend="reference"), [x])
        prov["padded"] = (lambda: xp.sum(1), [xp])
        nt = torch.nested.nested_tensor_from_jagged(x, off.long(), max_seqlen=n)
        prov["nested"] = (lambda: nt.sum(dim=1), [])
        return prov, (t * d + b * d) * e, 0
    if c.op == "jagged_concat":
        x, y = c.rand(t, d), c.rand(t, d)
        xp, yp = c.padded(x), c.padded(y)
        prov["triton"] = (lambda: ops.jagged_concat(x, off, y, off, backend="triton")[0], [x, y])
        prov["reference"] = (
            lambda: ops.jagged_concat(x, off, y, off, backend="reference")[0],
            [x, y],
        )
        prov["padded"] = (lambda: torch.cat([xp, yp], dim=1), [xp, yp])
        return prov, 4 * t * d * e, 0
    # ---- the per-sequence L x L family
    if c.op == "jagged2_bmm":
        x, y = c.rand(t, d), c.rand(t, d)
        xp, yp = c.padded(x), c.padded(y)
        prov["triton"] = (
            lambda: ops.jagged2_bmm(x, y, off, n, total2=t2, backend="triton"),
            [x, y],
        )
        prov["reference"] = (
            lambda: ops.jagged2_bmm(x, y, off, n, total2=t2, backend="reference"),
            [x, y],
        )
        prov["padded"] = (lambda: torch.bmm(xp, yp.transpose(1, 2)), [xp, yp])
        return prov, (2 * t * d + t2) * e, 2 * t2 * d
    if c.op == "jagged2_matmul":
        p, v = c.rand(t2), c.rand(t, d)
        pp, vp = ref.jagged2_to_padded(p, off, n), c.padded(v)
        prov["triton"] = (lambda: ops.jagged2_matmul(p, v, off, n, backend="triton"), [p, v])
        prov["reference"] = (lambda: ops.jagged2_matmul(p, v, off, n, backend="reference"), [p, v])
        prov["padded"] = (lambda: torch.bmm(pp, vp), [pp, vp])
        return prov, (t2 + 2 * t * d) * e, 2 * t2 * d
    if c.op == "jagged2_softmax":
        s = c.rand(t2)
        sp = ref.jagged2_to_padded(s, off, n)
        neg = ~(c.mask[:, :, None] & c.mask[:, None, :])
        prov["triton"] = (lambda: ops.jagged2_softmax(s, off, n, backend="triton"), [s])
        prov["reference"] = (lambda: ops.jagged2_softmax(s, off, n, backend="reference"), [s])
        prov["padded"] = (lambda: torch.softmax(sp.masked_fill(neg, -1e4), dim=-1), [sp])
        return prov, 2 * t2 * e, 0
    if c.op == "jagged2_to_padded":
        s = c.rand(t2)
        prov["triton"] = (lambda: ops.jagged2_to_padded(s, off, n, backend="triton"), [s])
        prov["reference"] = (lambda: ops.jagged2_to_padded(s, off, n, backend="reference"), [s])
        return prov, (t2 + b * n * n) * e, 0
    if c.op == "jagged2_mul_dense":
        s, m = c.rand(t2), c.rand(n, n)
        sp = ref.jagged2_to_padded(s, off, n)
        prov["triton"] = (lambda: ops.jagged2_mul_dense(s, off, m, backend="triton"), [s, m])
        prov["reference"] = (lambda: ops.jagged2_mul_dense(s, off, m, backend="reference"), [s, m])
        prov["padded"] = (lambda: sp * m, [sp, m])
        return prov, 2 * t2 * e, 0
    if c.op == "jagged_pairwise_diff":
        a = c.rand(t)
        ap = c.padded(a)
        prov["triton"] = (
            lambda: ops.jagged_pairwise_diff(a, off, total2=t2, backend="triton"),
            [a],
        )
        prov["reference"] = (
            lambda: ops.jagged_pairwise_diff(a, off, total2=t2, backend="reference"),
            [a],
        )
        prov["padded"] = (lambda: ap[:, :, None] - ap[:, None, :], [ap])
        return prov, (t + t2) * e, 0
    raise KeyError(c.op)


def with_backward(fn, inputs):
    """fwd+bwd callable: forward, then autograd.grad w.r.t. inputs with a fixed upstream grad."""
    for x in inputs:
        x.requires_grad_(True)
    out = fn()
    g = torch.randn_like(out)

    def run():
        o = fn()
        return torch.autograd.grad(o, inputs, g)

    return run


def check(case: Case, prov) -> float:
    """Relative error of the Triton output against the fp32 reference."""
    with torch.no_grad():
        fast = prov["triton"][0]().float()
        slow = prov["reference"][0]().float()
    return ((fast - slow).norm() / slow.norm().clamp_min(1e-30)).item()


# ------------------------------------------------------------------------------ the grid
MEMORY_OPS = [
    "jagged_to_padded",
    "padded_to_jagged",
    "jagged_softmax",
    "jagged_dense_add",
    "jagged_sum",
    "jagged_concat",
]
MATMUL_OPS = ["jagged_dense_bmm", "jagged_jagged_bmm"]
LL_OPS = [
    "jagged2_bmm",
    "jagged2_softmax",
    "jagged2_matmul",
    "jagged2_to_padded",
    "jagged2_mul_dense",
    "jagged_pairwise_diff",
]


def grid(quick: bool):
    fills = [0.1, 0.25, 0.5, 1.0]
    out = []
    for op in MEMORY_OPS + MATMUL_OPS:
        for fill in fills:
            out.append((op, 1024, 1024, 64, fill, torch.bfloat16))
            if op in ("jagged_softmax", "jagged_dense_bmm", "jagged_sum"):
                out.append((op, 1024, 1024, 64, fill, torch.float32))
            if op in ("jagged_dense_add", "jagged_jagged_bmm") and not quick:
                out.append((op, 256, 1024, 256, fill, torch.bfloat16))
    if not quick:
        for op in ("jagged_softmax", "jagged_dense_bmm"):
            for fill in (0.1, 0.25):
                out.append((op, 256, 4096, 64, fill, torch.bfloat16))
    for op in LL_OPS:
        for fill in fills:
            out.append((op, 256, 1024, 64, fill, torch.bfloat16))
    return out


def report(csv_path: Path, timestamp: str | None = None) -> str:
    """Condensed Markdown from a results CSV (latest run unless ``timestamp``): speedups vs padded."""
    with csv_path.open() as f:
        rows = [r for r in csv.DictReader(f) if r["op"] != "ceiling"]
    stamp = timestamp or max(r["timestamp"] for r in rows)
    rows = [r for r in rows if r["timestamp"] == stamp]
    cells: dict[tuple, dict] = {}
    for r in rows:
        cfg = json.loads(r["config_json"])
        key = (r["op"], cfg["dtype"], f"{cfg['B']}x{cfg['N']}x{cfg['D']}", r["mode"])
        cells.setdefault(key, {}).setdefault(float(r["x_value"]), {})[r["provider"]] = (
            float(r["ms_p50"]),
            cfg,
        )
    fills = sorted({f for v in cells.values() for f in v})
    head = ["op", "dtype", "BxNxD", "mode"] + [f"fill {f}" for f in fills]
    out = [f"run {stamp}, {rows[0]['device']}, torch {rows[0]['torch']}, triton {rows[0]['triton']}, "
           f"git {rows[0]['git_sha']}", "",
           "Each cell: triton ms, then speedup vs padded eager / with CUDA graphs "
           "(target 0.8/fill), then % of the measured ceiling (graph).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for key in sorted(cells):
        line = list(key)
        for f in fills:
            p = cells[key].get(f, {})
            if "triton" not in p:
                line.append("-")
                continue
            tri = p["triton"][0]
            txt = f"{tri:.3f}"
            if "padded" in p:
                txt += f", {p['padded'][0] / tri:.2f}x"
                if "triton/graph" in p and "padded/graph" in p:
                    txt += f" / {p['padded/graph'][0] / p['triton/graph'][0]:.2f}x"
            g = p.get("triton/graph", p["triton"])[1]
            if "pct_of_copy_bw" in g:
                txt += f", {g['pct_of_copy_bw']}% BW"
            elif "pct_of_mm" in g:
                txt += f", {g['pct_of_mm']}% MM"
            line.append(txt)
        out.append("| " + " | ".join(str(x) for x in line) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="CSV to append to")
    ap.add_argument("--quick", action="store_true", help="smaller grid")
    ap.add_argument("--ops", nargs="*", default=None, help="only these ops")
    ap.add_argument("--git-sha", default=None, help="default: SHOPML_GIT_SHA, else git")
    ap.add_argument("--warmup", type=int, default=10, help="do_bench warm-up, ms")
    ap.add_argument("--rep", type=int, default=40, help="do_bench repetitions, ms")
    ap.add_argument("--report", type=Path, default=None, help="only print the summary of this CSV")
    ap.add_argument("--report-timestamp", default=None, help="run to summarise (default: latest)")
    args = ap.parse_args(argv)
    if args.report is not None:
        print(report(args.report, args.report_timestamp))
        return 0
    if not torch.cuda.is_available():
        print("bench_jagged_ops: needs a CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    common = run_meta(sha=args.git_sha)
    out_path = args.out or results_path(SUITE)
    ceil = ceilings(args.warmup, args.rep)
    print(
        f"ceilings on {common['device']}: " + ", ".join(f"{k}={v:.1f}" for k, v in ceil.items()),
        flush=True,
    )
    rows = [{**common, "suite": SUITE, "op": "ceiling", "provider": k, "mode": "fwd", "x_name": "-",
             "x_value": "-", "ms_p50": "", "ms_p20": "", "ms_p80": "", "peak_mib": "",
             "config_json": json.dumps({"value": round(v, 2)})} for k, v in ceil.items()]  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    table = []
    checks_enabled(False)  # hot-loop setting for all timings (see the module docstring)
    for op, b, n, d, fill, dtype in grid(args.quick):
        if args.ops and op not in args.ops:
            continue
        case = Case(op, b, n, d, fill, dtype, gen)
        prov, nbytes, flops = build(case)
        err = check(case, prov)
        fwd_triton = prov["triton"][0]

        def triton_checked(fwd_triton=fwd_triton):
            with checks_enabled(True):
                return fwd_triton()

        prov["triton+checks"] = (triton_checked, [])
        dname = str(dtype).split(".")[-1]
        res = {}
        for mode in ("fwd", "fwd+bwd"):
            for name, (fn, inputs) in prov.items():
                if mode == "fwd+bwd" and (name == "nested" or not inputs):
                    continue
                try:
                    run = fn if mode == "fwd" else with_backward(fn, inputs)
                    (p50, p20, p80), peak = timeit(run, args.warmup, args.rep)
                except Exception as exc:  # a peer without this op/mode (e.g. NJT): record and go on
                    print(
                        f"skip {op} {name} {mode}: {type(exc).__name__}: {str(exc)[:120]}",
                        flush=True,
                    )
                    continue
                factor = 1 if mode == "fwd" else 3
                cfg = {"B": b, "N": n, "D": d, "dtype": dname, **case.stats, "rel_err_vs_ref": err}
                if flops:
                    cfg["tflops"] = round(factor * flops / p50 / 1e9, 2)
                    cfg["pct_of_mm"] = round(100 * cfg["tflops"] / ceil[f"mm_tflops_{dname}"], 1)
                elif mode == "fwd":
                    cfg["gbps"] = round(nbytes / p50 / 1e6, 1)
                    cfg["pct_of_copy_bw"] = round(100 * cfg["gbps"] / ceil["copy_gbps"], 1)
                rows.append({**common, "suite": SUITE, "op": op, "provider": name, "mode": mode,
                             "x_name": "fill", "x_value": fill, "ms_p50": round(p50, 4),
                             "ms_p20": round(p20, 4), "ms_p80": round(p80, 4),
                             "peak_mib": round(peak, 1), "config_json": json.dumps(cfg)})  # fmt: skip
                res[(mode, name)] = (p50, peak, cfg)
                if name in ("triton", "padded"):
                    try:
                        g50 = do_bench_cudagraph(run, rep=args.rep, return_mode="median")
                    except Exception as exc:
                        print(
                            f"skip graph {op} {name} {mode}: {type(exc).__name__}: {str(exc)[:120]}",
                            flush=True,
                        )
                        continue
                    gcfg = dict(cfg)
                    if "gbps" in cfg:
                        gcfg["gbps"] = round(nbytes / g50 / 1e6, 1)
                        gcfg["pct_of_copy_bw"] = round(100 * gcfg["gbps"] / ceil["copy_gbps"], 1)
                    if "tflops" in cfg:
                        gcfg["tflops"] = round(factor * flops / g50 / 1e9, 2)
                        gcfg["pct_of_mm"] = round(
                            100 * gcfg["tflops"] / ceil[f"mm_tflops_{dname}"], 1
                        )
                    rows.append({**common, "suite": SUITE, "op": op, "provider": f"{name}/graph",
                                 "mode": mode, "x_name": "fill", "x_value": fill,
                                 "ms_p50": round(g50, 4), "ms_p20": "", "ms_p80": "",
                                 "peak_mib": "", "config_json": json.dumps(gcfg)})  # fmt: skip
                    res[(mode, f"{name}/graph")] = (g50, None, gcfg)
        for mode in ("fwd", "fwd+bwd"):
            if (mode, "triton") not in res:
                continue
            tri, tri_peak, cfg = res[(mode, "triton")]
            pad = res.get((mode, "padded"))
            refr = res.get((mode, "reference"))
            nst = res.get((mode, "nested"))
            chk = res.get((mode, "triton+checks"))
            tg = res.get((mode, "triton/graph"))
            pg = res.get((mode, "padded/graph"))

            def fmt_rate(c):
                if c is None:
                    return "-"
                if "tflops" in c:
                    return f"{c['tflops']} TF/s ({c['pct_of_mm']}%)"
                return f"{c['gbps']} GB/s ({c['pct_of_copy_bw']}%)" if "gbps" in c else "-"

            rate = fmt_rate(cfg)
            grate = fmt_rate(tg[2] if tg else None)
            table.append([op, dname, f"{b}x{n}x{d}", fill, cfg["mean_fill"], mode, f"{tri:.3f}",
                          f"{pad[0]:.3f}" if pad else "-", f"{pad[0] / tri:.2f}x" if pad else "-",
                          f"{0.8 / fill:.1f}x", f"{refr[0] / tri:.2f}x" if refr else "-",
                          f"{nst[0] / tri:.2f}x" if nst else "-",
                          f"{chk[0]:.3f}" if chk else "-",
                          f"{tg[0]:.3f}" if tg else "-", f"{pg[0]:.3f}" if pg else "-",
                          f"{pg[0] / tg[0]:.2f}x" if (tg and pg) else "-", f"{tri_peak:.0f}",
                          f"{pad[1]:.0f}" if pad else "-", rate, grate, f"{err:.1e}"])  # fmt: skip
        print(f"done {op} {dname} B={b} N={n} D={d} fill={fill} err={err:.1e}", flush=True)
        del case, prov
        torch.cuda.empty_cache()
    append_rows(out_path, rows)
    head = ["op", "dtype", "BxNxD", "fill", "real fill", "mode", "triton ms", "padded ms",
            "vs padded", "target", "vs reference", "vs nested", "with checks ms", "graph triton ms",
            "graph padded ms", "graph vs padded", "triton MiB", "padded MiB",
            "triton rate (% of ceiling)", "graph triton rate", "rel err"]  # fmt: skip
    print(f"\nwrote {len(rows)} rows to {out_path}")
    print(f"\n{common['device']}, torch {common['torch']}, triton {common['triton']}; ceilings: "
          + ", ".join(f"{k} {v:.0f}" for k, v in ceil.items()) + "\n")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in table:
        print("| " + " | ".join(str(x) for x in r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
