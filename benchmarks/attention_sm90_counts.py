"""Compile-time counts of the attention kernels for sm_90, without a GPU (not timings).

Compiles the forward, dQ and dK/dV kernels with Triton's own compiler for an sm_90 target at the
tiles shipped in pretuned.json (H200, bfloat16, length bucket 1024: the bias-free entries, which
other bias modes borrow, and the relative bias's own where shipped; the pointer path's, the Hopper
path's and its default TMA tile; a head dim without entries takes the default tiles), without a bias and with the relative bias (the consecutive
boundaries' closed form and the general way), and prints per kernel: registers and spill bytes
(the bundled ptxas, ``-v``), the asynchronous copies of the software pipeline in the TTGIR
(``cp.async`` ops, TMA loads) and the shared memory, the ``exp2`` and layout conversions
(``convert_layout``: most go through shared memory) in the TTGIR, the ``ex2`` instructions in the
PTX, and the tensor loads left inside the loops (not pipelined: a wait on global memory each
tile). ``--dump DIR`` keeps each variant's TTGIR and PTX. Triton 3.8 here; the GPU machine's 3.6
may allocate otherwise.

    PYTHONPATH=src python benchmarks/attention_sm90_counts.py [--causal] [--head-dim 64]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from shopml.jagged.triton import attention_bwd, attention_bwd_dq, attention_fwd
from shopml.jagged.triton.attention_common import (
    _SHAPES,
    _SHAPES_TMA,
    BIAS_NONE,
    BIAS_RELATIVE,
    _config,
)

TARGET = GPUTarget("cuda", 90, 128)
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
PRETUNED = Path(attention_fwd.__file__).parent / "pretuned.json"
# pointer element types of the tensor arguments (bfloat16 activations, fp32 statistics)
_FP32 = ("lse_ptr", "delta_ptr", "bias_ptr", "dbias_ptr", "table_ptr", "dtable_ptr")
_I64 = (
    "bias_offsets_ptr",
    "bounds_ptr",
    "tq_ptr",
    "tk_ptr",
    "q_offsets_ptr",
    "k_offsets_ptr",
    "tq_lo_ptr",
    "tq_hi_ptr",
    "tk_lo_ptr",
    "tk_hi_ptr",
)
_FLOATS = ("qk_scale", "post_scale", "scale")


def _signature(fn, constexprs: dict) -> tuple[dict, dict]:  # noqa: ANN001
    sig, attrs = {}, {}
    for i, name in enumerate(fn.arg_names):
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            ty = "fp32" if name in _FP32 else "i64" if name in _I64 else "bf16"
            if name == "order_ptr":
                ty = "i32"
            sig[name] = "*" + ty
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in _FLOATS:
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
            if name.startswith("stride_") and not name.startswith(("stride_table", "stride_bias")):
                attrs[(i,)] = [["tt.divisibility", 16]]  # (T, H, D) rows: multiples of 16
    return sig, attrs


def _loop_loads(ttgir: str) -> int:
    """Tensor ``tt.load`` ops inside loops (the pipelined ones became asynchronous copies:
    these wait for global memory in the loop, or per score when a pointer per score)."""
    stack, count = [], 0
    for line in ttgir.splitlines():
        text = line.strip()
        if text.startswith("}") and stack and not text.startswith("} else {"):
            stack.pop()
        if "tt.load " in text and ": tensor<" in text and "for" in stack:
            count += 1
        if text.endswith("{") and not text.startswith("} else {"):
            stack.append("for" if " scf.for " in text else "other")
    return count


def _counts(fn, constexprs: dict, cfg: dict, dump: Path | None = None) -> dict:  # noqa: ANN001
    sig, attrs = _signature(fn, constexprs)
    src = ASTSource(fn, sig, constexprs, attrs)
    opts = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
    compiled = triton.compile(src, target=TARGET, options=opts)
    ttgir, ptx = compiled.asm["ttgir"], compiled.asm["ptx"]
    if dump is not None:
        dump.parent.mkdir(parents=True, exist_ok=True)
        dump.with_suffix(".ttgir").write_text(ttgir)
        dump.with_suffix(".ptx").write_text(ptx)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.ptx"
        path.write_text(ptx)
        res = subprocess.run(
            [str(PTXAS), "-arch=sm_90a", "-v", str(path), "-o", str(Path(tmp) / "k.o")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    info = res.stderr
    regs = int(re.search(r"Used (\d+) registers", info).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    return {
        "regs": regs,
        "spill_st": int(spills.group(1)),
        "spill_ld": int(spills.group(2)),
        "cp_async": len(re.findall(r"ttg\.async_copy_global_to_local", ttgir)),
        "tma": len(re.findall(r"async_tma_copy_global_to_local|tt\.descriptor_load", ttgir)),
        "smem": compiled.metadata.shared,
        # the loops' work beyond the pipeline: exponentials, layout conversions (most through
        # shared memory) and shared-memory stores, in the TTGIR; ex2 instructions in the PTX
        "exp2": len(re.findall(r"math\.exp2", ttgir)),
        "cvt": len(re.findall(r"ttg\.convert_layout", ttgir)),
        "local_store": len(re.findall(r"ttg\.local_(?:alloc %|store)", ttgir)),
        "ptx_ex2": len(re.findall(r"ex2\.approx", ptx)),
        "loop_loads": _loop_loads(ttgir),
    }


def _key(kernel: str, head_dim: int, causal: bool, mode: int) -> str:
    return (f"{kernel}|bfloat16|seqlen_q_bucket=1024|seqlen_k_bucket=1024|HEAD_DIM={head_dim}"
            f"|IS_CAUSAL={int(causal)}|BIAS_MODE={mode}")  # fmt: skip


def _tile(table: dict, kernel: str, head_dim: int, causal: bool, default: tuple) -> dict:
    """The shipped bias-free tile of this key, else (a head dim without one: tuned on the GPU)
    the default candidate."""
    return table.get(_key(kernel, head_dim, causal, BIAS_NONE), _config(default))


_HEADER = ("| kernel | path | tile (BM, BN, warps, stages) | bias | registers | spill st/ld B "
           "| cp.async | TMA loads | smem B | exp2 | convert_layout | local stores | PTX ex2 "
           "| loads in loops |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
# (kind, pointer and Hopper launchers, kernel, its extra constexprs)
_KERNELS = (
    ("fwd", (attention_fwd._FWD, attention_fwd._FWD_TMA), attention_fwd._attn_fwd_kernel,
     {"NB_PAD": 16}),
    ("dq", (attention_bwd._DQ, attention_bwd._DQ_TMA), attention_bwd_dq._attn_bwd_dq_kernel,
     {"NB_PAD": 16}),
    ("dkdv", (attention_bwd._DKDV, attention_bwd._DKDV_TMA), attention_bwd._attn_bwd_dkdv_kernel,
     {"NB_PAD": 16, "FUSED_DQ": False}),
)  # fmt: skip
# bias cases: none, the relative bias's closed form (16 consecutive boundaries), its general way
_BIAS = (("none", BIAS_NONE, False), ("consecutive", BIAS_RELATIVE, True),
         ("general", BIAS_RELATIVE, False))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--kernels", nargs="+", default=["fwd", "dq", "dkdv"],
                        choices=["fwd", "dq", "dkdv"])  # fmt: skip
    parser.add_argument("--bias", nargs="+", default=[b[0] for b in _BIAS],
                        choices=[b[0] for b in _BIAS])  # fmt: skip
    parser.add_argument("--dump", type=Path, help="folder for each variant's TTGIR and PTX")
    args = parser.parse_args()
    d, causal = args.head_dim, args.causal
    table = json.loads(PRETUNED.read_text())["tables"]["sm90-132"]
    print(_HEADER)
    for kind, launchers, fn, extra in _KERNELS:
        if kind not in args.kernels:
            continue
        pointer, hopper = (f"{fl._tuner.name}@{fl._tuner.version}" for fl in launchers)
        tiles = [_tile(table, pointer, d, causal, _SHAPES[kind][0]),
                 dict(_tile(table, hopper, d, causal, _SHAPES_TMA[kind][0]), hopper=1)]  # fmt: skip
        if tiles[1].get("TMA") != 1:  # also the Hopper path's default tile, through TMA
            tiles.append(dict(_config(_SHAPES_TMA[kind][0]), hopper=1))
        biased = table.get(_key(hopper, d, causal, BIAS_RELATIVE))  # the relative bias's own
        if biased is not None:
            tiles.append(dict(biased, hopper=1, bias_only=1))
        for tile in tiles:
            cfg = dict(tile)
            path = "hopper" if cfg.pop("hopper", 0) else "pointer"
            bias_only = cfg.pop("bias_only", 0)
            tma = cfg.pop("TMA", 0)
            shape = (cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["num_warps"], cfg["num_stages"])
            for name, mode, consecutive in _BIAS:
                if name not in args.bias or (bias_only and mode != BIAS_RELATIVE):
                    continue
                relative = mode == BIAS_RELATIVE
                const = dict(
                    HEAD_DIM=d, BLOCK_D=triton.next_power_of_2(d), IS_CAUSAL=causal,
                    BIAS_MODE=mode, HAS_TQ=relative, HAS_TK=relative, CONSECUTIVE=consecutive,
                    USE_ORDER=False, PRECISION="ieee", TMA=tma, BLOCK_M=cfg["BLOCK_M"],
                    BLOCK_N=cfg["BLOCK_N"], **extra,
                )  # fmt: skip
                dump = None
                if args.dump:
                    dump = args.dump / f"{kind}-{path}-tma{tma}-{'x'.join(map(str, shape))}-{name}"
                c = _counts(fn, const, cfg, dump)
                print(f"| {kind} | {path} (TMA={tma}) | {shape} | {name} | {c['regs']} | "
                      f"{c['spill_st']}/{c['spill_ld']} | {c['cp_async']} | {c['tma']} | "
                      f"{c['smem']} | {c['exp2']} | {c['cvt']} | {c['local_store']} | "
                      f"{c['ptx_ex2']} | {c['loop_loads']} |")  # fmt: skip


if __name__ == "__main__":
    main()
