"""The ranking model's target attention (one query per example over its jagged history; issue
13): device us a call of each kernel at the shipped tiles, then each kernel forced to tiles of
16-64 query rows. GPU only: ``PYTHONPATH=src python3 benchmarks/rank_target_attention.py``."""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attention_bias as ab  # noqa: E402


class TargetCase:
    def __init__(self, b, n=1024, fill=0.2, heads=2, dim=64, m=1):
        self.lengths = ab.lengths_for(b, n, fill)
        dev = torch.device("cuda")
        total = int(self.lengths.sum())
        self.offsets = torch.zeros(b + 1, dtype=torch.int64, device=dev)
        self.offsets[1:] = torch.as_tensor(self.lengths.cumsum(), device=dev)
        self.n = n
        g = torch.Generator(device=dev).manual_seed(0)
        mk = lambda *s: torch.randn(*s, device=dev, dtype=torch.bfloat16, generator=g)  # noqa: E731
        self.q = mk(b, m, heads, dim).requires_grad_()
        self.k = mk(total, heads, dim).requires_grad_()
        self.v = mk(total, heads, dim).requires_grad_()
        self.grad = mk(b, m, heads, dim)

    def step(self, mode):
        from shopml.jagged.attention import jagged_target_attention

        out = jagged_target_attention(self.q, self.k, self.v, self.offsets, self.n)
        out.backward(self.grad)


TILES = {
    "fwd": [
        (16, 64, 4, 3, 0),
        (16, 128, 4, 3, 0),
        (16, 128, 4, 4, 0),
        (16, 256, 8, 3, 0),
        (16, 64, 4, 3, 1),
        (16, 128, 4, 3, 1),
        (32, 64, 4, 3, 0),
        (64, 64, 4, 3, 0),
    ],
    "dq": [
        (16, 64, 4, 3, 0),
        (16, 128, 4, 3, 0),
        (16, 128, 8, 3, 0),
        (16, 64, 4, 3, 1),
        (16, 128, 4, 3, 1),
        (32, 64, 4, 3, 0),
        (64, 32, 4, 3, 0),
    ],
    "dkdv": [
        (16, 128, 4, 3, 0),
        (16, 64, 4, 3, 0),
        (16, 128, 4, 3, 1),
        (16, 256, 8, 3, 0),
        (32, 64, 4, 3, 0),
    ],
}
for b in (256, 1024):
    case = TargetCase(b)
    t0 = time.time()
    base = ab.kernel_ms(case, "none", 10)
    print(
        f"B={b} shipped: " + " ".join(f"{k} {v * 1e3:.1f}us" for k, v in base.items()),
        f"sum {sum(base.values()) * 1e3:.1f}us",
        flush=True,
    )
    for kind, tiles in TILES.items():
        for t in tiles:
            cfg = ab._tile(t)
            ab.force(kind, cfg)
            try:
                ms = ab.kernel_ms(case, "none", 10)[kind]
                print(f"B={b} {kind} {ab.tile_name(cfg)} {ms * 1e3:.1f}us", flush=True)
            except Exception as exc:  # noqa: BLE001
                err = f"{type(exc).__name__}: {str(exc)[:120]}"
                print(f"B={b} {kind} {ab.tile_name(cfg)} failed: {err}")
        ab.force(kind, None)
    print(f"B={b} done in {time.time() - t0:.0f}s", flush=True)
