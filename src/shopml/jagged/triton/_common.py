"""Helpers shared by the Triton kernel files: autotune config lists and shape buckets.

Nothing here queries CUDA: the config list depends only on environment variables read when the
kernel module is imported. Under ``TRITON_INTERPRET=1`` every kernel gets exactly one (small)
config. ``SHOPML_JAGGED_AUTOTUNE=0`` keeps only the first GPU config of each kernel (no tuning:
fast compiles, used by the GPU test run); otherwise GPU kernels autotune over their list, keyed on
power-of-two shape buckets.
"""

from __future__ import annotations

import os

import triton

from shopml.common.devices import is_interpreter


def configs(gpu: list[dict], interpreter: dict, num_warps: int = 4) -> list[triton.Config]:
    """GPU autotune candidates, or the single interpreter config under ``TRITON_INTERPRET=1``."""
    if is_interpreter():
        return [triton.Config(interpreter, num_warps=1, num_stages=1)]
    if os.environ.get("SHOPML_JAGGED_AUTOTUNE", "1") == "0":
        gpu = gpu[:1]
    out = []
    for c in gpu:
        c = dict(c)
        warps = c.pop("num_warps", num_warps)
        stages = c.pop("num_stages", 2)
        out.append(triton.Config(c, num_warps=warps, num_stages=stages))
    return out


# host-side arithmetic in plain Python: triton.cdiv / next_power_of_2 are constexpr functions
# whose wrappers cost microseconds per call on the launch path
def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def pow2(n: int, lo: int = 16) -> int:
    """Next power of two, at least ``lo`` (``tl.dot`` needs block dims >= 16); also the autotune
    key bucket, so that nearby shapes share a config."""
    return max(lo, 1 << max(0, int(n) - 1).bit_length())


def flat2d(t, rows: int):
    """View ``(rows, ...)`` as contiguous ``(rows, D)``; returns (tensor, D)."""
    t = t.contiguous()
    d = 1
    for s in t.shape[1:]:
        d *= s
    return t.view(rows, d), d
