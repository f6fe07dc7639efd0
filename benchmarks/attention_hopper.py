"""Hopper attention suite in one GPU call: shipped tiles, both backwards, tests (cold start:
attention_cold.py).

Parts (``--parts``, in this order), each guarded so that one failing keeps the others' results,
all written under $OUT as they finish:
- ``pretune``: the Hopper path's tile candidates (tensor-descriptor loads, with and without a
  warp-specialised loop, and the pointer path's best tiles; attention_common._SHAPES_TMA),
  compiled and checked against the reference in parallel processes (a tile that fails, hangs or
  computes wrong results is dropped), then timed per (head dim, causal, length bucket) on bf16
  inputs: ``pretuned.json`` (the shipped table with these entries added, to copy to
  src/shopml/jagged/triton/), ``pretune.json`` (every candidate's time, the choices),
  ``excluded.json`` (dropped tiles).
- ``bench``: shopml paths (``--providers``: ``tma`` = the default, Hopper path where it applies;
  ``ptr`` = the pointer kernels; ``fused`` = pointer kernels, one-pass backward) against
  varlen_attn, providers alternating within each of ``--rounds`` rounds: fwd, bwd, fwd+bwd ms,
  TFLOP/s from the real lengths, peak memory (``attention_hopper.csv``, benchmarks/_results.py's
  schema; a Markdown table printed last); output and gradients checked first (``check.json``).
- ``tests``: the GPU tests of the attention (pytest -m gpu, xdist) at the end (``tests.log``);
  ``tests-bg`` starts them in the background before the timing parts instead (faster, noisier).

Usage (GPU machine): PYTHONPATH=src SHOPML_GIT_SHA=<sha> python3 benchmarks/attention_hopper.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("OUT", "."))
T0 = time.time()
DEADLINE = [math.inf]  # seconds after T0 past which the timing loops stop (--deadline)


def late() -> bool:
    return time.time() - T0 > DEADLINE[0]


CASES = [
    dict(B=1024, N=1024, H=2, D=64, fill=0.25, causal=False, tag="grid"),
    dict(B=1024, N=1024, H=4, D=128, fill=0.25, causal=False, tag="grid"),
    dict(B=256, N=4096, H=2, D=64, fill=0.25, causal=False, tag="grid"),
    dict(B=64, N=2048, H=8, D=128, fill=1.0, causal=False, tag="full"),
    dict(B=512, N=1024, H=4, D=128, fill=0.5, causal=True, tag="hstu"),
    dict(B=256, N=4096, H=4, D=128, fill=0.25, causal=False, tag="grid"),
    dict(B=256, N=256, H=2, D=64, fill=0.25, causal=False, tag="small"),
]
PRETUNE_BUCKETS = (128, 256, 512, 1024, 2048, 4096)
CHILD_TIMEOUT_S = 80.0  # one compile child (its tile fails past this)
COMPILE_PHASE_S = 110.0  # the whole parallel compile


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def guarded(name: str, fn, *args):  # noqa: ANN001, ANN201
    log(f"--- {name}")
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - a failing part must not lose the others
        log(f"{name} FAILED:\n{traceback.format_exc()}")
        return None


# ---------------------------------------------------------------------------------------- tests


def start_tests(workers: int) -> subprocess.Popen:
    files = [
        "tests/jagged/test_attention_bwd.py",
        "tests/jagged/test_attention_tma.py",
        "tests/jagged/test_attention.py",
        "tests/jagged/test_launch.py",
    ]
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-n", str(workers)]
    env = dict(os.environ, SHOPML_ATTN_AUTOTUNE="0")
    fh = (OUT / "tests.log").open("w")
    return subprocess.Popen(
        ["nice", "-n", "10", *cmd, *files], env=env, stdout=fh, stderr=subprocess.STDOUT
    )


# ------------------------------------------------------------------------------- shared inputs


def make_case(cfg: dict, seed: int = 0):  # noqa: ANN201
    sys.path.insert(0, str(HERE))
    import bench_attention as ba
    import torch

    if cfg["tag"] == "full":  # every sequence exactly N long
        keep = ba.sample_lengths
        ba.sample_lengths = lambda b, n, fill, seed: torch.full((b,), n, dtype=torch.long)
        try:
            return ba.Case(cfg, seed)
        finally:
            ba.sample_lengths = keep
    return ba.Case(cfg, seed)


def _shopml_fn(case):  # noqa: ANN001, ANN202
    from shopml.jagged.attention import jagged_flash_attention

    q, k, v = (t.detach().clone().requires_grad_() for t in (case.q, case.k, case.v))
    n, causal = case.cfg["N"], case.cfg["causal"]
    return (
        (lambda: jagged_flash_attention(q, k, v, case.offsets, n, causal=causal)),
        (q, k, v),
        case.grad,
    )


# -------------------------------------------------------------------------------------- pretune


def _tma_tuners():  # noqa: ANN202
    from shopml.jagged.triton import attention_bwd, attention_fwd

    return [attention_fwd._FWD_TMA._tuner, attention_bwd._DQ_TMA._tuner,
            attention_bwd._DKDV_TMA._tuner]  # fmt: skip


def compile_child(spec: str) -> None:
    """Compile in a fresh process, so that the timing process finds the binaries in Triton's
    disk cache: ``tma,D,causal,i`` = candidate ``i`` of every Hopper-path kernel for one (head dim,
    causal); ``ptr,j`` = the pointer path's shipped tiles for bench case ``j``."""
    import torch
    from bench_attention import switch

    kind, *rest = spec.split(",")
    if kind == "tma":
        d, causal, i = (int(x) for x in rest)
        for t in _tma_tuners():
            full = t.candidates
            t.candidates = lambda fields, full=full: [full(fields)[min(i, len(full(fields)) - 1)]]
        cfg = dict(B=64, N=512, H=2, D=d, fill=0.5, causal=bool(causal), tag="tune")
        switch("SHOPML_ATTN_TMA", "1")
    else:
        cfg = dict(CASES[int(rest[0])], B=8)
        switch("SHOPML_ATTN_TMA", "0")
    case = make_case(cfg)
    fn, inputs, grad = _shopml_fn(case)
    out = fn()
    out.backward(grad)
    torch.cuda.synchronize()
    if kind == "tma":  # a tile that computes wrong results is dropped like one that fails
        from shopml.jagged.attention_reference import jagged_flash_attention as reference

        q, k, v = (x.detach().float().requires_grad_() for x in inputs)
        ref = reference(q, k, v, case.offsets, cfg["N"], causal=cfg["causal"])
        ref.backward(grad.float())
        for a, b in zip(
            [out, *(x.grad for x in inputs)], [ref, q.grad, k.grad, v.grad], strict=True
        ):
            err = ((a.float() - b).abs().max() / b.abs().max()).item()
            if not err < 0.05:
                raise SystemExit(f"{spec}: relative error {err}")


def part_compile(workers: int) -> None:
    """Every Hopper-path tile candidate and the pointer path's bench tiles, compiled in parallel
    processes (compiles dominate tuning)."""
    from shopml.jagged.triton.attention_common import _SHAPES_TMA

    count = max(len(shapes) for shapes in _SHAPES_TMA.values())
    specs = [f"ptr,{j}" for j in range(len(CASES))]
    specs += [f"tma,{d},{c},{i}" for d in (64, 128) for c in (0, 1) for i in range(count)]
    tmp = Path(tempfile.mkdtemp(prefix="compile"))
    env = dict(os.environ, SHOPML_CACHE_DIR=str(tmp))
    running: list[tuple[str, subprocess.Popen, float, Path]] = []
    failed = []
    phase_end = time.time() + COMPILE_PHASE_S
    while specs or running:
        while specs and len(running) < workers:
            spec = specs.pop(0)
            cmd = [sys.executable, __file__, "--compile-child", spec]
            err = tmp / f"{spec.replace(',', '_')}.err"
            with err.open("w") as fh:
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=fh)
            running.append((spec, proc, time.time(), err))
        time.sleep(0.2)
        for item in list(running):
            spec, proc, began, err = item
            now = time.time()
            if proc.poll() is None and (now - began > CHILD_TIMEOUT_S or now > phase_end):
                proc.kill()  # a hung tile (or a compile too slow to ship) fails
                proc.wait()
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    failed.append(spec)
                    log(f"compile {spec} failed ({proc.returncode}):\n{err.read_text()[-1200:]}")
        if time.time() > phase_end and specs:
            failed += specs  # not started in time: dropped like failures
            log(f"compile phase over: {specs} not started")
            specs = []
    # a failing Hopper candidate i is dropped for every kernel, head dim and causal flag
    from shopml.jagged.triton import attention_common as ac

    for spec in failed:
        if spec.startswith("tma,"):
            i = int(spec.split(",")[3])
            for kind, shapes in ac._SHAPES_TMA.items():
                ac._TMA_EXCLUDED.add((kind, tuple(shapes[min(i, len(shapes) - 1)])))
    (OUT / "excluded.json").write_text(json.dumps(sorted(map(str, ac._TMA_EXCLUDED))))
    log(f"compiled every candidate ({len(failed)} failed: {failed}); excluded {ac._TMA_EXCLUDED}")


def part_pretune() -> None:
    """Times every Hopper-path tile per (head dim, causal, length bucket): ``pretune.json``, and
    ``pretuned.json`` = the shipped table with these entries added (the pointer path's kept)."""
    import torch
    from bench_attention import switch

    from shopml.jagged.triton import tuning

    tuners = _tma_tuners()
    for t in tuners:
        t._tune = True
    switch("SHOPML_ATTN_TMA", "1")
    for d in (64, 128):
        for causal in (False, True):
            for n in PRETUNE_BUCKETS:
                if late():
                    log("pretune: deadline reached, table partial")
                    break
                b = max(64, min(4096, 262144 // max(1, n // 2)))
                case = make_case(dict(B=b, N=n, H=2, D=d, fill=0.5, causal=causal, tag="tune"))
                fn, inputs, grad = _shopml_fn(case)
                fn().backward(grad)
                torch.cuda.synchronize()
                log(f"pretune D={d} causal={causal} N={n} B={b} done")
    switch("SHOPML_ATTN_TMA", None)
    gpu_class = tuning.gpu_class(torch.cuda.current_device())
    shipped = json.loads((HERE.parent / "src/shopml/jagged/triton/pretuned.json").read_text())
    table = shipped["tables"].setdefault(gpu_class, {})
    timings, added = {}, 0
    for t in tuners:
        for (_, key), cfg in t._memory.items():
            table[key] = cfg
            table[key.replace("|bfloat16|", "|float16|")] = cfg  # fp16: bf16's measured choice
            added += 2
        timings.update(t.timings)
    chosen = {k: v for t in tuners for (_, k), v in t._memory.items()}
    (OUT / "pretune.json").write_text(json.dumps({"chosen": chosen, "timings": timings}, indent=1))
    import triton

    shipped["about"] += (
        f" Hopper-path (tensor descriptor) kernels attn_*_tma: measured the same way on an "
        f"{torch.cuda.get_device_name()} (torch {torch.__version__}, triton {triton.__version__}, "
        f"git {os.environ.get('SHOPML_GIT_SHA', '?')})."
    )
    (OUT / "pretuned.json").write_text(json.dumps(shipped, indent=1, sort_keys=True) + "\n")
    log(f"pretune: {added} entries for {gpu_class}")


# ---------------------------------------------------------------------------------------- bench


def activate(provider: str) -> None:
    """Select a shopml path: "tma" (the default, Hopper path where it applies), "ptr" (the
    pointer kernels, ``SHOPML_ATTN_TMA=0``), "fused" (pointer kernels, one-pass backward)."""
    from bench_attention import switch

    switch("SHOPML_ATTN_BWD", "fused" if provider == "fused" else "split")
    switch("SHOPML_ATTN_TMA", "auto" if provider == "tma" else "0")


def _check(provs: dict) -> dict:
    """Relative max errors (out, dq, dk, dv) of each shopml path against varlen_attn and of the
    Hopper path against the pointer one (fresh poisoned .grad each time)."""
    import torch

    res = {}
    for p, (fn, inputs, grad) in provs.items():
        activate(p)
        for x in inputs:
            x.grad = None
        out = fn()
        out.backward(grad)
        res[p] = [out.detach().float(), *(x.grad.float() for x in inputs)]
        for x in inputs:
            x.grad = None
    errs = {}
    for a, b in (("tma", "varlen"), ("ptr", "varlen"), ("tma", "ptr")):
        if a in res and b in res:
            errs[f"{a}~{b}"] = [
                float(f"{((x - y).abs().max() / y.abs().max().clamp_min(1e-6)).item():.3g}")
                for x, y in zip(res[a], res[b], strict=True)
            ]
            errs[f"{a}_finite"] = all(bool(torch.isfinite(x).all()) for x in res[a])
    return errs


def _bench_bwd(do_bench, out, grad, inputs) -> float:  # noqa: ANN001
    """The backward alone: the graph of one forward kept and run again."""
    return do_bench(
        lambda: out.backward(grad, retain_graph=True),
        warmup=10, rep=40, grad_to_none=inputs, return_mode="median",
    )  # fmt: skip


def part_bench(rounds: int, providers: list[str]) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    from _results import append_rows, run_meta
    from bench_attention import make_provider, peak_mib, switch
    from triton.testing import do_bench

    meta = run_meta()
    csv_path = OUT / "attention_hopper.csv"
    summary, checks = [], []
    for cfg in CASES:
        if late():
            log("bench: deadline reached")
            break
        case = make_case(cfg)
        provs = {p: _shopml_fn(case) for p in providers}
        made = make_provider("varlen", case)
        if made is not None:
            provs["varlen"] = made
        for p, (fn, inputs, grad) in provs.items():  # compile, tune
            activate(p)
            for _ in range(2):
                fn().backward(grad)
            for x in inputs:
                x.grad = None
        errs = _check(provs)
        log(f"check {cfg['tag']} B{cfg['B']} N{cfg['N']} D{cfg['D']}: {errs}")
        checks.append(dict(cfg, **errs))
        (OUT / "check.json").write_text(json.dumps(checks, indent=1))
        times = {p: {"fwd": [], "bwd": [], "fwd+bwd": []} for p in provs}
        for _ in range(rounds):
            for p, (fn, inputs, grad) in provs.items():
                activate(p)
                with torch.no_grad():
                    times[p]["fwd"].append(do_bench(fn, warmup=10, rep=40, return_mode="median"))
                times[p]["bwd"].append(_bench_bwd(do_bench, fn(), grad, inputs))
                both = lambda: fn().backward(grad)  # noqa: B023, E731
                times[p]["fwd+bwd"].append(
                    do_bench(both, warmup=10, rep=40, grad_to_none=inputs, return_mode="median")
                )
        rows = []
        for p, (fn, inputs, grad) in provs.items():
            activate(p)
            mem = peak_mib(lambda: fn().backward(grad))  # noqa: B023
            for x in inputs:
                x.grad = None
            for mode, vals in times[p].items():
                ms = statistics.median(vals)
                mult = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[mode]
                tflops = case.flops_fwd * mult / (ms * 1e-3) / 1e12
                rows.append(
                    dict(
                        suite="attention_hopper", op="jagged_flash_attention",
                        provider="varlen" if p == "varlen" else f"shopml_{p}", mode=mode,
                        x_name="case", x_value=f"{cfg['tag']} B{cfg['B']} N{cfg['N']} H{cfg['H']} D{cfg['D']}",
                        ms_p50=round(ms, 4), ms_p20=round(min(vals), 4), ms_p80=round(max(vals), 4),
                        peak_mib=round(mem, 1),
                        config_json=json.dumps(dict(cfg, **case.stats, tflops=round(tflops, 1),
                                                    rounds=[round(v, 4) for v in vals])),
                    )
                )  # fmt: skip
                summary.append((rows[-1]["x_value"], cfg["causal"], p, mode, ms, tflops, mem))
        switch("SHOPML_ATTN_BWD", None)
        switch("SHOPML_ATTN_TMA", None)
        append_rows(csv_path, rows, meta)
        log(
            f"bench {cfg}: " + ", ".join(f"{r['provider']} {r['mode']} {r['ms_p50']}" for r in rows)
        )
        del provs, case
        torch.cuda.empty_cache()
    print("\n| case | causal | provider | mode | ms | TFLOP/s | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for x, c, p, mode, ms, tf, mem in summary:
        print(f"| {x} | {c} | {p} | {mode} | {ms:.3f} | {tf:.0f} | {mem:.0f} |")


def part_info() -> None:
    import torch
    import triton

    info = dict(
        gpu=torch.cuda.get_device_name(), torch=torch.__version__, triton=triton.__version__,
        git_sha=os.environ.get("SHOPML_GIT_SHA", ""), cpus=os.cpu_count(),
    )  # fmt: skip
    log(f"info {info}")
    (OUT / "info.json").write_text(json.dumps(info))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="bench,tests", help="also: pretune, tests-bg")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--providers", default="tma,ptr", help="shopml paths: tma, ptr, fused")
    ap.add_argument("--test-workers", type=int, default=6)
    ap.add_argument("--test-timeout", type=float, default=200.0)
    ap.add_argument("--compile-workers", type=int, default=12)
    ap.add_argument("--deadline", type=float, default=math.inf, help="seconds; loops stop after")
    ap.add_argument("--compile-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_child:
        compile_child(args.compile_child)
        return
    parts = args.parts.split(",")
    DEADLINE[0] = args.deadline
    if "pretune" in parts or "bench" in parts:
        from shopml.jagged import checks_enabled

        checks_enabled(False)  # the hot-loop setting: no device syncs for content checks
    guarded("info", part_info)
    tests = None
    if "tests-bg" in parts:  # in the background (niced), beside the timing parts (their noise)
        tests = guarded("start tests", start_tests, args.test_workers)
    if "pretune" in parts:
        guarded("compile candidates", part_compile, args.compile_workers)
        guarded("pretune", part_pretune)
    if "bench" in parts:
        guarded("bench", part_bench, args.rounds, args.providers.split(","))
    if "tests" in parts:
        tests = guarded("start tests", start_tests, args.test_workers)
    if tests is not None:
        try:
            rc = tests.wait(timeout=max(1.0, args.test_timeout - (time.time() - T0)))
        except subprocess.TimeoutExpired:
            tests.kill()
            rc = "timeout"
        log(
            f"tests exit {rc}; tail:\n"
            + "\n".join((OUT / "tests.log").read_text().splitlines()[-15:])
        )


if __name__ == "__main__":
    main()
