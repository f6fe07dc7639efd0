"""Host cost of eager attention calls on small cases, and do_bench rounds alternating providers.

For two host-bound cases of the issue's grid, shopml against varlen_attn:
- the enqueue time per call of a loop of eager forward and forward+backward calls (one
  synchronisation at the end; these cases' GPU work is far smaller than their host work);
- four rounds of ``do_bench`` (timed as bench_attention.py times them), the providers alternating
  within each round, which shows how far single host-bound measurements move;
- a cProfile of 300 forward+backward calls per provider, written to ``$OUT/prof_<provider>_<D>.txt``.

Usage (GPU machine): PYTHONPATH=src python3 benchmarks/attention_host.py
Results: benchmarks/results/attention_host-nvidia-h200.txt, discussed in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attention import Case, bench, make_provider  # noqa: E402

from shopml.jagged.checks import checks_enabled  # noqa: E402

CASES = (
    dict(B=256, N=256, H=2, D=64, fill=0.1, causal=False),
    dict(B=1024, N=256, H=2, D=128, fill=0.5, causal=False),
)
PROVIDERS = ("shopml", "varlen")


def host_loop(fn, n: int = 400, reset=()) -> float:  # noqa: ANN001
    """Microseconds per call of ``n`` back-to-back calls (one sync at the end)."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        for x in reset:
            x.grad = None
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return round((t1 - t) / n * 1e6, 1)


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__.split("\n")[0] + " Needs CUDA; cProfiles go to $OUT (default .)."
    ).parse_args()
    checks_enabled(False)  # the hot-loop setting, as in bench_attention.py
    out_dir = Path(os.environ.get("OUT", "."))
    for cfg in CASES:
        case = Case(cfg, 0)
        provs = {p: make_provider(p, case) for p in PROVIDERS}
        for fn, inputs, grad in provs.values():
            for _ in range(3):  # compile / autotune
                fn().backward(grad)
            for t in inputs:
                t.grad = None
        print(cfg)
        for p, (fn, inputs, grad) in provs.items():
            with torch.no_grad():
                fwd = host_loop(fn)
            both = host_loop(lambda: fn().backward(grad), reset=inputs)  # noqa: B023
            print(f"  {p:8s} host loop: fwd {fwd} us, fwd+bwd {both} us")
        for _ in range(4):
            line = []
            for p, (fn, inputs, grad) in provs.items():
                ms = bench(lambda: fn().backward(grad), True, grad_to_none=inputs)[0]  # noqa: B023
                line.append(f"{p} {ms * 1e3:.0f}")
            print("  do_bench us:", ", ".join(line))
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
            (out_dir / f"prof_{p}_{cfg['D']}.txt").write_text(text.getvalue())


if __name__ == "__main__":
    main()
