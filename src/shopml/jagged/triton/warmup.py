"""Precompile (and, where nothing is remembered, tune) the attention kernels for given shapes.

``shopml jagged warmup`` calls :func:`warmup_attention` so that a service's first request or a
training job's first step does not wait for Triton: each (head dim, length bucket, causal) runs one
forward and one backward on random inputs whose longest sequence is the given length. Compiled
binaries land in Triton's disk cache and tile choices in shopml's (tuning.py), so the next process
pays neither. Integer arguments such as ``max_seqlen`` are not specialised by the kernels, so one
length per power-of-two bucket covers every length of that bucket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch

DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
CAUSAL = {"no": (False,), "yes": (True,), "both": (False, True)}


def parse_ints(text: str, name: str, lo: int, hi: int) -> list[int]:
    """``"64,128"`` -> ``[64, 128]``; ValueError naming ``name`` for anything else."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise ValueError(f"{name}: expected comma-separated integers, found {text!r}")
    out = []
    for p in parts:
        try:
            value = int(p)
        except ValueError:
            raise ValueError(f"{name}: expected comma-separated integers, found {p!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"{name}: expected integers in [{lo}, {hi}], found {value}")
        out.append(value)
    return sorted(set(out))


def parse_dtype(text: str) -> torch.dtype:
    if text not in DTYPES:
        raise ValueError(f"--dtype: expected one of {sorted(DTYPES)}, found {text!r}")
    return DTYPES[text]


def parse_causal(text: str) -> tuple[bool, ...]:
    if text not in CAUSAL:
        raise ValueError(f"--causal: expected one of {sorted(CAUSAL)}, found {text!r}")
    return CAUSAL[text]


def _batch(max_seqlen: int, tokens: int) -> list[int]:
    """Lengths with the longest equal to ``max_seqlen`` and about ``tokens`` tokens in all."""
    count = max(1, tokens // max(1, max_seqlen // 2))
    lengths = [max(1, (max_seqlen * (i + 1)) // count) for i in range(count)]
    lengths[-1] = max_seqlen
    return lengths


def warmup_attention(
    head_dims: Iterable[int],
    dtype: torch.dtype,
    max_seqlens: Iterable[int],
    *,
    heads: int = 2,
    causal: Iterable[bool] = (False,),
    device: torch.device | str = "cuda",
    tokens: int = 16384,
) -> list[dict]:
    """One forward + backward per (head dim, max length, causal); returns a row per shape.

    The kernels of every shape whose tiles are known (remembered or shipped) compile first, at
    once, each in a process of its own (:mod:`shopml.jagged.triton.precompile`); the rest compile
    (and tune) at their first launch. Each row: ``head_dim, max_seqlen, causal, seconds`` (wall
    time of the shape's first call after that, loading, tuning and any compile left included)
    and ``sources`` (where each kernel's tile came from: ``pretuned``, ``disk``, ``timed`` or
    ``default``; empty when already chosen in this process).
    """
    from shopml.jagged.triton import attention_bwd as bwd
    from shopml.jagged.triton import attention_fwd as fwd
    from shopml.jagged.triton import precompile
    from shopml.jagged.triton.launch import collecting

    device = torch.device(device)
    tuners = [fwd._FWD._tuner, bwd._FUSED._tuner, bwd._DKDV._tuner, bwd._DQ._tuner,
              fwd._FWD_TMA._tuner, bwd._DKDV_TMA._tuner, bwd._DQ_TMA._tuner]  # fmt: skip
    shapes = [(d, n, c) for d in head_dims for n in max_seqlens for c in causal]
    batches = {}
    for d, n, c in shapes:
        lengths = _batch(n, tokens)
        offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()]).to(device)
        total = sum(lengths)
        qkvd = [torch.randn(total, heads, d, device=device, dtype=dtype) for _ in range(4)]
        batches[d, n, c] = (offsets, *qkvd)
    none = (None,) * 6

    def run(d: int, n: int, c: bool) -> None:
        offsets, q, k, v, do = batches[d, n, c]
        args = (n, n, 1.0 / math.sqrt(d), 1.0, c, False)
        out, lse = fwd._attn_fwd(q, k, v, offsets, offsets, *none, *args, False)
        bwd._attn_bwd(do, q, k, v, out, lse, offsets, offsets, *none, *args, False)

    with collecting() as jobs:  # every shape's kernels, compiled at once, one process each
        for shape in shapes:
            run(*shape)
    precompile.compile_all(jobs)
    rows = []
    for d, n, c in shapes:
        seen = [dict(t.sources) for t in tuners]
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        run(d, n, c)
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        sources = sorted(
            {src for t, old in zip(tuners, seen, strict=True)
             for key, src in t.sources.items() if key not in old}
        )  # fmt: skip
        rows.append(dict(head_dim=d, max_seqlen=n, causal=c, seconds=seconds, sources=sources))
    return rows
