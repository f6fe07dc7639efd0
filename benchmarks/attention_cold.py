"""Cold start of the jagged attention in one GPU call: new processes, fresh and warm caches.

Every measurement is a new Python process (``--child``) that initialises CUDA, imports shopml and
times its first and second forward+backward per head dim (bf16, B=1024, N=1024, H=2, lengths
~ Exponential(mean 256) clamped to [1, 1024]; content checks off), then optionally the eager host
time per call of a small case (B=256, N=256, D=64: 300 back-to-back fwd+bwd, one sync).
Sequences of processes share cache dirs (``TRITON_CACHE_DIR``, ``SHOPML_CACHE_DIR``) that start
empty: the first process is a machine that never ran shopml, the next ones later processes.

- ``bwd=sum``: ``(out * g).sum().backward()``, a training loop's scalar loss;
  ``bwd=grad``: ``out.backward(g)``, whose first call makes PyTorch import sympy
  (``torch.autograd._make_grads``; any model pays it, varlen_attn included).
- ``sympy``: the import time of sympy alone, as the machine's Python has it and with a writable
  bytecode cache (``PYTHONPYCACHEPREFIX``, second run), for the ``bwd=grad`` rows.
- ``src``: which source tree the child imports (this branch, or another given by ``--other-src``,
  e.g. the main checkout, for before/after).

Parts (``--parts``; the default is the first six): ``fresh`` (a machine that never ran shopml:
fills the caches the later parts share), ``later`` (``--later N`` plain later processes),
``grad``, ``host``, ``serial`` (a fresh machine compiling one kernel after another), ``sympy``;
and, for where a later process's first call spends its time: ``phases`` (Triton's import, the
kernel modules' import, the first forward and the first backward timed apart, each synchronised),
``profile`` (a cProfile of the first forward+backward, top 60 by cumulative time, to
``$OUT/attention_cold_profile.txt``), ``importtime`` (``python -X importtime`` of ``import torch;
import triton``, to ``$OUT/attention_cold_importtime.txt``) and ``varlen`` (the peer: the first
forward+backward of ``varlen_attn`` in a new process, the PyTorch share any attention pays).

Usage (GPU machine): PYTHONPATH=src python3 benchmarks/attention_cold.py [--parts ...] [--other-src DIR]
Writes $OUT/attention_cold.json (one row per process) and prints each row.
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

OUT = Path(os.environ.get("OUT", "."))
T0 = time.time()


def child(dims: list[int], bwd: str, host: bool, phases: bool, profile: str, provider: str) -> None:
    t = time.perf_counter()
    import torch

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    res: dict = {"torch_init_s": round(time.perf_counter() - t, 3)}
    t = time.perf_counter()
    from shopml.jagged import checks_enabled
    from shopml.jagged.attention import jagged_flash_attention

    checks_enabled(False)
    res["shopml_import_s"] = round(time.perf_counter() - t, 3)
    attention = jagged_flash_attention
    if provider == "varlen":
        from torch.nn.attention.varlen import varlen_attn

        def attention(q, k, v, offsets, max_len):  # noqa: ANN001, ANN202
            cu = offsets.to(torch.int32)
            return varlen_attn(q, k, v, cu, cu, max_len, max_len)

    if phases:
        t = time.perf_counter()
        import triton  # noqa: F401

        res["triton_import_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        from shopml.jagged.triton import attention_bwd, attention_fwd  # noqa: F401

        res["kernel_modules_import_s"] = round(time.perf_counter() - t, 3)
    for d in dims:
        gen = torch.Generator().manual_seed(d)
        lengths = torch.empty(1024).exponential_(1 / 256, generator=gen).ceil().clamp(1, 1024)
        offsets = torch.cat([torch.zeros(1), lengths.cumsum(0)]).long().cuda()
        total = int(lengths.sum())
        q, k, v, g = (
            torch.randn(total, 2, d, device="cuda", dtype=torch.bfloat16) for _ in range(4)
        )
        for x in (q, k, v):
            x.requires_grad_()
        times = []
        for i in range(2):
            prof = None
            if profile and i == 0 and d == dims[0]:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = attention(q, k, v, offsets, 1024)
            if phases and i == 0:
                torch.cuda.synchronize()
                res[f"D{d}_first_fwd_s"] = round(time.perf_counter() - t, 3)
            if bwd == "grad":
                out.backward(g)
            else:
                (out * g).sum().backward()
            torch.cuda.synchronize()
            times.append(round(time.perf_counter() - t, 3))
            if prof is not None:
                import io
                import pstats

                prof.disable()
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(60)
                Path(profile).write_text(text.getvalue())
        res[f"D{d}_first_s"], res[f"D{d}_second_s"] = times
    res["sympy_loaded"] = "sympy" in sys.modules
    res["custom_op_registered"] = hasattr(torch.ops.shopml, "jagged_attention_fwd")
    try:
        from shopml.jagged.triton import precompile

        res["precompile"] = {k: round(v, 3) for k, v in precompile.stats.items()}
    except ImportError:
        pass
    if host:
        res.update(host_loop(torch, attention))
    print("COLD " + json.dumps(res), flush=True)


def host_loop(torch, attention) -> dict:  # noqa: ANN001
    """Enqueue time per eager call, small host-bound case (the GPU work is far smaller)."""
    gen = torch.Generator().manual_seed(1)
    lengths = torch.empty(256).exponential_(1 / 64, generator=gen).ceil().clamp(1, 256)
    offsets = torch.cat([torch.zeros(1), lengths.cumsum(0)]).long().cuda()
    total = int(lengths.sum())
    q, k, v, g = (torch.randn(total, 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    for x in (q, k, v):
        x.requires_grad_()
    res = {}
    for mode in ("fwd", "fwd+bwd"):
        for i in range(2):  # warm, then timed
            n = 20 if i == 0 else 300
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(n):
                out = attention(q, k, v, offsets, 256)
                if mode == "fwd+bwd":
                    torch.autograd.backward(out, g)
            t1 = time.perf_counter()
            torch.cuda.synchronize()
        res[f"host_{mode}_us"] = round((t1 - t) / n * 1e6, 1)
    return res


def run(label: str, src: str, caches: Path, bwd: str, dims: str = "64,128", host: bool = False,
        env: dict | None = None, extra: tuple[str, ...] = ()) -> dict | None:  # fmt: skip
    e = dict(os.environ, PYTHONPATH=src, TRITON_CACHE_DIR=str(caches / "triton"),
             SHOPML_CACHE_DIR=str(caches / "shopml"), **(env or {}))  # fmt: skip
    cmd = [sys.executable, __file__, "--child", dims, "--bwd", bwd, *extra]
    cmd += ["--host"] if host else []
    t = time.perf_counter()
    done = subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=240)
    line = [x for x in done.stdout.splitlines() if x.startswith("COLD ")]
    if not line:
        print(f"[{time.time() - T0:5.1f}s] {label}: no result\n{done.stderr[-3000:]}", flush=True)
        return None
    res = dict(process=label, src=src, bwd=bwd, wall_s=round(time.perf_counter() - t, 2))
    res.update(json.loads(line[0][5:]), **(env or {}))
    print(f"[{time.time() - T0:5.1f}s] {json.dumps(res)}", flush=True)
    return res


def sympy_import(env: dict) -> float:
    code = "import time; t = time.perf_counter(); import sympy; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return round(float(done.stdout.strip() or "nan"), 3)


PARTS = ("fresh", "later", "grad", "host", "serial", "sympy", "phases", "profile", "importtime",
         "varlen")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", default=None)
    ap.add_argument("--bwd", default="sum", choices=["sum", "grad"])
    ap.add_argument("--host", action="store_true")
    ap.add_argument("--phases", action="store_true")
    ap.add_argument("--profile", default="", help="child: cProfile the first call to this file")
    ap.add_argument("--provider", default="shopml", choices=["shopml", "varlen"])
    ap.add_argument("--parts", default=",".join(PARTS[:6]), help=f"of {','.join(PARTS)}")
    ap.add_argument("--later", type=int, default=1, help="plain later processes (part later)")
    ap.add_argument("--other-src", default=None, help="another source tree, for before/after")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds; later parts skipped")
    args = ap.parse_args()
    if args.child:
        dims = [int(x) for x in args.child.split(",")]
        child(dims, args.bwd, args.host, args.phases, args.profile, args.provider)
        return
    parts = args.parts.split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"--parts: unknown {sorted(unknown)}")
    here = str(Path(__file__).resolve().parents[1] / "src")
    rows: list = []

    def keep(row: dict | None) -> None:
        if row is not None:
            rows.append(row)
            (OUT / "attention_cold.json").write_text(json.dumps(rows, indent=1))

    def fresh() -> Path:
        return Path(tempfile.mkdtemp(prefix="cold"))

    warm = fresh()
    later = [("later process", here, warm, "sum", {}, ())] * args.later
    profile = str(OUT / "attention_cold_profile.txt")
    plan = {
        "fresh": [("fresh machine (parallel compile)", here, warm, "sum", {}, ())],
        "later": later,
        "grad": [("later process, bwd=grad", here, warm, "grad", {}, ())],
        "host": [("later process + host loop", here, warm, "sum", {"_host": "1"}, ())],
        "serial": [("fresh machine, serial compile", here, fresh(), "sum",
                    {"SHOPML_PARALLEL_COMPILE": "0"}, ())],
        "phases": [("later process, phases apart", here, warm, "sum", {}, ("--phases",))],
        "profile": [("later process, cProfiled", here, warm, "sum", {}, ("--profile", profile))],
        "varlen": [("varlen_attn, new process", here, warm, "sum", {}, ("--provider", "varlen"))],
    }  # fmt: skip
    steps = [step for part in PARTS if part in parts for step in plan.get(part, [])]
    if args.other_src:
        steps.append(("other src: later process + host loop", args.other_src, warm, "sum",
                      {"_host": "1"}, ()))  # fmt: skip
    for label, src, caches, bwd, env, extra in steps:
        if time.time() - T0 > args.deadline:
            print(f"deadline: {label} skipped", flush=True)
            continue
        env = dict(env)
        host = bool(env.pop("_host", None))
        dims = "64" if "--provider" in extra else "64,128"
        keep(run(label, src, caches, bwd, dims, host=host, env=env, extra=extra))
    if "importtime" in parts and time.time() - T0 < args.deadline:
        code = "import torch; import triton"
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        (OUT / "attention_cold_importtime.txt").write_text(done.stderr)
        top = sorted(
            (line for line in done.stderr.splitlines() if line.startswith("import time:")),
            key=lambda line: (
                -int(line.split("|")[1]) if line.split("|")[1].strip().isdigit() else 0
            ),
        )[:3]
        print("importtime (cumulative us):", *top, sep="\n  ", flush=True)
    if "sympy" in parts and time.time() - T0 < args.deadline:
        pyc = {"PYTHONPYCACHEPREFIX": tempfile.mkdtemp(prefix="pyc")}
        installed = sympy_import({})
        sympy_import(pyc)  # writes the bytecode cache
        keep({"process": "import sympy", "installed_s": installed, "with_pyc_s": sympy_import(pyc)})


if __name__ == "__main__":
    main()
