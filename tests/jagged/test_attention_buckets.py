"""The relative bias's bucket computation inside the attention kernels (``_below`` and
``_bucket`` of shopml/jagged/triton/attention_common.py) against ``torch.bucketize``.

A small kernel runs the kernels' own helpers on one tile of query and key timestamps, in the way
the host chooses (``consecutive_boundaries``: the closed form) and in the general way (the
per-boundary compares, valid for any boundaries), and the test checks every pair against the
reference: edge deltas (0, +-1, each boundary and its neighbours, the int32 limits, int64
extremes, where the int64 difference wraps), default and other boundaries, boundaries beyond
int32, widely spread timestamps, random ones.
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl
from cases import triton_device

from shopml.jagged.attention import (
    RelativeBias,
    bucketize_delta,
    consecutive_boundaries,
    log_bucket_boundaries,
)
from shopml.jagged.attention_triton import _consecutive
from shopml.jagged.modules import RelativeBiasTable
from shopml.jagged.triton.attention_common import _below, _block_span, _bucket, _time_spans

I64_MAX, I64_MIN = 2**63 - 1, -(2**63)


@triton.jit
def _buckets_kernel(
    tq_ptr, tk_ptr, bounds_ptr, out_ptr, flags_ptr, len_q, len_k, num_bounds,
    CONSECUTIVE: tl.constexpr, NB_PAD: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """One tile of buckets through the attention kernels' helpers; flag 1: every lane's bucket
    (real lane or not) is a legal table row."""
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    mask_m = offs_m < len_q
    mask_n = offs_n < len_k
    tq = tl.load(tq_ptr + offs_m, mask=mask_m, other=0)
    tk = tl.load(tk_ptr + offs_n, mask=mask_n, other=0)
    below = _below(bounds_ptr, num_bounds, CONSECUTIVE)
    bucket = _bucket(tq[:, None], tk[None, :], below, bounds_ptr, num_bounds, CONSECUTIVE,
                     NB_PAD)  # fmt: skip
    inside = mask_m[:, None] & mask_n[None, :]
    tl.store(out_ptr + offs_m[:, None] * len_k + offs_n[None, :], bucket, mask=inside)
    legal = (bucket >= 0) & (bucket <= num_bounds)
    tl.store(flags_ptr, tl.min(tl.min(legal.to(tl.int32), 1), 0))


def _buckets(tq: list[int], tk: list[int], bounds: torch.Tensor, consecutive: bool):
    """Buckets ``(len(tq), len(tk))`` int64 from the kernel helpers, one way."""
    device = triton_device()
    tq_t = torch.tensor(tq, dtype=torch.int64, device=device)
    tk_t = torch.tensor(tk, dtype=torch.int64, device=device)
    bounds = bounds.to(device)
    out = torch.full((len(tq), len(tk)), -1, dtype=torch.int32, device=device)
    flags = torch.zeros(1, dtype=torch.int32, device=device)
    n = bounds.numel()
    _buckets_kernel[(1,)](
        tq_t, tk_t, bounds if n else torch.zeros(1, dtype=torch.int64, device=device), out, flags,
        len(tq), len(tk), n, CONSECUTIVE=consecutive, NB_PAD=triton.next_power_of_2(n + 1),
        BLOCK_M=triton.next_power_of_2(max(len(tq), 16)),
        BLOCK_N=triton.next_power_of_2(max(len(tk), 16)),
    )  # fmt: skip
    assert int(flags.item()) == 1, "a lane's bucket fell outside [0, num_bounds]"
    return out.long().cpu()


def _check(stationary: list[int], streamed: list[int], bounds: torch.Tensor, closed: bool) -> None:
    """Both orientations (the queries held by a program: forward, dQ; the keys: dK/dV), in
    the way the host chooses for ``bounds`` (asserted to be the closed form iff ``closed``) and
    in the general way."""
    assert consecutive_boundaries(bounds) == closed
    ways = (True, False) if closed else (False,)
    for tq, tk in ((stationary, streamed), (streamed, stationary)):
        delta = torch.tensor(tq, dtype=torch.int64)[:, None] - torch.tensor(tk)[None, :]
        expected = bucketize_delta(delta, bounds)  # (int64 differences wrap in both)
        for consecutive in ways:
            got = _buckets(tq, tk, bounds, consecutive)
            bad = (got != expected).nonzero()[:5].tolist()
            assert not bad, [(tq[i], tk[j], int(got[i, j]), int(expected[i, j])) for i, j in bad]


def _edge_offsets(bounds: torch.Tensor) -> list[int]:
    """Offsets from a base that hit every edge of the bucketing and of int32 and int64."""
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
        _check(stationary, tk[lo : lo + 64], bounds, closed=True)


@pytest.mark.parametrize(
    "bounds",
    [
        log_bucket_boundaries(32, 4096),  # log-spaced beyond +-8
        log_bucket_boundaries(16, 4096, bidirectional=False),  # 1, ..., 8, 20, ..., 4096
        torch.tensor([-(2**40), 0, 2**40]),  # beyond int32
        torch.tensor([I64_MIN, -5, 5, I64_MAX]),  # the int64 extremes themselves
        torch.tensor([I64_MIN, I64_MIN + 1]),  # consecutive, but first - 1 would wrap
    ],
    ids=["log32", "one-sided", "wide", "int64-extremes", "consecutive-at-int64-min"],
)
def test_other_boundaries_take_the_general_way_and_match_bucketize(bounds):
    base = 123_456_789_012
    stationary = [base, base + 1, base + 1000]
    tk = _streamed(base, _edge_offsets(bounds))
    for lo in range(0, len(tk), 64):
        _check(stationary, tk[lo : lo + 64], bounds, closed=False)


@pytest.mark.parametrize(
    "bounds",
    [
        torch.arange(2**29 - 14, 2**29 + 1),
        torch.arange(-(2**29), -(2**29) + 15),
        torch.tensor([2**35 + i for i in range(5)]),  # beyond int32
        torch.tensor([I64_MIN + 1, I64_MIN + 2]),
        torch.tensor([I64_MAX - 1, I64_MAX]),
    ],
    ids=["int32-high", "int32-low", "beyond-int32", "int64-min", "int64-max"],
)
def test_consecutive_boundaries_anywhere_take_the_closed_form(bounds):
    for base in (0, int(bounds[0])):
        stationary = [base, base + 5, base + 2**28 - 1]
        stationary = [t for t in stationary if t <= I64_MAX]
        tk = _streamed(base, _edge_offsets(bounds))
        for lo in range(0, len(tk), 64):
            _check(stationary, tk[lo : lo + 64], bounds, closed=True)


def test_no_boundary_and_one_boundary():
    tk = _streamed(7, _edge_offsets(torch.tensor([0])))
    _check([7, 9], tk[:64], torch.zeros(0, dtype=torch.int64), closed=True)
    _check([7, 9], tk[:64], torch.tensor([0]), closed=True)
    _check([7, 9], tk[:64], torch.tensor([3]), closed=True)


def test_widely_spread_timestamps_keep_the_closed_form():
    bounds = log_bucket_boundaries(16)
    for spread in (2**28, 2**40, I64_MAX):  # any span: the clamp is on the int64 delta
        stationary = [0, spread]
        tk = _streamed(0, _edge_offsets(bounds)) + _streamed(spread, _edge_offsets(bounds))
        for lo in range(0, len(tk), 64):
            _check(stationary, tk[lo : lo + 64], bounds, closed=True)


@pytest.mark.parametrize("scale", [10, 2**20, 2**31, 2**62])
def test_random_timestamps_match_bucketize(scale):
    gen = torch.Generator().manual_seed(scale % 1000)
    for bounds, closed in ((log_bucket_boundaries(16), True), (log_bucket_boundaries(32), False)):
        stationary = torch.randint(-scale, scale, (13,), generator=gen).tolist()
        streamed = torch.randint(-scale, scale, (50,), generator=gen).tolist()
        _check(stationary, streamed, bounds, closed)


def test_the_way_is_decided_once_and_known_ones_are_not_read():
    """RelativeBiasTable decides once (its boundaries are made on the CPU); the Triton backend
    decides for any other RelativeBias (``_consecutive``, the one place), reading the
    boundaries only when their maker did not say."""
    assert RelativeBiasTable(16, 2).consecutive  # -7, ..., 7
    assert RelativeBiasTable(16, 2)().consecutive
    assert not RelativeBiasTable(32, 2).consecutive  # log-spaced beyond +-8
    table = torch.zeros(4, 1)
    assert RelativeBias(table, torch.tensor([-1, 0, 1])).consecutive is None  # a plain record
    assert _consecutive(RelativeBias(table, torch.tensor([-1, 0, 1])))
    assert not _consecutive(RelativeBias(table, torch.tensor([-1, 0, 2])))
    unreadable = torch.tensor([-1, 0, 2], device="meta")  # .tolist() would raise
    assert _consecutive(RelativeBias(table.to("meta"), unreadable, consecutive=True))
    assert consecutive_boundaries(torch.zeros(0, dtype=torch.int64))
    assert consecutive_boundaries(torch.tensor([I64_MAX - 1, I64_MAX]))
    assert not consecutive_boundaries(torch.tensor([I64_MIN, I64_MIN + 1]))


# ------------------------------------------------------------------------------ tile time spans


@triton.jit
def _tile_spans_kernel(lo_ptr, hi_ptr, offsets_ptr, out_ptr, ROWS: tl.constexpr):
    """Program (tile, sample): ``_block_span`` of rows [tile * ROWS, tile * ROWS + ROWS), as the
    attention kernels take it for a tile of that many rows."""
    tile = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    start = tl.load(offsets_ptr + b).to(tl.int64)
    length = tl.load(offsets_ptr + b + 1).to(tl.int64) - start
    if tile * ROWS < length:
        lo, hi = _block_span(lo_ptr, hi_ptr, start, b, tile * ROWS, length, ROWS)
        slot = (b * tl.num_programs(0) + tile) * 2
        tl.store(out_ptr + slot, lo)
        tl.store(out_ptr + slot + 1, hi)


@pytest.mark.parametrize("rows", [16, 32, 64])
def test_tile_time_spans_from_granules_match_the_times(rows):
    """The granule spans (``_time_spans``, one launch a call) give every tile's (min, max) time,
    for tiles of 1-4 granules, partial last tiles, empty samples, unsorted and extreme times."""
    device = triton_device()
    gen = torch.Generator().manual_seed(rows)
    lengths = [0, 1, 15, 16, 17, 70, 0, 64, 33]
    times = torch.randint(-(2**62), 2**62, (sum(lengths),), generator=gen)
    times[5] = I64_MAX
    times[6] = I64_MIN
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int64)
    lo, hi = _time_spans(times.to(device), offsets.to(device), max(lengths))
    assert lo.numel() == times.numel() // 16 + len(lengths) + 1
    tiles = -(-max(lengths) // rows)
    out = torch.zeros(len(lengths) * tiles * 2, dtype=torch.int64, device=device)
    _tile_spans_kernel[(tiles, len(lengths))](lo, hi, offsets.to(device), out, ROWS=rows)
    out = out.view(len(lengths), tiles, 2).cpu()
    for b, n in enumerate(lengths):
        seq = times[offsets[b] : offsets[b + 1]]
        for t in range(-(-n // rows)):
            block = seq[t * rows : (t + 1) * rows]
            assert out[b, t].tolist() == [block.min().item(), block.max().item()], (b, t)


def test_no_times_give_placeholders():
    device = triton_device()
    lo, hi = _time_spans(None, torch.tensor([0, 3], device=device), 3)
    assert lo.numel() <= 1 and hi.numel() <= 1
