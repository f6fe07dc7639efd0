"""The relative bias's bucket computation inside the attention kernels (``_bucket_frame`` and
``_bucket`` of shopml/jagged/triton/attention_common.py) against ``torch.bucketize``.

A small kernel runs the kernels' own helpers on one tile of query and key timestamps, either side
stationary (the forward and dQ kernels hold the queries, dK/dV the keys), and the test checks
every pair against the reference, and which of the two ways (closed form or per-boundary
compares) ran:
edge deltas (0, +-1, each boundary and its neighbours, the int32 and saturation limits, int64
extremes, where the int64 difference wraps), default and other boundaries, boundaries beyond
int32, widely spread timestamps, random ones.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from shopml.common.devices import has_cuda, is_interpreter
from shopml.jagged.attention import bucketize_delta, log_bucket_boundaries
from shopml.jagged.triton.attention_common import _bucket, _bucket_frame

I64_MAX, I64_MIN = 2**63 - 1, -(2**63)


def _device() -> str:
    if has_cuda():
        return "cuda"
    if is_interpreter():
        return "cpu"
    pytest.skip("needs CUDA or TRITON_INTERPRET=1")


@triton.jit
def _buckets_kernel(
    tq_ptr, tk_ptr, bounds_ptr, out_ptr, flags_ptr, len_q, len_k, num_bounds,
    Q_STATIONARY: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One tile of buckets through the attention kernels' helpers; flags: 1 = closed form ran,
    2 = every lane's bucket (real lane or not) is a legal table row."""
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    mask_m = offs_m < len_q
    mask_n = offs_n < len_k
    tq = tl.load(tq_ptr + offs_m, mask=mask_m, other=0)
    tk = tl.load(tk_ptr + offs_n, mask=mask_n, other=0)
    if Q_STATIONARY:
        ref, fast, first = _bucket_frame(tq, mask_m, bounds_ptr, num_bounds)
    else:
        ref, fast, first = _bucket_frame(tk, mask_n, bounds_ptr, num_bounds)
    bucket = _bucket(tq[:, None], tk[None, :], ref, fast, first, bounds_ptr, num_bounds)
    inside = mask_m[:, None] & mask_n[None, :]
    tl.store(out_ptr + offs_m[:, None] * len_k + offs_n[None, :], bucket, mask=inside)
    legal = (bucket >= 0) & (bucket <= num_bounds)
    tl.store(flags_ptr, fast.to(tl.int32) + 2 * tl.min(tl.min(legal.to(tl.int32), 1), 0))


def _buckets(tq: list[int], tk: list[int], bounds: torch.Tensor, q_stationary: bool):
    """(buckets (len(tq), len(tk)) int64, whether the closed form ran) from the kernel helpers."""
    device = _device()
    tq_t = torch.tensor(tq, dtype=torch.int64, device=device)
    tk_t = torch.tensor(tk, dtype=torch.int64, device=device)
    bounds = bounds.to(device)
    out = torch.full((len(tq), len(tk)), -1, dtype=torch.int32, device=device)
    flags = torch.zeros(1, dtype=torch.int32, device=device)
    n = bounds.numel()
    _buckets_kernel[(1,)](
        tq_t, tk_t, bounds if n else torch.zeros(1, dtype=torch.int64, device=device), out, flags,
        len(tq), len(tk), n, Q_STATIONARY=q_stationary,
        BLOCK_M=triton.next_power_of_2(max(len(tq), 16)),
        BLOCK_N=triton.next_power_of_2(max(len(tk), 16)),
    )  # fmt: skip
    flag = int(flags.item())
    assert flag & 2, "a lane's bucket fell outside [0, num_bounds]"
    return out.long().cpu(), bool(flag & 1)


def _check(stationary: list[int], streamed: list[int], bounds: torch.Tensor, fast: bool) -> None:
    """Both orientations: the queries stationary (forward, dQ), then the keys (dK/dV)."""
    for tq, tk, q_stationary in ((stationary, streamed, True), (streamed, stationary, False)):
        delta = torch.tensor(tq, dtype=torch.int64)[:, None] - torch.tensor(tk)[None, :]
        got, ran_fast = _buckets(tq, tk, bounds, q_stationary)
        assert ran_fast == fast
        expected = bucketize_delta(delta, bounds)  # (int64 differences wrap in both)
        bad = (got != expected).nonzero()[:5].tolist()
        assert not bad, [(tq[i], tk[j], int(got[i, j]), int(expected[i, j])) for i, j in bad]


def _edge_offsets(bounds: torch.Tensor) -> list[int]:
    """Offsets from a base that hit every edge of the bucketing and of the int32 frame."""
    out = {0, 1, -1, 2, -2}
    for b in bounds.tolist():
        out.update({b - 1, b, b + 1})
    for p in (28, 29, 30, 31, 32, 40, 62):
        for s in (-1, 1):
            out.update({s * 2**p, s * 2**p - 1, s * 2**p + 1, s * (2**p - 2), s * (2**p + 2)})
    return sorted(out)


def _streamed(base: int, offsets: list[int]) -> list[int]:
    """``base + offset`` for each offset that stays inside int64, plus the int64 extremes."""
    vals = {base + o for o in offsets if I64_MIN <= base + o <= I64_MAX}
    return sorted(vals | {I64_MIN, I64_MIN + 1, I64_MAX, I64_MAX - 1})


@pytest.mark.parametrize("num_buckets", [16, 8, 2])
@pytest.mark.parametrize("base", [0, 10**12, -(10**12), I64_MAX - 5, I64_MIN + 5])
def test_default_boundaries_take_the_closed_form_and_match_bucketize(num_buckets, base):
    bounds = log_bucket_boundaries(num_buckets)  # 16: -7, ..., 7 (consecutive)
    assert bool((bounds[1:] - bounds[:-1] == 1).all())
    stationary = [base + d for d in (0, 1, 3, 7, 2**27) if I64_MIN <= base + d <= I64_MAX]
    tk = _streamed(base, _edge_offsets(bounds))
    for lo in range(0, len(tk), 64):  # one tile of keys at a time
        _check(stationary, tk[lo : lo + 64], bounds, fast=True)


@pytest.mark.parametrize(
    "bounds",
    [
        log_bucket_boundaries(32, 4096),  # log-spaced beyond +-8
        log_bucket_boundaries(16, 4096, bidirectional=False),  # 1, ..., 8, 20, ..., 4096
        torch.tensor([-(2**40), 0, 2**40]),  # beyond int32
        torch.tensor([I64_MIN, -5, 5, I64_MAX]),  # the int64 extremes themselves
        torch.tensor([2**35 + i for i in range(5)]),  # consecutive, but beyond the int32 frame
        torch.tensor([2**29 + 1, 2**29 + 2]),  # consecutive, just past the int32 frame
    ],
    ids=["log32", "one-sided", "wide", "int64-extremes", "consecutive-far", "just-past-frame"],
)
def test_other_boundaries_take_the_general_way_and_match_bucketize(bounds):
    base = 123_456_789_012
    stationary = [base, base + 1, base + 1000]
    tk = _streamed(base, _edge_offsets(bounds))
    for lo in range(0, len(tk), 64):
        _check(stationary, tk[lo : lo + 64], bounds, fast=False)


def test_boundaries_at_the_edge_of_the_int32_frame_take_the_closed_form():
    for bounds in (torch.arange(2**29 - 14, 2**29 + 1), torch.arange(-(2**29), -(2**29) + 15)):
        stationary = [0, 5, 2**28 - 1]
        tk = _streamed(0, _edge_offsets(bounds))
        for lo in range(0, len(tk), 64):
            _check(stationary, tk[lo : lo + 64], bounds, fast=True)


def test_no_boundary_and_one_boundary():
    tk = _streamed(7, _edge_offsets(torch.tensor([0])))
    _check([7, 9], tk[:64], torch.zeros(0, dtype=torch.int64), fast=True)
    _check([7, 9], tk[:64], torch.tensor([0]), fast=True)
    _check([7, 9], tk[:64], torch.tensor([3]), fast=True)


def test_widely_spread_stationary_timestamps_take_the_general_way():
    bounds = log_bucket_boundaries(16)
    for spread in (2**28, 2**40, I64_MAX):  # the frame needs a spread below 2**28
        stationary = [0, spread]
        tk = _streamed(0, _edge_offsets(bounds)) + _streamed(spread, _edge_offsets(bounds))
        for lo in range(0, len(tk), 64):
            _check(stationary, tk[lo : lo + 64], bounds, fast=False)
    _check([0, 2**28 - 1], [0, 5, 2**28, -(2**30)], bounds, fast=True)  # just inside


@pytest.mark.parametrize("scale", [10, 2**20, 2**31, 2**62])
def test_random_timestamps_match_bucketize(scale):
    gen = torch.Generator().manual_seed(scale % 1000)
    for bounds, linear in ((log_bucket_boundaries(16), True), (log_bucket_boundaries(32), False)):
        stationary = torch.randint(-scale, scale, (13,), generator=gen).tolist()
        streamed = torch.randint(-scale, scale, (50,), generator=gen).tolist()
        fast = linear and max(stationary) - min(stationary) < 2**28
        _check(stationary, streamed, bounds, fast)
