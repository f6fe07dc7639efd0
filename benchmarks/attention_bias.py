"""The relative-time bias's cost per attention kernel at the ranking model's shapes (issue 13).

One process per source tree (``--tree``, its ``src`` on ``sys.path``) so that trees can be timed
side by side in one GPU call. Inputs as in benchmarks/bench_rank.py: ``B`` sequences of N=1024 at
most, its heavy-tailed lengths (mean fill 0.2), H=2, D=64, bf16, non-causal self-attention; event
times as its synthetic events (increasing, gaps of 1 s to 4 h) in whole minutes, the model's
bias unit; 16 buckets, boundaries -7..7 (consecutive). Modes:

- ``none``: no bias;
- ``bias``: the relative bias with the model's times (diagonal tiles hold middle buckets: mixed);
- ``far``: the key times shifted by 10**6 minutes, so every tile shares bucket 0: the per-tile
  cost of the bias (times, spans, branch, one scalar add) without any mixed tile.

Per kernel (forward, dQ, dK/dV) the device time of one call from the PyTorch profiler, the mean of
``--reps`` forward+backward calls, the median of ``--rounds`` rounds (modes alternating within a
round), with the binary's registers and spill bytes. ``--sweep`` also times, with the bias, every
Hopper-path tile candidate of each kernel and a few more tiles (EXTRA), the other two kernels at
their shipped tiles. ``--stats`` prints, without a GPU, the share of mixed tiles per tile shape.
Rows go to ``--csv`` (appended).

    PYTHONPATH=src python3 benchmarks/attention_bias.py --tree . --name head --sweep --csv out.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np

KERNELS = {"fwd": "_attn_fwd_kernel", "dq": "_attn_bwd_dq_kernel", "dkdv": "_attn_bwd_dkdv_kernel"}
FAR = 10**6  # minutes: beyond any sequence's span (1024 events * 4 h < 2.5e5 min)


def lengths_for(b: int, n: int, fill: float, seed: int = 0) -> np.ndarray:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_rank import heavy_tailed_lengths

    return heavy_tailed_lengths(np.random.default_rng(seed), b, n, fill)


def minutes_for(lengths: np.ndarray, seed: int = 1) -> np.ndarray:
    """Increasing event times in minutes per sequence (gaps of 1 s to 4 h, as bench_rank's)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        seconds = np.cumsum(rng.integers(1, 4 * 3600, n)) - 10**9
        out.append(seconds // 60)
    return np.concatenate(out).astype(np.int64)


def mixed_share(lengths: np.ndarray, times: np.ndarray, bm: int, bn: int) -> float:
    """Share of (BM, BN) tiles whose pairs do not all lie beyond the boundaries -7..7."""
    mixed = total = 0
    start = 0
    for n in lengths:
        t = times[start : start + n]
        start += n
        for i in range(0, n, bm):
            qb = t[i : i + bm]
            for j in range(0, n, bn):
                kb = t[j : j + bn]
                total += 1
                d_lo, d_hi = qb.min() - kb.max(), qb.max() - kb.min()
                mixed += not (d_lo >= 7 or d_hi < -7)
    return mixed / total


class Case:
    def __init__(
        self, b: int, n: int, fill: float, device: str, heads: int = 2, dim: int = 64
    ) -> None:
        import torch

        from shopml.jagged.attention_reference import RelativeBias

        self.lengths = lengths_for(b, n, fill)
        dev = torch.device(device)
        total = int(self.lengths.sum())
        self.offsets = torch.zeros(b + 1, dtype=torch.int64, device=dev)
        self.offsets[1:] = torch.as_tensor(np.cumsum(self.lengths), device=dev)
        self.n = n
        g = torch.Generator(device=dev).manual_seed(0)
        self.qkv = [
            torch.randn(
                total, heads, dim, device=dev, dtype=torch.bfloat16, generator=g
            ).requires_grad_()
            for _ in range(3)
        ]
        self.grad = torch.randn(total, heads, dim, device=dev, dtype=torch.bfloat16, generator=g)
        times = torch.as_tensor(minutes_for(self.lengths), device=dev)
        table = (0.1 * torch.randn(16, heads, device=dev, generator=g)).requires_grad_()
        bounds = torch.arange(-7, 8, device=dev, dtype=torch.int64)
        self.bias = {
            "none": None,
            "bias": RelativeBias(table, bounds, times, times, consecutive=True),
            "far": RelativeBias(table, bounds, times, times + FAR, consecutive=True),
        }

    def step(self, mode: str) -> None:
        from shopml.jagged.attention_triton import jagged_flash_attention

        q, k, v = self.qkv
        out = jagged_flash_attention(q, k, v, self.offsets, self.n, attn_bias=self.bias[mode])
        out.backward(self.grad)


def launchers() -> dict:
    from shopml.jagged.triton import attention_bwd, attention_fwd

    return {"fwd": attention_fwd._FWD_TMA, "dq": attention_bwd._DQ_TMA,
            "dkdv": attention_bwd._DKDV_TMA}  # fmt: skip


def force(kind: str, cfg: dict | None) -> None:
    """Launch ``kind``'s kernel at ``cfg`` (None: its own choice again)."""
    launcher = launchers()[kind]
    launcher._cache.clear()
    if cfg is None:
        launcher._tuner.__dict__.pop("choose", None)
    else:
        launcher._tuner.choose = lambda *a, _cfg=dict(cfg), **k: dict(_cfg)


def registers(kind: str, mode: str) -> tuple[int, int]:
    """(registers, spill bytes) of the binary ``kind``'s launcher last ran in ``mode``'s bias
    mode (-1, -1 if none is cached)."""
    want = 0 if mode == "none" else 2
    for compiled, meta, _ in launchers()[kind]._cache.values():
        if meta.get("BIAS_MODE") == want:
            return int(getattr(compiled, "n_regs", -1)), int(getattr(compiled, "n_spills", -1))
    return -1, -1


def kernel_ms(case: Case, mode: str, reps: int) -> dict[str, float]:
    """Mean device ms per call of each attention kernel over ``reps`` forward+backward calls."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sync = torch.cuda.synchronize if case.offsets.is_cuda else (lambda: None)
    case.step(mode)
    sync()
    activity = ProfilerActivity.CUDA if case.offsets.is_cuda else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        for _ in range(reps):
            case.step(mode)
        sync()
    totals = {kind: 0.0 for kind in KERNELS}
    for ev in prof.key_averages():
        for kind, name in KERNELS.items():
            if ev.key == name:
                totals[kind] += ev.self_device_time_total / 1000.0
    return {kind: ms / reps for kind, ms in totals.items()}


# tiles outside the tuner's candidates, timed with --sweep too: (BM, BN, warps, stages, TMA)
# and, with a sixth field, a register cap (``maxnreg``: 168 lets three 4-warp programs share an SM)
EXTRA = {
    "fwd": [(64, 64, 8, 3, 0), (32, 64, 4, 3, 0), (64, 64, 4, 3, 0, 168)],
    "dq": [(64, 32, 8, 3, 0), (32, 32, 4, 3, 0), (32, 64, 4, 3, 0), (64, 32, 4, 3, 0, 168)],
    "dkdv": [(64, 64, 4, 3, 0), (32, 64, 8, 3, 0), (64, 32, 4, 3, 0), (32, 64, 4, 3, 1, 168)],
}


def _tile(shape: tuple[int, ...]) -> dict:
    from shopml.jagged.triton.attention_common import _config

    cfg = _config(shape[:5])
    if len(shape) > 5:
        cfg["maxnreg"] = shape[5]
    return cfg


def candidates(kinds: list[str]) -> dict[str, list[dict]]:
    """The Hopper path's tile candidates of each kernel (attention_common._SHAPES_TMA), then
    EXTRA's."""
    from shopml.jagged.triton.attention_common import _SHAPES_TMA

    return {kind: [_tile(s) for s in (*_SHAPES_TMA[kind], *EXTRA[kind])] for kind in kinds}


def tile_name(cfg: dict | None) -> str:
    if cfg is None:
        return "shipped"
    keys = ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages", "TMA", "maxnreg")
    return "(" + ",".join(str(cfg[k]) for k in keys if k in cfg) + ")"


def run(args: argparse.Namespace) -> None:
    import torch

    rows = []
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else args.device
    for b in args.batch:
        case = Case(b, args.n, args.fill, args.device)
        # (mode, kernel forced or None, its tile or None)
        plan = [("none", None, None), ("far", None, None), ("bias", None, None)]
        if args.sweep:
            plan += [
                ("bias", kind, cfg)
                for kind, cfgs in candidates(args.kernels).items()
                for cfg in cfgs
            ]
        failed = set()  # tiles that did not compile or run (left out, with the reason printed)
        if args.warm_only:  # compile every variant (the timing process then finds the binaries)
            for mode, kind, cfg in plan:
                if kind:
                    force(kind, cfg)
                try:
                    case.step(mode)
                except Exception as exc:  # noqa: BLE001 - one failing tile must not stop the rest
                    print(f"[{args.name}] {mode} {kind} {tile_name(cfg)} failed: {exc!r}"[:400])
                if kind:
                    force(kind, None)
            print(f"[{args.name}] B={b} warm", flush=True)
            continue
        samples: dict[tuple, list[dict]] = {}
        regs: dict[tuple, tuple[int, int]] = {}
        for _ in range(args.rounds):
            for mode, kind, cfg in plan:
                if (mode, kind, tile_name(cfg)) in failed:
                    continue
                if kind:
                    force(kind, cfg)
                try:
                    ms = kernel_ms(case, mode, args.reps)
                except Exception as exc:  # noqa: BLE001 - one failing tile must not stop the rest
                    failed.add((mode, kind, tile_name(cfg)))
                    print(f"[{args.name}] {mode} {kind} {tile_name(cfg)} failed: {exc!r}"[:400])
                    ms = None
                if ms is not None:
                    samples.setdefault((mode, kind, tile_name(cfg)), []).append(ms)
                    for k in [kind] if kind else KERNELS:
                        regs[(mode, kind, tile_name(cfg), k)] = registers(k, mode)
                if kind:
                    force(kind, None)
        for (mode, kind, tile), runs in samples.items():
            for k in [kind] if kind else KERNELS:
                ms = statistics.median(r[k] for r in runs)
                n_regs, spills = regs[(mode, kind, tile, k)]
                rows.append(dict(tree=args.name, B=b, N=args.n, fill=args.fill, mode=mode,
                                 kernel=k, tile=tile, ms=round(ms, 4), registers=n_regs,
                                 spill_bytes=spills, gpu=gpu))  # fmt: skip
                print(f"[{args.name}] B={b} {mode:5s} {k:5s} {tile:20s} {ms:.4f} ms "
                      f"regs {n_regs} spills {spills}", flush=True)  # fmt: skip
    if rows and args.csv:
        path = Path(args.csv)
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            if new:
                w.writeheader()
            w.writerows(rows)


def stats(args: argparse.Namespace) -> None:
    for b in args.batch:
        lengths = lengths_for(b, args.n, args.fill)
        times = minutes_for(lengths)
        for bm, bn in ((64, 64), (64, 32), (16, 128), (32, 64), (128, 64)):
            share = mixed_share(lengths, times, bm, bn)
            print(f"B={b} tile ({bm}, {bn}): mixed {share:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", default=".", help="source tree whose src/ is imported")
    p.add_argument("--name", default="tree")
    p.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--fill", type=float, default=0.2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), help="those --sweep times")
    p.add_argument("--warm-only", action="store_true")
    p.add_argument("--stats", action="store_true")
    p.add_argument("--csv", default="")
    p.add_argument("--device", default="cuda", help="cpu: a dry run in the interpreter (no times)")
    args = p.parse_args()
    sys.path.insert(0, str(Path(args.tree).resolve() / "src"))
    import shopml  # bound to this tree before bench_rank puts its own src first on the path

    print(f"[{args.name}] shopml from {Path(shopml.__file__).parent}", flush=True)
    t0 = time.time()
    (stats if args.stats else run)(args)
    print(f"[{args.name}] done in {time.time() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
