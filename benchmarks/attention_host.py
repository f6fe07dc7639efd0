"""Host cost of eager calls on small cases: the attention and every jagged op, fast launch on/off.

Parts (``--parts``, comma-separated; default all):

- ``ops``: every public jagged op (``shopml.jagged.ops``) on a small batch (64 sequences of 0-64
  rows, width 64, fp32: the GPU work is far smaller than the host work), forward and
  forward+backward, each timed as the enqueue time per call of a loop of back-to-back eager calls
  (one synchronisation at the end), with the :class:`~shopml.jagged.triton.launch.FastLauncher`
  direct launches on and off (every launcher's ``enabled``: off is Triton's own launch path, as
  ``SHOPML_TRITON_FAST_LAUNCH=0`` gives), in alternating rounds; the median round is reported.
- ``split`` (not in the default): where the attention's eager fwd+bwd host time goes (the
  public forward without and with the autograd graph, the backward launcher alone, an empty
  autograd Function's floor, with and without autograd's device threads) and the Gluon
  forward's host path piece by piece; printed.
- ``harness`` (not in the default): a few small D=128 grid cases' forward timed as the grid
  times it and as a loop of forward calls alone, Gluon forward on and off, each profiled: the
  GPU's idle gap before our kernels, their device time, and the host calls that wait on the
  device (where the Gluon forward lost in the grid but not alone, session 17; session 18: its
  longer host path, no wait on the device, benchmarks/README.md).
- ``steps`` (not in the default): eager forward+backward steps of host-bound D=128 grid cases
  through the default routing (the Gluon kernels where ``auto`` takes them), the Triton kernels
  alone (``SHOPML_ATTN_GLUON=0``) and varlen_attn: per call the enqueue time of a loop of 200
  steps, a second loop's time to its final synchronisation, ``do_bench`` (as the grid times it) and
  the device time (``torch.profiler``, the kernels' sum over 20 steps); a step whose enqueue time
  passes its device time is host-bound. The profiler's table and a cProfile of 200 steps go to
  ``$OUT/steps_<case>_<provider>.txt`` (session 19: where the Gluon path's eager steps lose).
- ``attention``: the same on/off host loops for the attention on three host-bound cases of the
  issue's grid, then shopml against varlen_attn: host loops, four rounds of ``do_bench`` (timed as
  bench_attention.py times them, providers alternating) and a cProfile of 300 forward+backward
  calls per provider, written to ``$OUT/prof_<provider>_<case>.txt``, and the GPU's share: the
  device time per call of each kernel (``torch.profiler``, 10 calls) beside the host loop's time,
  to ``$OUT/gpu_<provider>_<case>.txt`` (a call whose host loop takes longer than its kernels is
  host-bound). First, the floor: an empty autograd Function's forward+backward host loop, with
  and without autograd's device threads.

Usage (GPU machine): PYTHONPATH=src python3 benchmarks/attention_host.py [--parts ops,attention]
Rows (schema of benchmarks/_results.py, ``x_name=fast_launch``, ``ms_p50`` the median round and
``ms_p20``/``ms_p80`` the fastest/slowest) go to ``$OUT/attention_host-<device>.csv`` (default .);
discussed in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import io
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _results import append_rows, device_slug, run_meta  # noqa: E402
from bench_attention import Case, bench, make_provider, switch  # noqa: E402

from shopml.jagged.checks import checks_enabled  # noqa: E402

CASES = (
    dict(B=256, N=256, H=2, D=64, fill=0.1, causal=False),
    dict(B=1024, N=256, H=2, D=128, fill=0.5, causal=False),
    # host-bound and through both Gluon kernels on sm_90 (over 2^24 query values)
    dict(B=256, N=1024, H=4, D=128, fill=0.25, causal=False),
)
PROVIDERS = ("shopml", "varlen")
LAUNCH_MODULES = ("bmm", "concat", "conversions", "elementwise", "jagged2", "reductions",
                  "softmax", "attention_fwd", "attention_bwd", "attention_bwd_dq",
                  "attention_gluon", "attention_gluon_bwd")  # fmt: skip


def host_loop(fn, n: int = 400, reset=(), synced: bool = False) -> float:  # noqa: ANN001
    """Microseconds per call of ``n`` back-to-back calls (one sync at the end): their enqueue
    time, or with ``synced`` the time until the GPU has run them all."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        for x in reset:
            x.grad = None
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return round(((time.perf_counter() if synced else t1) - t) / n * 1e6, 1)


class FastLaunch:
    """Every FastLauncher of the jagged kernels, switched on (as they came) or off together."""

    def __init__(self) -> None:
        from shopml.jagged.triton.launch import FastLauncher

        self.launchers = []
        for name in LAUNCH_MODULES:
            mod = importlib.import_module(f"shopml.jagged.triton.{name}")
            self.launchers += [v for v in vars(mod).values() if isinstance(v, FastLauncher)]
        self.usable: list[bool] | None = None

    def set(self, on: bool) -> None:
        if self.usable is None:  # after the warm-up: a launcher may have turned itself off
            self.usable = [fl.enabled for fl in self.launchers]
        for fl, usable in zip(self.launchers, self.usable, strict=True):
            fl.enabled = on and usable

    def direct(self) -> int:
        return sum(fl.direct_launches for fl in self.launchers)


def op_calls() -> dict[str, tuple[Callable[[], torch.Tensor], tuple[torch.Tensor, ...]]]:
    """``{op: (call, leaves)}`` on one small batch; ``call()`` returns the op's values."""
    from shopml.jagged import ops
    from shopml.jagged.tensor import lengths_to_offsets

    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(0, 65, (64,), generator=gen)
    b, d, n = 64, 64, int(lengths.max())
    t, t2 = int(lengths.sum()), int((lengths**2).sum())
    off = lengths_to_offsets(lengths).cuda()
    other = lengths.flip(0)
    off_b, tb = lengths_to_offsets(other).cuda(), int(other.sum())

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).cuda().requires_grad_()

    x, x_half, y_bmm, x2, x2b = leaf(t, d), leaf(t, d // 2), leaf(b, d, d), leaf(t2), leaf(t2)
    dense, y_add, y_n, row, row_b = leaf(b, n, d), leaf(b, n, d), leaf(n, n), leaf(t), leaf(t)
    xb, head = leaf(tb, d), leaf(b, d)
    return {
        "jagged_to_padded": (lambda: ops.jagged_to_padded(x, off, n), (x,)),
        "padded_to_jagged": (lambda: ops.padded_to_jagged(dense, off, t), (dense,)),
        "jagged_dense_bmm": (lambda: ops.jagged_dense_bmm(x, off, y_bmm, n), (x, y_bmm)),
        "jagged_jagged_bmm": (lambda: ops.jagged_jagged_bmm(x, x_half, off, n), (x, x_half)),
        "jagged_softmax": (lambda: ops.jagged_softmax(x, off, n), (x,)),
        "jagged2_softmax": (lambda: ops.jagged2_softmax(x2, off, n), (x2,)),
        "jagged_dense_add": (lambda: ops.jagged_dense_add(x, off, y_add), (x, y_add)),
        "jagged2_mul_dense": (lambda: ops.jagged2_mul_dense(x2, off, y_n), (x2, y_n)),
        "jagged_pairwise_diff": (
            lambda: ops.jagged_pairwise_diff(row, off, row_b, total2=t2),
            (row, row_b),
        ),
        "jagged_sum": (lambda: ops.jagged_sum(x, off), (x,)),
        "jagged_mean": (lambda: ops.jagged_mean(x, off), (x,)),
        "jagged_concat": (lambda: ops.jagged_concat(x, off, xb, off_b)[0], (x, xb)),
        "jagged_prepend_dense": (lambda: ops.jagged_prepend_dense(head, x, off)[0], (head, x)),
        "jagged2_bmm": (lambda: ops.jagged2_bmm(x, x, off, n, total2=t2), (x,)),
        "jagged2_matmul": (lambda: ops.jagged2_matmul(x2, x, off, n), (x2, x)),
        "jagged2_to_padded": (lambda: ops.jagged2_to_padded(x2b, off, n), (x2b,)),
    }


def on_off_rows(
    name: str,
    call: Callable[[], torch.Tensor],
    leaves: tuple[torch.Tensor, ...],
    fast: FastLaunch,
    rounds: int,
    config: dict,
) -> list[dict]:
    """Host loops of ``call`` (fwd, and fwd+bwd against a fixed upstream gradient), fast launch
    on and off in alternating rounds; one CSV row per (mode, on/off)."""
    out = call()
    grad = torch.randn_like(out)
    for _ in range(3):  # first launches (compile, tune), then direct ones
        call().backward(grad)
    for x in leaves:
        x.grad = None
    modes = {
        "fwd": lambda: call(),
        "fwd+bwd": lambda: call().backward(grad),
    }
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(rounds):
        for on in (True, False):
            fast.set(on)
            for mode, fn in modes.items():
                before = fast.direct()
                if mode == "fwd":
                    with torch.no_grad():
                        us = host_loop(fn, 200)
                else:
                    us = host_loop(fn, 200, reset=leaves)
                if on and fast.direct() == before:
                    raise RuntimeError(f"{name}: no direct launch with the fast path on")
                times.setdefault((mode, on), []).append(us)
    fast.set(True)
    rows = []
    for (mode, on), us in times.items():
        ms = [u / 1e3 for u in us]
        rows.append(dict(suite="attention_host", op=name, provider="shopml", mode=mode,
                         x_name="fast_launch", x_value="on" if on else "off",
                         ms_p50=round(statistics.median(ms), 5), ms_p20=round(min(ms), 5),
                         ms_p80=round(max(ms), 5), config_json=json.dumps(config)))  # fmt: skip
    line = ", ".join(
        f"{mode} {statistics.median(times[mode, True]):.1f} / "
        f"{statistics.median(times[mode, False]):.1f} us"
        for mode in modes
    )
    print(f"  {name:22s} on / off: {line}", flush=True)
    return rows


def part_ops(fast: FastLaunch, rounds: int) -> list[dict]:
    print("jagged ops (B=64, lengths 0-64, width 64, fp32), host us per call", flush=True)
    rows = []
    for name, (call, leaves) in op_calls().items():
        try:
            rows += on_off_rows(name, call, leaves, fast, rounds, {"B": 64, "max_len": 64, "D": 64})
        except Exception as exc:  # noqa: BLE001 - reported; the other ops still run
            print(f"  {name}: {type(exc).__name__}: {exc}"[:300], flush=True)
            fast.set(True)
    return rows


class _Empty(torch.autograd.Function):
    """Three inputs, one output, no kernels: what autograd alone costs a Python attention."""

    @staticmethod
    def forward(ctx, q, k, v):  # noqa: ANN001, ANN205, D102
        return torch.empty_like(q)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001, ANN205, D102
        return torch.empty_like(g), torch.empty_like(g), torch.empty_like(g)


def engine_floor(rounds: int) -> None:
    """The host loop of an empty autograd Function on CUDA inputs, forward+backward, with
    autograd's device threads (the default: the backward runs on the engine's CUDA thread) and
    without them (``set_multithreading_enabled(False)``): the floor under any attention written
    as an autograd Function, and the engine's hand-off's share of it."""
    q, k, v = (torch.randn(6000, 2, 64, device="cuda", requires_grad=True) for _ in range(3))
    g = torch.randn(6000, 2, 64, device="cuda")
    step = lambda: _Empty.apply(q, k, v).backward(g)  # noqa: E731
    for _ in range(20):
        step()
    threads, single = [], []
    for _ in range(rounds):
        threads.append(host_loop(step, reset=(q, k, v)))
        with torch.autograd.set_multithreading_enabled(False):
            single.append(host_loop(step, reset=(q, k, v)))
    print(f"empty autograd Function, fwd+bwd host loop: {statistics.median(threads)} us "
          f"({statistics.median(single)} us without autograd's device threads)", flush=True)  # fmt: skip


def part_attention(fast: FastLaunch, rounds: int, out_dir: Path) -> list[dict]:
    rows = []
    engine_floor(rounds)
    for cfg in CASES:
        case = Case(cfg, 0)
        provs = {p: make_provider(p, case) for p in PROVIDERS}
        for fn, inputs, grad in provs.values():
            for _ in range(3):  # compile / autotune
                fn().backward(grad)
            for t in inputs:
                t.grad = None
        print(cfg, flush=True)
        fn, inputs, _ = provs["shopml"]
        rows += on_off_rows(f"attention D={cfg['D']}", fn, inputs, fast, rounds, cfg)
        for p, (fn, inputs, grad) in provs.items():
            with torch.no_grad():
                fwd = host_loop(fn)
            both = host_loop(lambda: fn().backward(grad), reset=inputs)  # noqa: B023
            print(f"  {p:8s} host loop: fwd {fwd} us, fwd+bwd {both} us", flush=True)
        for _ in range(4):
            line = []
            for p, (fn, inputs, grad) in provs.items():
                ms = bench(lambda: fn().backward(grad), True, grad_to_none=inputs)[0]  # noqa: B023
                line.append(f"{p} {ms * 1e3:.0f}")
            print("  do_bench us:", ", ".join(line), flush=True)
        for p, (fn, inputs, grad) in provs.items():
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(300):
                for t in inputs:
                    t.grad = None
                fn().backward(grad)
            prof.disable()
            torch.cuda.synchronize()
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
            name = f"{p}_B{cfg['B']}_N{cfg['N']}_H{cfg['H']}_D{cfg['D']}.txt"
            (out_dir / f"prof_{name}").write_text(text.getvalue())
            (out_dir / f"gpu_{name}").write_text(gpu_split(fn, inputs, grad))
    return rows


def best_loop(fn, reset=(), rounds: int = 5) -> float:  # noqa: ANN001
    """The fastest of ``rounds`` host loops (us per call): the least-disturbed one."""
    return min(host_loop(fn, reset=reset) for _ in range(rounds))


def part_split() -> None:
    """Where the eager fwd+bwd host time of the attention goes, on the first two CASES (Triton
    kernels) and, for the Gluon forward, on the third: host loops of the public forward without
    and with the autograd graph, forward+backward, the backward launcher alone (its arguments
    caught from one backward), an empty autograd Function's, each with and without autograd's
    device threads; then the Gluon forward's pieces (best of five loops)."""
    from shopml.jagged import attention_triton
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton.attention_common import _fwd_outputs
    from shopml.jagged.triton.attention_fwd import _attn_fwd

    for cfg in CASES[:2]:
        case = Case(cfg, 0)
        fn, inputs, grad = make_provider("shopml", case)
        q, k, v = inputs
        step = lambda: fn().backward(grad)  # noqa: B023, E731
        empty = lambda: _Empty.apply(q, k, v).backward(grad)  # noqa: B023, E731
        caught = []
        launch = attention_triton._backward_launch
        attention_triton._backward_launch = lambda *a: caught.append(a) or launch(*a)  # noqa: B023
        step()
        attention_triton._backward_launch = launch
        times = {}
        with torch.no_grad():
            times["forward, no grad (public)"] = best_loop(fn)
            times["backward launcher alone"] = best_loop(lambda: launch(*caught[0]))  # noqa: B023
        times["forward with the graph, no backward"] = best_loop(fn)
        for threads in (True, False):
            with torch.autograd.set_multithreading_enabled(threads):
                tag = "" if threads else ", no device threads"
                times[f"forward+backward{tag}"] = best_loop(step, reset=inputs)
                times[f"empty Function forward+backward{tag}"] = best_loop(empty, reset=inputs)
        print(cfg, flush=True)
        for key, us in times.items():
            print(f"  {key:45s} {us:7.1f} us", flush=True)
    case = Case(CASES[2], 0)
    q, k, v, off, n = case.q, case.k, case.v, case.offsets, CASES[2]["N"]
    scale = CASES[2]["D"] ** -0.5
    conf = glu.auto_config(q, CASES[2]["B"], n)
    rest = (*[None] * 6, n, n, scale, 1.0, False, False, False)
    times = {}
    with torch.no_grad():
        times["_attn_fwd (the Gluon forward)"] = best_loop(
            lambda: _attn_fwd(q, k, v, off, off, *rest)
        )
        times["_attn_fwd_gluon"] = best_loop(
            lambda: glu._attn_fwd_gluon(q, k, v, off, off, n, n, scale, 1.0, False, conf)
        )
        times["gluon_ok"] = best_loop(lambda: glu.gluon_ok(q, k, v, scale))
        times["_fwd_outputs"] = best_loop(lambda: _fwd_outputs(q, n, False))
        times["_tile_samples"] = best_loop(lambda: glu._tile_samples(off, q.shape[0]))
        times["three descriptors"] = best_loop(
            lambda: (glu._desc(q, 64), glu._desc(k, 64), glu._desc(v, 64))
        )
        previous = os.environ.get("SHOPML_ATTN_GLUON")
        switch("SHOPML_ATTN_GLUON", "0")
        times["_attn_fwd (the Triton forward)"] = best_loop(
            lambda: _attn_fwd(q, k, v, off, off, *rest)
        )
        switch("SHOPML_ATTN_GLUON", previous)
    print(CASES[2], conf, flush=True)
    for key, us in times.items():
        print(f"  {key:45s} {us:7.1f} us", flush=True)


def gpu_split(fn, inputs, grad, calls: int = 10) -> str:  # noqa: ANN001
    """``torch.profiler``'s table of ``calls`` forward+backward calls: each kernel's device time
    and each op's host time, per call in the header."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            for t in inputs:
                t.grad = None
            fn().backward(grad)
        torch.cuda.synchronize()
    events = prof.key_averages()
    device_us = sum(getattr(e, "self_device_time_total", 0.0) for e in events) / calls
    table = events.table(sort_by="self_cpu_time_total", row_limit=25)
    return f"device time per call: {device_us:.0f} us ({calls} calls)\n{table}\n"


# the grid's small D=128 cases where the Gluon forward lost in the grid's loop but not in a loop
# of forward calls alone (benchmarks/README.md, "Session 17"), by name (bench_attention --only)
HARNESS_CASES = ("B256-N256-f0.5-H2-D128", "B256-N1024-f0.1-H4-D128", "B1024-N256-f0.5-H2-D128")
_SYNCS = ("Synchronize", "Memcpy", "cudaMalloc", "cuMemAlloc", "cuModuleLoad")  # host waits


def part_harness(names: tuple[str, ...] = HARNESS_CASES, iters: int = 20) -> None:
    """The forward of a few grid cases as the grid times it (inputs that need gradients, a
    forward+backward first, ``do_bench`` under ``no_grad``) and as a loop of forward calls alone
    times it (inputs without gradients, nothing else run), Gluon forward on and off, with
    CPython's cyclic garbage collector on and off; then
    ``iters`` calls after an L2 flush each under ``torch.profiler``: per call the GPU's idle gap
    between the flush's end and our first kernel, our kernels' device time, and the host calls
    that wait on the device (synchronisations, copies, allocations, module loads) in the call."""
    import bench_attention
    from torch.profiler import ProfilerActivity, profile

    from shopml.jagged.attention import jagged_flash_attention

    grid = {bench_attention.label(c): (i, c) for i, c in enumerate(bench_attention.grid("full"))}
    flush = torch.empty(int(256e6 // 4), dtype=torch.int, device="cuda")  # do_bench's L2 flush
    for name in names:
        position, cfg = grid[name]
        case = Case(dict(cfg, flex=False), seed=1000 + position)  # the grid's lengths
        print(name, case.stats, flush=True)
        for gluon in ("1", "0"):
            switch("SHOPML_ATTN_GLUON", gluon)
            fn, inputs, grad = make_provider("shopml", case)
            alone = lambda c=case: jagged_flash_attention(  # noqa: E731
                c.q, c.k, c.v, c.offsets, c.cfg["N"], causal=c.cfg["causal"]
            )
            torch.autograd.grad(fn(), inputs, grad)  # the grid's warm-up of this provider
            for how, call in (("grid loop", fn), ("forward alone", alone)):
                with torch.no_grad():
                    call()
                    ms = bench(call, True)[0]
                    gc.disable()  # CPython's cyclic collector: a pause the host may pay per call
                    try:
                        ms_no_gc = bench(call, True)[0]
                    finally:
                        gc.enable()
                    torch.cuda.synchronize()
                    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                        for _ in range(iters):
                            flush.zero_()
                            call()
                        torch.cuda.synchronize()
                print(f"  gluon={gluon} {how:13s} do_bench {ms * 1e3:6.1f} us "
                      f"(collector off {ms_no_gc * 1e3:6.1f} us); "
                      f"{_harness_split(prof.events(), iters)}", flush=True)  # fmt: skip
    switch("SHOPML_ATTN_GLUON", None)


def _harness_split(events, iters: int) -> str:  # noqa: ANN001
    """Median idle gap (flush end to our first kernel) and device time per call, and the host
    calls that wait on the device, from a profile of ``iters`` flush + call rounds."""
    kernels = sorted(
        (e for e in events if e.device_type == torch.autograd.DeviceType.CUDA),
        key=lambda e: e.time_range.start,
    )
    gaps, busy, ours, last_flush = [], [], 0.0, None
    for e in kernels:
        if "fill" in e.name.lower() or "zero" in e.name.lower():  # the flush
            if last_flush is not None and ours:
                busy.append(ours)
            last_flush, ours = e, 0.0
        elif last_flush is not None:
            if ours == 0.0:
                gaps.append(e.time_range.start - last_flush.time_range.end)
            ours += e.time_range.end - e.time_range.start
    if ours:
        busy.append(ours)
    waits: dict[str, int] = {}
    for e in events:
        if e.device_type == torch.autograd.DeviceType.CPU and any(w in e.name for w in _SYNCS):
            waits[e.name] = waits.get(e.name, 0) + 1
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    shown = ", ".join(f"{n} x{c / iters:.1f}" for n, c in sorted(waits.items())) or "none"
    return f"gap {med(gaps):.1f} us, device {med(busy):.1f} us a call; host waits a call: {shown}"


STEP_CASES = (
    dict(B=1024, N=1024, H=2, D=128, fill=0.1, causal=False),  # both Gluon kernels (25 M values)
    dict(B=1024, N=256, H=2, D=128, fill=0.5, causal=False),  # the Gluon forward only
    dict(B=256, N=1024, H=4, D=128, fill=0.25, causal=False),  # both Gluon kernels
)


def part_steps(out_dir: Path, n: int = 200) -> None:
    """Eager forward+backward steps: enqueue, synchronised, do_bench and device time per call
    (see the module docstring); the profiles to ``out_dir``."""
    from torch.profiler import ProfilerActivity, profile

    print("eager fwd+bwd steps, us per call: enqueue / with the final sync / do_bench / device",
          flush=True)  # fmt: skip
    for cfg in STEP_CASES:
        case = Case(dict(cfg, tag="grid"), 0)
        name = f"B{cfg['B']}-N{cfg['N']}-f{cfg['fill']}-H{cfg['H']}-D{cfg['D']}"
        for prov, gluon in (("shopml", None), ("shopml", "0"), ("varlen", None)):
            switch("SHOPML_ATTN_GLUON", gluon)
            fn, leaves, grad = make_provider(prov, case)

            def step(fn=fn, grad=grad) -> None:  # noqa: ANN001
                fn().backward(grad)

            host_loop(step, 5, leaves)  # first launches (compile, tune)
            enqueue = host_loop(step, n, leaves)
            synced = host_loop(step, n, leaves, synced=True)
            ms = bench(step, True, grad_to_none=leaves)[0]
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                host_loop(step, 20, leaves)
            kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
            device = sum(e.self_device_time_total for e in kernels) / 20
            stats = cProfile.Profile()
            stats.enable()
            host_loop(step, n, leaves)
            stats.disable()
            text = io.StringIO()
            pstats.Stats(stats, stream=text).sort_stats("tottime").print_stats(30)
            label = prov if gluon is None else f"{prov}_gluon{gluon}"
            print(f"  {name} {label:14s} {enqueue:7.1f} / {synced:7.1f} / {ms * 1e3:7.1f} / "
                  f"{device:7.1f}", flush=True)  # fmt: skip
            with open(out_dir / f"steps_{name}_{label}.txt", "w") as f:
                f.write(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=20))
                f.write("\n" + text.getvalue())
    switch("SHOPML_ATTN_GLUON", None)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0] + " Needs CUDA; CSV and cProfiles go to $OUT."
    )
    ap.add_argument("--parts", default="ops,attention")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    checks_enabled(False)  # the hot-loop setting, as in bench_attention.py
    out_dir = Path(os.environ.get("OUT", "."))
    fast = FastLaunch()
    rows = []
    parts = args.parts.split(",")
    if "ops" in parts:
        rows += part_ops(fast, args.rounds)
    if "attention" in parts:
        rows += part_attention(fast, args.rounds, out_dir)
    if "split" in parts:
        part_split()
    if "harness" in parts:
        part_harness()
    if "steps" in parts:
        part_steps(out_dir)
    if rows:  # (split prints only: no header-only CSV for it)
        append_rows(out_dir / f"attention_host-{device_slug()}.csv", rows, run_meta())


if __name__ == "__main__":
    main()
