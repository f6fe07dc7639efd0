"""The Gluon prototypes (FA3's pipelines: the forward, attention_gluon.py; the backward,
attention_gluon_bwd.py) against the Triton kernels and varlen_attn; their compile-time counts
for sm_90.

Parts (``--parts``, in this order):
- ``compile``: compiles each Gluon configuration, non-causal and causal, for an sm_90 target
  (no GPU needed; the installed Triton) and prints registers, spills (the bundled ptxas,
  ``-v``), shared memory, wgmma and ``setmaxnreg`` counts in the PTX.
- ``bench`` (GPU): per case, ``jagged_flash_attention`` forward (no grad) through the Gluon
  kernel (``SHOPML_ATTN_GLUON=1``), the same through the Triton forward (the default path), the
  Gluon launcher's other configurations (``gluon_<name>``: the launcher called directly;
  ``pub_<name>``: the public call routed to it), and varlen_attn; outputs checked against each other
  first; providers alternate within each of ``--rounds`` rounds (``do_bench`` medians);
  ms and TFLOP/s from the real lengths; rows appended to ``$OUT/attention_gluon.csv`` (the
  schema of benchmarks/_results.py) and a Markdown table printed last.
- ``compile-bwd``: the same counts for the backward's configurations (default and
  ``--bwd-variants``), non-causal and causal.
- ``bench-bwd`` (GPU): per case, the backward alone (one forward's graph run again) and forward
  + backward of ``jagged_flash_attention`` through the Gluon kernels (switch on), through the
  Triton kernels, and of varlen_attn, and the Gluon backward's launcher variants (backward
  alone); dq, dk, dv checked against the Triton backward's first (and the switched-on call's
  Gluon backward launches counted: the switch forces it, causal or not); alternating
  rounds as ``bench``; TFLOP/s from 2.5 (backward) and 3.5 (both) times the forward's FLOPs, as
  FlashAttention counts them (causal: halved); rows into the same CSV.

Usage: PYTHONPATH=src python3 benchmarks/attention_gluon.py --parts compile,compile-bwd  # CPU
       PYTHONPATH=src SHOPML_GIT_SHA=<sha> python3 benchmarks/attention_gluon.py  # GPU
       PYTHONPATH=src python3 benchmarks/attention_gluon.py --parts bench-bwd     # GPU
       PYTHONPATH=src python3 benchmarks/attention_gluon.py --parts bench \
           --cases 512x1024x4x128x0.5xcausal --variants own1_bn64_s3_r128     # GPU, causal
       PYTHONPATH=src python3 benchmarks/attention_gluon.py --parts bench-bwd \
           --cases 256x4096x2x64x0.25xcausal --bwd-variants tma_1wg           # GPU, causal
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", "."))
CASES = [
    dict(B=64, N=2048, H=8, D=128, fill=1.0, causal=False, tag="full"),
    dict(B=1024, N=1024, H=2, D=64, fill=0.25, causal=False, tag="grid"),
    dict(B=256, N=4096, H=4, D=128, fill=0.25, causal=False, tag="grid"),
]
# Gluon launcher configurations timed beside the default, and their head dims:
# (BLOCK_N, STAGES, NUM_WG, PINGPONG, PERSISTENT, OWN_TILES, maxnreg)
VARIANTS = {
    "persistent": ((128, 2, 2, True, True, False, 168), (64, 128)),  # one program an SM
    "nopp": ((128, 2, 2, False, False, False, 168), (64, 128)),  # no ping-pong turns
    "1wg": ((128, 2, 1, False, False, False, 168), (64, 128)),  # one consumer warpgroup, 64 rows
    "1wg_r128": ((128, 2, 1, False, False, False, 128), (64,)),  # the same, 2 programs an SM
    "1wg_bn64_r128": ((64, 2, 1, False, False, False, 128), (64, 128)),  # 2 an SM at D=128
    "bn64": ((64, 3, 2, True, False, False, 168), (64, 128)),
    "bn64_s4": ((64, 4, 2, True, False, False, 168), (128,)),  # four slots (160 KiB at D=128)
    "bn128_s3": ((128, 3, 2, True, False, False, 168), (64, 128)),  # three 128-key slots (224 KiB)
    "pp_bn128": ((128, 2, 2, True, False, False, 168), (64,)),  # ping-pong, 128-key blocks
    "3wg": ((64, 3, 3, False, False, False, 128), (64,)),  # BLOCK_M = 192 (FA3's at D=64)
    "3wg_bn128": ((128, 2, 3, False, False, False, 128), (64,)),  # FA3's D=64 tile, 128 keys
    # own tiles: each consumer warpgroup its own 64-row tile (of any sample and head) and K/V
    # stream, the tiles of a program consecutive in the 64-row slot numbering
    "own2": ((128, 2, 2, True, False, True, 168), (64,)),  # two, ping-pong
    "own2_bn64": ((64, 3, 2, True, False, True, 168), (64,)),
    "own2_nopp": ((128, 2, 2, False, False, True, 168), (64,)),
    "own2_bn64_s2": ((64, 2, 2, True, False, True, 168), (64, 128)),  # fits D=128 (160 KiB)
    "own3": ((64, 3, 3, False, False, True, 128), (64,)),  # three, no turns
    "own1_r128": ((128, 2, 1, False, False, True, 128), (64,)),  # one, 2 programs an SM
    "own1_bn64_r80": ((64, 2, 1, False, False, True, 80), (64,)),  # one, 3 programs an SM
    "own1_bn64_s3_r80": ((64, 3, 1, False, False, True, 80), (64,)),
    "own1_bn64_r96": ((64, 2, 1, False, False, True, 96), (64,)),
    "own1_bn64_r128": ((64, 2, 1, False, False, True, 128), (64, 128)),  # 2 an SM at D=128
    "own1_bn64_s3_r128": ((64, 3, 1, False, False, True, 128), (128,)),
    # one warpgroup of its own tiles, persistent: as many programs as fit, each walking every
    # grid-size-th tile of the 64-row numbering (the next tile loaded while it ends the current)
    "own1_p_r128": ((64, 2, 1, False, True, True, 128), (64, 128)),
    "own1_p_s3_r128": ((64, 3, 1, False, True, True, 128), (64,)),
    "own1_p_r80": ((64, 2, 1, False, True, True, 80), (64,)),
}
# Gluon backward configurations beside the default, and their head dims:
# (BLOCK_M, STAGES, NUM_WG, SPLIT_DQ, maxnreg, DQ_TMA); BLOCK_N = 64 x NUM_WG
BWD_VARIANTS = {
    "1wg": ((64, 2, 1, False, 168, False), (64, 128)),  # one consumer warpgroup, 64 x 64
    "nosplit": ((64, 2, 2, False, 168, False), (64, 128)),  # each warpgroup adds a whole dQ_i
    "bm128": ((128, 2, 2, True, 168, False), (64,)),  # FA3's D=64 tiles (128 query rows)
    "s3": ((64, 3, 2, True, 168, False), (128,)),
    # dQ_i through shared memory and the copy engine's bulk reduction (FA3's dQ path)
    "tma": ((64, 2, 2, True, 168, True), (64, 128)),
    "tma_nosplit": ((64, 2, 2, False, 168, True), (64, 128)),
    "tma_1wg": ((64, 2, 1, False, 168, True), (64, 128)),
    "tma_s3": ((64, 3, 2, True, 168, True), (64,)),
    "tma_bm128": ((128, 2, 2, True, 168, True), (64,)),  # FA3's D=64 tiles, dQ by the copy engine
    "tma2": ((64, 2, 2, True, 168, 2), (64, 128)),  # two dQ_i buffers a warpgroup
    # (the occupancy configurations, maxnreg 80-128 for 2-3 programs an SM, are refused by the
    # launcher: non-finite dQ with many programs, session 15)
}


def parse_case(text: str) -> dict:
    """``BxNxHxDxFILL`` (e.g. ``1024x256x2x64x0.25``) -> a non-causal case; a trailing
    ``xcausal`` (``512x1024x4x128x0.5xcausal``) -> a causal (self-attention) one."""
    parts = text.split("x")
    causal = parts[-1] == "causal"
    try:
        b, n, h, d, fill = parts[:-1] if causal else parts
        return dict(B=int(b), N=int(n), H=int(h), D=int(d), fill=float(fill), causal=causal,
                    tag="causal" if causal else "case")  # fmt: skip
    except ValueError:
        raise SystemExit(
            f"--cases: expected BxNxHxDxFILL[xcausal] (1024x256x2x64x0.25), got {text!r}"
        ) from None


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------ compile
def _signature(fn, const: dict, d: int, rows: dict, dtype: str) -> tuple[dict, dict]:  # noqa: ANN001
    """Triton's compile signature of a Gluon attention kernel: descriptors of ``rows[name]`` x
    d tiles, fp32 statistics, the dtype's gradients, int64 offsets, 16-divisible tensor
    strides."""
    from triton.experimental.gluon import language as gl

    gl_dtype = gl.bfloat16 if dtype == "bf16" else gl.float16
    fp32 = ("lse_ptr", "delta_ptr", "dq_ptr")
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in const:
            sig[name] = "constexpr"
        elif name.endswith("_desc"):  # rows[name]: tile rows, or (rows, columns) of fp32
            r, c, el, gl_el = (*rows[name], "fp32", gl.float32) if isinstance(rows[name], tuple) \
                else (rows[name], d, dtype, gl_dtype)  # fmt: skip
            layout = gl.NVMMASharedLayout.get_default_for([r, c], gl_el)
            sig[name] = f"tensordesc<{el}[{r}, {c}],{layout!r}>"
        elif name.endswith("_ptr"):
            sig[name] = (
                "*fp32" if name in fp32
                else "*i64" if "offsets" in name
                else "*i32" if name == "tile_b_ptr"
                else f"*{dtype}"
            )  # fmt: skip
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in ("qk_scale", "post_scale", "scale", "log2_scale"):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
            if name.startswith("stride_") and not name.startswith(("stride_lse", "stride_delta")):
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, attrs


def _compile(
    fn, const: dict, rows: dict, d: int, maxnreg: int, dump: Path | None, stem: str
) -> str:  # noqa: ANN001
    """Compiles ``fn`` for sm_90 (bf16); the table cells: registers, spills (the bundled
    ptxas, ``-v``), shared memory, wgmma and ``setmaxnreg`` counts in the PTX, seconds."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    sig, attrs = _signature(fn, const, d, rows, "bf16")
    t0 = time.time()
    try:
        compiled = triton.compile(
            GluonASTSource(fn, sig, const, attrs), target=GPUTarget("cuda", 90, 32),
            options={"num_warps": 4, "maxnreg": maxnreg},
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - report and go on with the next configuration
        return f"FAILED: {type(exc).__name__}: {repr(exc.__cause__ or exc)[:300]} |"
    secs = time.time() - t0
    ptx = compiled.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.ptx"
        path.write_text(ptx)
        res = subprocess.run([str(ptxas), "-arch=sm_90a", "-v", str(path), "-o",
                              str(Path(tmp) / "k.o")], capture_output=True, text=True)  # fmt: skip
    regs = re.search(r"Used (\d+) registers", res.stderr)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", res.stderr)
    nreg = sorted(set(re.findall(r"setmaxnreg\.(\w+)\.sync\.aligned\.u32\s+(\d+)", ptx)))
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{stem}.ttgir").write_text(compiled.asm["ttgir"])
        (dump / f"{stem}.ptx").write_text(ptx)
    return (f"{regs.group(1) if regs else '?'} | "
            f"{spills.group(1) + '/' + spills.group(2) if spills else '?'} | "
            f"{compiled.metadata.shared} | {len(re.findall(r'wgmma.mma_async', ptx))} | "
            f"{' '.join(f'{a}{b}' for a, b in nreg)} | {secs:.1f} |")  # fmt: skip


def part_compile(dump: Path | None) -> None:
    import triton

    from shopml.jagged.triton import attention_gluon as glu

    print(f"\nTriton {triton.__version__}, sm_90, forward\n")
    print(
        "| D | BLOCK_N | stages | consumer WGs | ping-pong | persistent | own tiles | maxnreg "
        "| causal | registers | spill st/ld B | smem B | wgmma (PTX) | setmaxnreg | compile s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    configs = [(d, cfg) for d, cfg in glu.CONFIGS.items()]
    configs += [(d, cfg) for d in glu.CONFIGS for cfg, dims in VARIANTS.values() if d in dims]
    for d, (block_n, stages, num_wg, pingpong, persistent, own, maxnreg) in configs:
        for causal in (False, True):
            const = dict(HEAD_DIM=d, BLOCK_N=block_n, STAGES=stages, NUM_WG=num_wg,
                         PINGPONG=pingpong, PERSISTENT=persistent, OWN_TILES=own,
                         IS_CAUSAL=causal, CONSUMER_REGS=glu.consumer_regs(num_wg, maxnreg))  # fmt: skip
            rows = dict(q_desc=64, k_desc=block_n, v_desc=block_n)
            stem = (f"d{d}-bn{block_n}-s{stages}-wg{num_wg}-pp{int(pingpong)}-p{int(persistent)}"
                    f"-own{int(own)}-r{maxnreg}{'-causal' if causal else ''}")  # fmt: skip
            cells = _compile(glu._attn_fwd_gluon_kernel, const, rows, d, maxnreg, dump, stem)
            print(f"| {d} | {block_n} | {stages} | {num_wg} | {pingpong} | {persistent} | {own} "
                  f"| {maxnreg} | {causal} | {cells}")  # fmt: skip


def part_compile_bwd(dump: Path | None) -> None:
    import triton

    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb

    print(f"\nTriton {triton.__version__}, sm_90, backward\n")
    print(
        "| D | BLOCK_M | BLOCK_N | stages | consumer WGs | split dQ | dQ by TMA | maxnreg "
        "| causal | registers | spill st/ld B | smem B | wgmma (PTX) | setmaxnreg | compile s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    configs = [(d, cfg) for d, cfg in glb.CONFIGS.items()]
    configs += [(d, cfg) for d in glb.CONFIGS for cfg, dims in BWD_VARIANTS.values() if d in dims]
    for d, (block_m, stages, num_wg, split_dq, maxnreg, dq_tma) in configs:
        split_dq = split_dq and num_wg == 2
        for causal in (False, True):
            const = dict(HEAD_DIM=d, BLOCK_M=block_m, STAGES=stages, NUM_WG=num_wg,
                         SPLIT_DQ=split_dq, DQ_TMA=int(dq_tma),
                         CONSUMER_REGS=glu.consumer_regs(num_wg, maxnreg), IS_CAUSAL=causal)  # fmt: skip
            rows = dict(q_desc=block_m, do_desc=block_m, k_desc=64, v_desc=64,
                        dq_desc=(block_m, d // 2 if split_dq else d))  # fmt: skip
            stem = (f"bwd-d{d}-bm{block_m}-s{stages}-wg{num_wg}-sp{int(split_dq)}-r{maxnreg}"
                    f"-tma{int(dq_tma)}{'-causal' if causal else ''}")  # fmt: skip
            cells = _compile(glb._attn_bwd_gluon_kernel, const, rows, d, maxnreg, dump, stem)
            print(f"| {d} | {block_m} | {64 * num_wg} | {stages} | {num_wg} | {split_dq} "
                  f"| {dq_tma} | {maxnreg} | {causal} | {cells}")  # fmt: skip


# -------------------------------------------------------------------------------------- bench
def _providers(case, variants: list[str]) -> dict:  # noqa: ANN001
    """name -> forward function (no grad) on the case's inputs."""
    sys.path.insert(0, str(HERE))
    from bench_attention import make_provider

    from shopml.jagged.attention import jagged_flash_attention
    from shopml.jagged.triton import attention_gluon as glu

    n, causal = case.cfg["N"], case.cfg["causal"]
    scale = case.cfg["D"] ** -0.5
    public = lambda: jagged_flash_attention(  # noqa: E731
        case.q, case.k, case.v, case.offsets, n, causal=causal
    )
    provs = {"gluon": public, "triton": public}
    for name in variants:
        cfg, dims = VARIANTS[name]
        if case.cfg["D"] not in dims:
            continue
        provs[f"gluon_{name}"] = lambda cfg=cfg: glu._attn_fwd_gluon(
            case.q, case.k, case.v, case.offsets, case.offsets, n, n, scale, 1.0, config=cfg,
            causal=causal,
        )[0]  # fmt: skip

        def routed(cfg=cfg):  # the public call, routed to this configuration
            keep = glu.auto_config
            glu.auto_config = lambda *args, **kwargs: cfg
            try:
                return public()
            finally:
                glu.auto_config = keep

        provs[f"pub_{name}"] = routed
    made = make_provider("varlen", case)
    if made is not None:
        provs["varlen"] = made[0]
    return provs


def _routed(fn, bwd: bool = False) -> int:  # noqa: ANN001
    """Calls of the Gluon forward's launcher (``bwd``: the backward's) in one call of ``fn``
    with the switch on (1: routed)."""
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb

    mod, name = (glb, "_attn_bwd_gluon") if bwd else (glu, "_attn_fwd_gluon")
    calls, original = [], getattr(mod, name)

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return original(*args, **kwargs)

    setattr(mod, name, counted)
    try:
        _activate("gluon")
        fn()
    finally:
        setattr(mod, name, original)
    return len(calls)


def _activate(name: str) -> None:
    from bench_attention import switch

    switch("SHOPML_ATTN_GLUON", "1" if name == "gluon" or name.startswith("pub_") else "0")


def part_bench(rounds: int, variants: list[str], cases: list[dict]) -> None:
    import torch
    from _results import append_rows, run_meta
    from attention_hopper import make_case
    from triton.testing import do_bench

    meta = run_meta()
    summary, checks = [], []
    for cfg in cases:
        case = make_case(cfg)
        provs = _providers(case, variants)
        outs = {}
        with torch.no_grad():
            for p, fn in provs.items():  # compile, check
                _activate(p)
                outs[p] = fn().float()
                torch.cuda.synchronize()
        errs = {p: (o - outs["triton"]).abs().max().item() for p, o in outs.items()}
        scale = outs["triton"].abs().max().item()
        checks.append(dict(cfg, max_abs_vs_triton=errs, triton_max_abs=scale,
                           gluon_launches=_routed(provs["gluon"])))  # fmt: skip
        log(f"check {cfg}: max |x - triton| {errs} (triton max |out| {scale:.3f})")
        (OUT / "attention_gluon_check.json").write_text(json.dumps(checks, indent=1))
        times = {p: [] for p in provs}
        with torch.no_grad():
            for _ in range(rounds):
                for p, fn in provs.items():
                    _activate(p)
                    times[p].append(do_bench(fn, warmup=10, rep=40, return_mode="median"))
        rows = []
        label = f"{cfg['tag']} B{cfg['B']} N{cfg['N']} H{cfg['H']} D{cfg['D']}"
        for p, vals in times.items():  # (causal: FLOPs halved, as FlashAttention counts them)
            ms = statistics.median(vals)
            tflops = case.flops_fwd / (ms * 1e-3) / 1e12
            rows.append(dict(
                suite="attention_gluon", op="jagged_flash_attention",
                provider="varlen" if p == "varlen" else f"shopml_{p}", mode="fwd",
                x_name="case", x_value=label, ms_p50=round(ms, 4), ms_p20=round(min(vals), 4),
                ms_p80=round(max(vals), 4), peak_mib="",
                config_json=json.dumps(dict(cfg, **case.stats, tflops=round(tflops, 1),
                                            rounds=[round(v, 4) for v in vals],
                                            max_abs_vs_triton=errs[p])),
            ))  # fmt: skip
            summary.append((label, case.stats["mean_fill"], p, ms, tflops))
        append_rows(OUT / "attention_gluon.csv", rows, meta)
        log(f"bench {label}: " + ", ".join(f"{r['provider']} {r['ms_p50']}" for r in rows))
        _activate("triton")
        del provs, case, outs
        torch.cuda.empty_cache()
    print("\n| case | mean fill | provider | fwd ms | TFLOP/s |\n|---|---|---|---|---|")
    for label, fill, p, ms, tf in summary:
        print(f"| {label} | {fill} | {p} | {ms:.3f} | {tf:.0f} |")


def _bwd_providers(case, variants: list[str]) -> tuple[dict, dict]:  # noqa: ANN001
    """name -> (forward function with grad, its leaves, dO); Gluon launcher variants as
    name -> backward-only function (``_attn_bwd_gluon`` on a saved forward)."""
    import torch
    from bench_attention import make_provider

    from shopml.jagged.attention import jagged_flash_attention
    from shopml.jagged.triton import attention_gluon_bwd as glb
    from shopml.jagged.triton.attention_fwd import _attn_fwd

    n, causal = case.cfg["N"], case.cfg["causal"]
    provs = {}
    for name in ("gluon", "triton"):  # (the switch on: both Gluon kernels, causal or not)
        q, k, v = (t.detach().clone().requires_grad_() for t in (case.q, case.k, case.v))
        provs[name] = (
            lambda q=q, k=k, v=v: jagged_flash_attention(q, k, v, case.offsets, n, causal=causal),
            (q, k, v), case.grad,
        )  # fmt: skip
    made = make_provider("varlen", case)
    if made is not None:
        provs["varlen"] = made
    scale = case.cfg["D"] ** -0.5
    with torch.no_grad():
        out, lse = _attn_fwd(case.q, case.k, case.v, case.offsets, case.offsets, *[None] * 6, n,
                             n, scale, 1.0, causal, False, True)  # fmt: skip
    only = {}
    for name in variants:
        cfg, dims = BWD_VARIANTS[name]
        if case.cfg["D"] in dims:
            only[f"gluon_{name}"] = lambda cfg=cfg: glb._attn_bwd_gluon(
                case.grad, case.q, case.k, case.v, out, lse, case.offsets, case.offsets, n, n,
                scale, config=cfg, causal=causal,
            )  # fmt: skip
    return provs, only


def part_bench_bwd(rounds: int, variants: list[str], cases: list[dict]) -> None:
    """Backward alone and forward + backward: Gluon (switch on), Triton, varlen_attn; the Gluon
    backward's launcher variants (backward alone, on a saved forward)."""
    import torch
    from _results import append_rows, run_meta
    from attention_hopper import _bench_bwd, make_case
    from triton.testing import do_bench

    meta = run_meta()
    summary, checks = [], []
    for cfg in cases:
        case = make_case(cfg)
        provs, only = _bwd_providers(case, variants)
        grads = {}
        for p, (fn, inputs, grad) in provs.items():  # compile, check
            _activate(p)
            fn().backward(grad)
            grads[p] = [x.grad.float() for x in inputs]
            for x in inputs:
                x.grad = None
        for p, fn in only.items():
            grads[p] = [g.float() for g in fn()]
        torch.cuda.synchronize()
        base = grads["triton"]
        errs = {p: [round((a - b).abs().max().item(), 5) for a, b in zip(g, base, strict=True)]
                for p, g in grads.items()}  # fmt: skip
        scale = [round(g.abs().max().item(), 4) for g in base]
        fn, inputs, grad = provs["gluon"]
        launches = _routed(lambda fn=fn, grad=grad: fn().backward(grad), bwd=True)
        for x in inputs:
            x.grad = None
        checks.append(dict(cfg, max_abs_dqkv_vs_triton=errs, triton_max_abs_dqkv=scale,
                           gluon_bwd_launches=launches))  # fmt: skip
        log(
            f"check {cfg}: max |dq, dk, dv - triton| {errs} (triton max |.| {scale}, Gluon "
            f"backward launches of the switched-on call {launches})"
        )
        (OUT / "attention_gluon_bwd_check.json").write_text(json.dumps(checks, indent=1))
        del grads, base
        times = {(p, m): [] for p in provs for m in ("bwd", "fwd+bwd")}
        times.update({(p, "bwd"): [] for p in only})
        for _ in range(rounds):
            for p, (fn, inputs, grad) in provs.items():
                _activate(p)
                times[p, "bwd"].append(_bench_bwd(do_bench, fn(), grad, inputs))
                both = lambda fn=fn, grad=grad: fn().backward(grad)  # noqa: E731
                times[p, "fwd+bwd"].append(
                    do_bench(both, warmup=10, rep=40, grad_to_none=inputs, return_mode="median")
                )
            for p, fn in only.items():
                times[p, "bwd"].append(do_bench(fn, warmup=10, rep=40, return_mode="median"))
        rows = []
        label = f"{cfg['tag']} B{cfg['B']} N{cfg['N']} H{cfg['H']} D{cfg['D']}"
        for (p, mode), vals in times.items():
            ms = statistics.median(vals)
            tflops = case.flops_fwd * {"bwd": 2.5, "fwd+bwd": 3.5}[mode] / (ms * 1e-3) / 1e12
            rows.append(dict(
                suite="attention_gluon", op="jagged_flash_attention",
                provider="varlen" if p == "varlen" else f"shopml_{p}", mode=mode,
                x_name="case", x_value=label, ms_p50=round(ms, 4), ms_p20=round(min(vals), 4),
                ms_p80=round(max(vals), 4), peak_mib="",
                config_json=json.dumps(dict(cfg, **case.stats, tflops=round(tflops, 1),
                                            rounds=[round(v, 4) for v in vals],
                                            max_abs_dqkv_vs_triton=errs[p])),
            ))  # fmt: skip
            summary.append((label, case.stats["mean_fill"], p, mode, ms, tflops))
        append_rows(OUT / "attention_gluon.csv", rows, meta)
        log(f"bench-bwd {label}: " + ", ".join(f"{r['provider']} {r['mode']} {r['ms_p50']}"
                                               for r in rows))  # fmt: skip
        _activate("triton")
        del provs, only, case
        torch.cuda.empty_cache()
    print("\n| case | mean fill | provider | mode | ms | TFLOP/s |\n|---|---|---|---|---|---|")
    for label, fill, p, mode, ms, tf in summary:
        print(f"| {label} | {fill} | {p} | {mode} | {ms:.3f} | {tf:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="compile,bench")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cases", default="",
                    help="BxNxHxDxFILL[xcausal],... (default: the three CASES)")  # fmt: skip
    ap.add_argument("--dump", type=Path, default=None, help="folder for the TTGIR and PTX")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="Gluon configurations timed")
    ap.add_argument("--bwd-variants", default=",".join(BWD_VARIANTS),
                    help="Gluon backward configurations timed")  # fmt: skip
    args = ap.parse_args()
    cases = [parse_case(c) for c in args.cases.split(",")] if args.cases else CASES
    parts = args.parts.split(",")
    sys.path.insert(0, str(HERE))
    if "compile" in parts:
        part_compile(args.dump)
    if "compile-bwd" in parts:
        part_compile_bwd(args.dump)
    if "bench" in parts:
        from shopml.jagged import checks_enabled

        checks_enabled(False)  # the hot-loop setting: no device syncs for content checks
        part_bench(args.rounds, [v for v in args.variants.split(",") if v], cases)
    if "bench-bwd" in parts:
        from shopml.jagged import checks_enabled

        checks_enabled(False)
        part_bench_bwd(args.rounds, [v for v in args.bwd_variants.split(",") if v], cases)


if __name__ == "__main__":
    main()
