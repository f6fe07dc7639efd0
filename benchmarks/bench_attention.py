"""Benchmark jagged flash attention against every variable-length attention in PyTorch (GPU).

Providers, in one process on the same bf16 inputs:
  shopml            shopml.jagged.attention.jagged_flash_attention (its default routing: on sm_90
                    the Gluon kernels where they measured faster, else Triton; the environment's
                    SHOPML_ATTN_GLUON if set)
  shopml_order      the same with the longest-first batch ordering switched on
  shopml_triton     the same with SHOPML_ATTN_GLUON=0: the Triton kernels only (the fallback)
  fbgemm_compat     shopml's FBGEMM-semantics path (multi_head_jagged_flash_attention, (H, T, D))
  varlen            torch.nn.attention.varlen.varlen_attn (FlashAttention-2 varlen)
  flex              compiled FlexAttention on the packed batch with a document mask; the mask
                    build time is reported as its own mode ("mask")
  sdpa_flash_pad    SDPA flash on padded (B, H, N, D) tensors, no mask (the paper's dense flash)
  sdpa_mask_pad     SDPA with a key padding mask (memory-efficient kernel)
  nested            nested-tensor (jagged layout) SDPA
  dense             padded matmul + mask + softmax + matmul (skipped where scores exceed memory)

Lengths ~ Exponential(mean = fill * N) clamped to [1, N] (seeded); every row records the real
mean fill, p50 and p99. FLOPs come from the real lengths (4 * sum L^2 * H * D forward, 2.5x that
backward, halved when causal). Timing: triton.testing.do_bench medians (p20/p80 too); memory:
peak allocated above the inputs for one forward+backward.

Usage (GPU machine): PYTHONPATH=src python3 benchmarks/bench_attention.py --grid quick --out x.csv
Imports only torch, triton and shopml.jagged (no typer/rich). Prints a Markdown table last.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import inspect
import json
import math
import os
import statistics
import sys
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from _results import append_rows, results_path, run_meta

ALL_PROVIDERS = [
    "shopml", "shopml_order", "shopml_triton", "fbgemm_compat", "varlen", "flex", "sdpa_flash_pad",
    "sdpa_mask_pad", "nested", "dense",
]  # fmt: skip


def grid(name: str) -> list[dict]:
    """Cases: dicts with B, N, fill, H, D, causal, tag."""
    cases = []
    if name in ("issue", "full"):
        for b in (256, 1024):
            for n in (256, 1024, 4096):
                for fill in (0.1, 0.25, 0.5, 1.0):
                    for h in (2, 4):
                        for d in (64, 128):
                            cases.append(
                                dict(B=b, N=n, fill=fill, H=h, D=d, causal=False, tag="grid")
                            )
    if name in ("extra", "full"):
        cases.append(dict(B=1024, N=1000, fill=0.5, H=4, D=128, causal=False, tag="ads"))
        for n in (256, 512, 1024, 2048, 4096):
            cases.append(dict(B=512, N=n, fill=0.5, H=4, D=128, causal=True, tag="hstu"))
    if name == "quick":
        cases = [
            dict(B=1024, N=256, fill=0.25, H=2, D=64, causal=False, tag="grid"),
            dict(B=1024, N=1024, fill=0.25, H=2, D=64, causal=False, tag="grid"),
            dict(B=1024, N=1024, fill=0.25, H=4, D=128, causal=False, tag="grid"),
            dict(B=256, N=4096, fill=0.25, H=2, D=64, causal=False, tag="grid"),
            dict(B=1024, N=1000, fill=0.5, H=4, D=128, causal=False, tag="ads"),
            dict(B=512, N=1024, fill=0.5, H=4, D=128, causal=True, tag="hstu"),
        ]
    if name == "final":  # what benchmarks/README.md reports: the sample below, then ads and HSTU
        return grid("sample") + grid("extra")
    if name == "sample":  # a representative subset of the issue grid (every N, fill, H and D)
        for b, n, fill, h, d in [
            (1024, 256, 0.1, 2, 64), (1024, 256, 0.25, 2, 64), (1024, 256, 0.5, 4, 128),
            (1024, 256, 1.0, 2, 64), (256, 256, 0.25, 4, 128),
            (1024, 1024, 0.1, 4, 128), (1024, 1024, 0.25, 2, 64), (1024, 1024, 0.25, 4, 128),
            (1024, 1024, 0.5, 2, 128), (1024, 1024, 1.0, 4, 64), (256, 1024, 0.25, 2, 64),
            (256, 4096, 0.1, 2, 64), (256, 4096, 0.25, 2, 64), (256, 4096, 0.5, 4, 128),
            (256, 4096, 1.0, 2, 128), (1024, 4096, 0.25, 4, 64),
        ]:  # fmt: skip
            cases.append(dict(B=b, N=n, fill=fill, H=h, D=d, causal=False, tag="grid"))
    return cases


def sample_lengths(batch: int, n: int, fill: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.empty(batch).exponential_(1.0 / (fill * n), generator=gen)
    return lengths.ceil().clamp(1, n).long()


def bench(fn, quick: bool = False, grad_to_none=None) -> tuple[float, float, float]:
    from triton.testing import do_bench

    q = do_bench(
        fn,
        warmup=10 if quick else 25,
        rep=30 if quick else 80,
        quantiles=[0.5, 0.2, 0.8],
        grad_to_none=grad_to_none,
    )
    return float(q[0]), float(q[1]), float(q[2])


def peak_mib(fn) -> float:
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


class Case:
    """Inputs of one case in every layout the providers need (built once, outside timing)."""

    def __init__(self, cfg: dict, seed: int) -> None:
        self.cfg = cfg
        b, n, h, d = cfg["B"], cfg["N"], cfg["H"], cfg["D"]
        self.lengths = sample_lengths(b, n, cfg["fill"], seed)
        self.max_len = int(self.lengths.max())
        lengths = self.lengths.cuda()
        self.offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        self.cu32 = self.offsets.to(torch.int32)
        total = int(self.lengths.sum())
        self.total = total
        gen = torch.Generator(device="cuda").manual_seed(seed)
        mk = lambda: torch.randn(total, h, d, device="cuda", dtype=torch.bfloat16, generator=gen)
        self.q, self.k, self.v = mk(), mk(), mk()
        self.grad = mk()
        pos = torch.arange(n, device="cuda")
        self.valid = pos[None, :] < lengths[:, None]  # (B, N)
        self.index = torch.where(self.valid, self.offsets[:-1, None] + pos[None, :], 0)
        sq = (self.lengths.double() ** 2).sum().item()
        mult = 0.5 if cfg["causal"] else 1.0
        self.flops_fwd = 4.0 * sq * h * d * mult
        lf = self.lengths.float()
        self.stats = dict(
            flops_fwd=self.flops_fwd,
            mean_fill=round(float(lf.mean()) / n, 4),
            p50=int(lf.median()),
            p99=int(torch.quantile(lf, 0.99)),
            T=total,
        )

    def padded(self, t: torch.Tensor) -> torch.Tensor:
        """(T, H, D) -> (B, H, N, D) zero-padded."""
        out = t[self.index] * self.valid[:, :, None, None]
        return out.transpose(1, 2).contiguous()


def _leaf(*ts):
    return [t.detach().clone().requires_grad_() for t in ts]


def switch(name: str, value: str | None) -> None:
    """Set (or, with None, unset) an attention switch (``SHOPML_ATTN_*``) for this process's
    next calls: the attention reads its switches once, until told to read them again."""
    from shopml.jagged.triton.attention_common import reread_settings

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    reread_settings()


@contextlib.contextmanager
def _switches(prov: str) -> Iterator[None]:
    """The attention's switches as provider ``prov`` runs it (``shopml_order``: the longest-first
    order; ``shopml_triton``: ``SHOPML_ATTN_GLUON=0``; else the environment's routing); the
    environment's back on exit."""
    saved = {n: os.environ.get(n) for n in ("SHOPML_ATTN_ORDER", "SHOPML_ATTN_GLUON")}
    switch("SHOPML_ATTN_ORDER", "1" if prov == "shopml_order" else "0")
    if prov == "shopml_triton":
        switch("SHOPML_ATTN_GLUON", "0")
    try:
        yield
    finally:
        for name, value in saved.items():
            switch(name, value)


def make_provider(name: str, case: Case):
    """Returns (fwd_fn, inputs) where fwd_fn() -> output tensor, or None if not applicable."""
    cfg = case.cfg
    n, h, d, causal = cfg["N"], cfg["H"], cfg["D"], cfg["causal"]
    if name in ("shopml", "shopml_order", "shopml_triton"):
        from shopml.jagged.attention import jagged_flash_attention

        q, k, v = _leaf(case.q, case.k, case.v)
        fn = lambda: jagged_flash_attention(
            q, k, v, case.offsets, n, causal=causal, backend="triton"
        )
        return fn, (q, k, v), case.grad
    if name == "fbgemm_compat":
        if causal:
            return None
        from shopml.jagged.fbgemm_compat import multi_head_jagged_flash_attention

        q, k, v = _leaf(*(t.permute(1, 0, 2) for t in (case.q, case.k, case.v)))  # (H, T, D)
        fn = lambda: multi_head_jagged_flash_attention(q, k, v, case.offsets, n)
        return fn, (q, k, v), case.grad.permute(1, 0, 2)
    if name == "varlen":
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:
            return None
        params = inspect.signature(varlen_attn).parameters
        kw = {}
        if causal:
            kw = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
        q, k, v = _leaf(case.q, case.k, case.v)
        fn = lambda: varlen_attn(q, k, v, case.cu32, case.cu32, case.max_len, case.max_len, **kw)
        return fn, (q, k, v), case.grad
    if name in ("sdpa_flash_pad", "sdpa_mask_pad", "dense"):
        if name == "dense" and cfg["B"] * h * n * n * 2 * 5 > 40e9:
            return None
        q, k, v = _leaf(case.padded(case.q), case.padded(case.k), case.padded(case.v))
        grad = case.padded(case.grad)
        if name == "sdpa_flash_pad":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def fn():
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            return fn, (q, k, v), grad
        mask = case.valid[:, None, None, :]  # (B, 1, 1, N)
        if causal:
            tri = torch.ones(n, n, dtype=torch.bool, device="cuda").tril()
            mask = mask & tri
        if name == "sdpa_mask_pad":
            fn = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return fn, (q, k, v), grad

        def dense():
            s = torch.matmul(q, k.transpose(-1, -2)) * d**-0.5
            s = s.masked_fill(~mask, float("-inf"))
            p = torch.softmax(s.float(), dim=-1).to(q.dtype)
            return torch.matmul(p, v)

        return dense, (q, k, v), grad
    if name == "nested":
        if causal:
            return None
        qv, kv, vv = _leaf(*(t.reshape(case.total, h * d) for t in (case.q, case.k, case.v)))

        def fn():
            nts = [
                torch.nested.nested_tensor_from_jagged(t, case.offsets, max_seqlen=case.max_len)
                .unflatten(-1, (h, d))
                .transpose(1, 2)
                for t in (qv, kv, vv)
            ]
            out = F.scaled_dot_product_attention(*nts)
            return out.transpose(1, 2).values()

        return fn, (qv, kv, vv), case.grad
    raise ValueError(f"provider: unknown {name!r}")


_FLEX = {}


def flex_provider(case: Case):
    """Compiled FlexAttention, packed batch of one sequence of T (padded to 128) with doc mask."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if "fn" not in _FLEX:
        _FLEX["fn"] = torch.compile(flex_attention, dynamic=False)
    cfg = case.cfg
    h, d, causal = cfg["H"], cfg["D"], cfg["causal"]
    total = case.total
    padded_t = math.ceil(total / 128) * 128
    doc = torch.full((padded_t,), -1, device="cuda", dtype=torch.int32)
    doc[:total] = torch.repeat_interleave(
        torch.arange(cfg["B"], device="cuda", dtype=torch.int32), case.lengths.cuda()
    )

    def mask_mod(b, hh, q_idx, kv_idx):
        same = doc[q_idx] == doc[kv_idx]
        if causal:
            return same & (kv_idx <= q_idx)
        return same

    build = lambda: create_block_mask(
        mask_mod, 1, None, padded_t, padded_t, device="cuda", _compile=True
    )
    block_mask = build()

    def pack(t):
        out = torch.zeros(padded_t, h, d, device="cuda", dtype=t.dtype)
        out[:total] = t
        return out.transpose(0, 1)[None].contiguous()  # (1, H, T', D)

    q, k, v = _leaf(pack(case.q), pack(case.k), pack(case.v))
    grad = pack(case.grad)
    fn = lambda: _FLEX["fn"](q, k, v, block_mask=block_mask)
    return fn, (q, k, v), grad, build


def check_against(case: Case, fast, ref_fn) -> dict:
    """Max abs error of output and grads of `fast` vs a reference provider (both bf16)."""
    f_fn, f_in, f_grad = fast
    r_fn, r_in, r_grad = ref_fn
    fo = f_fn()
    ro = r_fn()
    fg = torch.autograd.grad(fo, f_in, f_grad)
    rg = torch.autograd.grad(ro, r_in, r_grad)
    errs = {"out": (fo.float() - ro.float()).abs().max().item()}
    for name, a, b in zip(("dq", "dk", "dv"), fg, rg, strict=True):
        errs[name] = (a.float() - b.float()).abs().max().item() / max(
            b.float().abs().max().item(), 1e-6
        )
    return {k: float(f"{v:.3g}") for k, v in errs.items()}


def bench_graph(fn) -> tuple[float, float, float]:
    """Device time of `fn` replayed from a CUDA graph (no host overhead, no L2 flush)."""
    from triton.testing import do_bench_cudagraph

    q = do_bench_cudagraph(fn, rep=30, quantiles=[0.5, 0.2, 0.8])
    return float(q[0]), float(q[1]), float(q[2])


GRAPH_PROVIDERS = ("shopml", "varlen", "fbgemm_compat")


def time_provider(prov: str, case: Case, modes, quick: bool, graph: bool = False):
    """Timings {mode: (p50, p20, p80)} and fwd+bwd peak MiB of one provider, or None."""
    build = None
    if prov == "flex":
        if not case.cfg.get("flex"):
            return None
        fn, inputs, grad, build = flex_provider(case)
    else:
        made = make_provider(prov, case)
        if made is None:
            return None
        fn, inputs, grad = made
    out = fn()  # warm-up: compile / autotune forward and backward
    torch.autograd.grad(out, inputs, grad)
    timings = {}
    if "fwd" in modes:
        with torch.no_grad():
            timings["fwd"] = bench(fn, quick)
    del out
    # A training step's pattern: out.backward(grad) into .grad (reset to None before each call).
    # Not torch.autograd.grad: its Python wrapper leaves container objects that trigger CPython's
    # cyclic GC, which measured 60-400 us per call on small cases and no training step pays.
    if "bwd" in modes:
        kept = fn()
        timings["bwd"] = bench(
            lambda: kept.backward(grad, retain_graph=True), quick, grad_to_none=inputs
        )
        del kept
    fwd_bwd = lambda: fn().backward(grad)
    timings["fwd+bwd"] = bench(fwd_bwd, quick, grad_to_none=inputs)
    for t in inputs:
        t.grad = None
    peak = peak_mib(fwd_bwd)  # the gradients' memory counts, as autograd.grad's results did
    for t in inputs:
        t.grad = None
    if build is not None:
        timings["mask"] = bench(build, quick)
    if graph and prov in GRAPH_PROVIDERS:
        try:
            with torch.no_grad():
                timings["fwd:graph"] = bench_graph(fn)
            timings["fwd+bwd:graph"] = bench_graph(lambda: torch.autograd.grad(fn(), inputs, grad))
        except Exception as exc:  # capture can fail for a peer; reported, not fatal
            print(
                f"  {prov}: graph capture failed: {type(exc).__name__}: {exc}"[:200],
                file=sys.stderr,
            )
    return timings, peak


def select(
    name: str, skip: int = 0, only: str = "", only_small: bool = False, limit: int = 0
) -> list[tuple[int, dict]]:
    """The cases a run times, as (position in grid ``name``, case): from ``skip`` on, those named
    in ``only`` (comma-separated :func:`label` s; an unknown name is a ``ValueError`` naming it),
    with ``only_small`` those with N <= 1024 and B*N <= 2^18, the first ``limit`` (0: all). A
    case's lengths are drawn from its position, so a run that skips or picks cases times the very
    inputs of the whole grid's run."""
    cases = list(enumerate(grid(name)))[skip:]
    if only_small:
        cases = [(i, c) for i, c in cases if c["N"] <= 1024 and c["B"] * c["N"] <= 2**18]
    if only:
        wanted = set(only.split(","))
        unknown = wanted - {label(c) for _, c in cases}
        if unknown:
            raise ValueError(f"--only: no case {sorted(unknown)} in --grid {name}")
        cases = [(i, c) for i, c in cases if label(c) in wanted]
    return cases[:limit] if limit else cases


def label(cfg: dict) -> str:
    """A case's name in the CSV's x_value column and for ``--only``: ``B256-N1024-f0.5-H4-D128``
    (``-causal`` appended for causal cases)."""
    name = f"B{cfg['B']}-N{cfg['N']}-f{cfg['fill']}-H{cfg['H']}-D{cfg['D']}"
    return name + ("-causal" if cfg["causal"] else "")


def run_case(
    case: Case, providers, modes, out_path, meta, quick, graph=False, rounds: int = 1
) -> dict:
    """Times every provider on one case and appends its rows; returns {provider: {mode: ms}}.

    With ``rounds > 1`` the providers are timed in turn, round after round, each round starting
    one provider later (shopml, varlen; varlen, shopml; ...), and each mode's p50/p20/p80 is the
    median over the rounds: a host-bound case then sees every provider in the same stretches of a
    noisy host, not minutes apart, and no provider always in the same place of the round.
    """
    cfg = case.cfg
    results: dict[str, dict] = {}
    x_value = label(cfg)
    measured: dict[str, list[tuple[dict, float]]] = {}
    for r in range(rounds):
        for prov in providers[r % len(providers) :] + providers[: r % len(providers)]:
            if prov in results:  # failed in an earlier round
                continue
            try:
                with _switches(prov):
                    got = time_provider(prov, case, modes, quick, graph)
            except torch.OutOfMemoryError:
                results[prov] = {"oom": True}
                print(f"  {prov}: out of memory", file=sys.stderr)
                got = None
            except Exception as exc:  # a peer failing must not stop the run; it is reported
                results[prov] = {"error": f"{type(exc).__name__}: {exc}"[:160]}
                print(f"  {prov}: {results[prov]['error']}", file=sys.stderr)
                got = None
            gc.collect()
            torch.cuda.empty_cache()
            if got is not None:
                measured.setdefault(prov, []).append(got)
    for prov, runs in measured.items():
        if prov in results:  # a later round failed: report the failure, not a partial median
            continue
        timings = {
            mode: tuple(statistics.median([t[mode][i] for t, _ in runs]) for i in range(3))
            for mode in runs[0][0]
        }
        peak = max(p for _, p in runs)
        rows = []
        for mode, (p50, p20, p80) in timings.items():
            base_mode = mode.split(":")[0]
            flops = case.flops_fwd * {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}.get(base_mode, 0.0)
            tflops = flops / (p50 * 1e-3) / 1e12 if flops else 0.0
            cfg_json = json.dumps(
                {**cfg, **case.stats, "tflops": round(tflops, 1), "rounds": len(runs)}
            )
            rows.append({
                "suite": "attention", "op": "jagged_attention", "provider": prov, "mode": mode,
                "x_name": "case", "x_value": x_value, "ms_p50": f"{p50:.4f}", "ms_p20": f"{p20:.4f}",
                "ms_p80": f"{p80:.4f}", "peak_mib": f"{peak:.1f}" if mode == "fwd+bwd" else "",
                "config_json": cfg_json,
            })  # fmt: skip
        append_rows(out_path, rows, meta)
        results[prov] = {m: t[0] for m, t in timings.items()} | {"peak": peak}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--grid", default="quick", choices=["quick", "sample", "issue", "extra", "full", "final"]
    )
    ap.add_argument("--providers", default=",".join(ALL_PROVIDERS))
    ap.add_argument("--modes", default="fwd,bwd,fwd+bwd")
    ap.add_argument("--flex-cases", type=int, default=3, help="run flex on the first K cases only")
    ap.add_argument("--limit", type=int, default=0, help="only the first K cases (0: all)")
    ap.add_argument("--skip", type=int, default=0, help="skip the first K cases")
    ap.add_argument("--check", action="store_true", help="check shopml against varlen_attn")
    ap.add_argument("--quick-timing", action="store_true", help="shorter do_bench windows")
    ap.add_argument(
        "--rounds", type=int, default=1,
        help="time the providers in turn R times per case; report the median of the rounds",
    )  # fmt: skip
    ap.add_argument(
        "--graph", action="store_true", help="also time CUDA-graph replays (device time)"
    )
    ap.add_argument(
        "--only-small", action="store_true", help="only cases with N <= 1024 and B*N <= 2^18"
    )
    ap.add_argument(
        "--only", default="", help="only these cases, by name (B256-N1024-f0.5-H4-D128,...)"
    )
    ap.add_argument("--out", default="")
    ap.add_argument("--report", default="", help="print the Markdown report of a results CSV")
    args = ap.parse_args()
    if args.report:
        report(args.report)
        return

    from shopml.jagged import checks_enabled

    checks_enabled(False)  # hot loop: inputs are valid by construction; no device syncs
    try:  # compiled FlexAttention's backward donates buffers, which forbids retain_graph (bwd mode)
        import torch._functorch.config as functorch_config

        functorch_config.donated_buffer = False
    except (ImportError, AttributeError):
        pass
    torch.backends.cuda.matmul.allow_tf32 = True

    if args.rounds < 1:
        ap.error(f"--rounds: expected a count >= 1, found {args.rounds}")
    meta = run_meta()
    out_path = args.out or results_path("attention")
    providers = [p for p in args.providers.split(",") if p]
    modes = args.modes.split(",")
    try:
        cases = select(args.grid, args.skip, args.only, args.only_small, args.limit)
    except ValueError as exc:
        ap.error(str(exc))
    for idx, (position, cfg) in enumerate(cases):
        cfg = dict(cfg, flex=idx < args.flex_cases)
        case = Case(cfg, seed=1000 + position)
        print(f"[{idx + 1}/{len(cases)}] {cfg} {case.stats}", flush=True)
        if args.check:  # each of our providers in the run, under its own routing
            for prov in [p for p in ("shopml", "shopml_triton") if p in providers] or ["shopml"]:
                try:
                    with _switches(prov):
                        check = check_against(
                            case, make_provider(prov, case), make_provider("varlen", case)
                        )
                except Exception as exc:
                    check = {"error": str(exc)[:120]}
                print(f"  check {prov} vs varlen_attn: {check}", flush=True)
        res = run_case(
            case, providers, modes, out_path, meta, args.quick_timing, args.graph, args.rounds
        )
        s, vl = res.get("shopml", {}), res.get("varlen", {})
        if "fwd+bwd" in s and "fwd+bwd" in vl:
            print(f"  shopml {s['fwd+bwd']:.3f} ms, varlen {vl['fwd+bwd']:.3f} ms, "
                  f"x{vl['fwd+bwd'] / s['fwd+bwd']:.2f}; peak {s['peak']:.0f} vs {vl['peak']:.0f} MiB", flush=True)  # fmt: skip
        del case
        gc.collect()
        torch.cuda.empty_cache()
    report(out_path, timestamp=meta["timestamp"])


def report(path: str, timestamp: str | None = None) -> None:
    """Markdown tables from a results CSV: fwd+bwd (and fwd) ms per provider, ratios, memory.

    ``timestamp``: only the rows of the run that started then (the CSV may hold several runs).
    """
    rows = list(csv.DictReader(open(path)))  # noqa: SIM115
    if timestamp is not None:
        rows = [r for r in rows if r["timestamp"] == timestamp]
    cases: dict[str, dict] = {}
    for r in rows:
        c = cases.setdefault(
            r["x_value"], {"cfg": json.loads(r["config_json"]), "t": {}, "mem": {}}
        )
        c["t"][(r["provider"], r["mode"])] = float(r["ms_p50"])
        if r["peak_mib"]:
            c["mem"][r["provider"]] = float(r["peak_mib"])
    device = rows[0]["device"] if rows else "?"
    present = {r["provider"] for r in rows}
    order = ["varlen", "flex", "sdpa_flash_pad", "sdpa_mask_pad", "nested", "dense"]
    order += ["fbgemm_compat", "shopml_order", "shopml_triton"]
    peers = [p for p in order if p in present]
    for mode in ("fwd+bwd", "fwd"):
        print(
            f"\n#### {mode}, bf16, ms (p50); `xR` = peer time / shopml time (> 1: shopml faster); {device}\n"
        )
        print("| case | mean fill | p50/p99 len | shopml | TFLOP/s | " + " | ".join(peers) + " |")
        print("|---" * (len(peers) + 5) + "|")
        gm: dict[str, list[float]] = {p: [] for p in peers}
        gm_grid: dict[str, list[float]] = {p: [] for p in peers}  # the grid only
        for c in cases.values():
            cfg, t = c["cfg"], c["t"]
            s_t = t.get(("shopml", mode))
            if s_t is None:
                continue
            cells = []
            for p in peers:
                pt = t.get((p, mode))
                if pt is None:
                    cells.append("-")
                    continue
                if p == "flex" and ("flex", "mask") in t:
                    total = pt + t[("flex", "mask")]
                    cells.append(f"{pt:.3f} (+{t[('flex', 'mask')]:.2f} mask) x{total / s_t:.2f}")
                    ratio = total / s_t
                else:
                    cells.append(f"{pt:.3f} x{pt / s_t:.2f}")
                    ratio = pt / s_t
                gm[p].append(ratio)
                if cfg["tag"] == "grid":
                    gm_grid[p].append(ratio)
            lens = f"{cfg['p50']}/{cfg['p99']}"
            label = f"{cfg['tag']} B{cfg['B']} N{cfg['N']} H{cfg['H']} D{cfg['D']}" + (
                " causal" if cfg["causal"] else ""
            )
            tf = _tflops(c, mode)
            print(
                f"| {label} | {cfg['mean_fill']} | {lens} | {s_t:.3f} | {tf:.0f} | "
                + " | ".join(cells)
                + " |"
            )
        for label, groups in (("all cases", gm), ("issue grid only", gm_grid)):
            print(f"\n{label}: " + ", ".join(
                f"{p}: geomean x{_geomean(v):.3f} (min x{min(v):.2f}, n={len(v)}, "
                f"{sum(x > 1 for x in v)} faster, {sum(x < 0.9 for x in v)} below x0.9)"
                for p, v in groups.items() if v
            ))  # fmt: skip
    graph_rows = [(n, c) for n, c in cases.items() if ("shopml", "fwd+bwd:graph") in c["t"]]
    if graph_rows:
        print(f"\n#### CUDA-graph replay (device time, no host overhead), ms; {device}\n")
        print("| case | shopml fwd | varlen fwd | shopml fwd+bwd | varlen fwd+bwd | x (fwd+bwd) |")
        print("|---|---|---|---|---|---|")
        for name, c in graph_rows:
            t = c["t"]
            sf, vf = t.get(("shopml", "fwd:graph")), t.get(("varlen", "fwd:graph"))
            sb, vb = t.get(("shopml", "fwd+bwd:graph")), t.get(("varlen", "fwd+bwd:graph"))
            fmt = lambda x: "-" if x is None else f"{x:.3f}"
            ratio = f"x{vb / sb:.2f}" if sb and vb else "-"
            print(f"| {name} | {fmt(sf)} | {fmt(vf)} | {fmt(sb)} | {fmt(vb)} | {ratio} |")
        for mode in ("fwd", "fwd+bwd"):
            key_s, key_v = ("shopml", f"{mode}:graph"), ("varlen", f"{mode}:graph")
            ratios = [c["t"][key_v] / c["t"][key_s] for _, c in graph_rows
                      if key_s in c["t"] and key_v in c["t"]]  # fmt: skip
            if ratios:
                print(f"\ngraph {mode}: varlen / shopml geomean x{_geomean(ratios):.3f} "
                      f"(min x{min(ratios):.2f}, n={len(ratios)}, {sum(x < 1 for x in ratios)} "
                      "below x1.0)")  # fmt: skip
    print(f"\n#### peak memory of one fwd+bwd above the inputs, MiB; {device}\n")
    mem_peers = ["shopml", *[p for p in peers if p != "fbgemm_compat"]]
    print("| case | " + " | ".join(mem_peers) + " |")
    print("|---" * (len(mem_peers) + 1) + "|")
    for name, c in cases.items():
        m = c["mem"]
        s_m = m.get("shopml")
        cells = [
            "-"
            if p not in m
            else f"{m[p]:.0f}" + (f" x{m[p] / s_m:.1f}" if s_m and p != "shopml" else "")
            for p in mem_peers
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values))


def _tflops(case: dict, mode: str) -> float:
    cfg = case["cfg"]
    t = case["t"].get(("shopml", mode))
    sq_flops = cfg.get("flops_fwd")
    if not t or not sq_flops:
        return 0.0
    return sq_flops * {"fwd": 1.0, "fwd+bwd": 3.5}[mode] / (t * 1e-3) / 1e12


if __name__ == "__main__":
    main()
