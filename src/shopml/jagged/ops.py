"""Public jagged ops: validate once, then dispatch to the Triton kernels or the reference.

Every op takes ``backend="auto" | "triton" | "reference"``, decided by
:func:`shopml.jagged.backend.use_triton`: ``"auto"`` picks Triton for CUDA tensors or when Triton
runs under its CPU interpreter (``TRITON_INTERPRET=1``), else the PyTorch reference
(:mod:`shopml.jagged.ops_reference`, the spec). Integer-valued inputs always use the reference.
Every floating input receives a gradient.

Checks: structure (ranks, dtypes, devices, sizes) always; content (offsets start at 0, never
decrease, end at T; lengths <= ``max_seqlen``; jagged2 sizes) unless switched off with
:func:`shopml.jagged.checks_enabled` (they cost a device sync). Each failure is a ``ValueError``
naming the argument, the expectation and what was found. With content checks off, inputs that
break these rules give undefined results (e.g. rows past ``max_seqlen`` of the matmul ops are
left unwritten); :mod:`shopml.jagged.fbgemm_compat` implements FBGEMM's truncation instead.

Layout: ``values (T, ...)``, ``offsets (B+1,)`` int32/int64 (= flash-attention's ``cu_seqlens``),
``max_seqlen`` a host int >= every length. "Jagged2" tensors hold one L_i x L_i matrix per
sequence, row-major and concatenated: ``(sum L_i^2,)``; their offsets are
:func:`jagged2_offsets` of the sequence offsets.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from shopml.jagged import checks
from shopml.jagged import ops_reference as ref
from shopml.jagged.backend import BACKENDS, use_triton

# op name -> module of shopml.jagged.triton that implements it
_TRITON_MODULES = {
    "jagged_to_padded": "conversions",
    "padded_to_jagged": "conversions",
    "jagged_dense_bmm": "bmm",
    "jagged_jagged_bmm": "bmm",
    "jagged_softmax": "softmax",
    "jagged2_softmax": "softmax",
    "jagged_dense_add": "elementwise",
    "jagged2_mul_dense": "elementwise",
    "jagged_pairwise_diff": "elementwise",
    "jagged_sum": "reductions",
    "jagged_mean": "reductions",
    "jagged_concat": "concat",
    "jagged_prepend_dense": "concat",
    "jagged2_bmm": "jagged2",
    "jagged2_matmul": "jagged2",
    "jagged2_to_padded": "jagged2",
}

_TRITON_CACHE: dict[str, Callable] = {}

__all__ = [
    "BACKENDS",
    "jagged2_bmm",
    "jagged2_matmul",
    "jagged2_mul_dense",
    "jagged2_offsets",
    "jagged2_softmax",
    "jagged2_to_padded",
    "jagged_concat",
    "jagged_dense_add",
    "jagged_dense_bmm",
    "jagged_jagged_bmm",
    "jagged_mean",
    "jagged_pairwise_diff",
    "jagged_prepend_dense",
    "jagged_softmax",
    "jagged_sum",
    "jagged_to_padded",
    "padded_to_jagged",
]


def impl(name: str, backend: str, *tensors: torch.Tensor) -> Callable:
    """The implementation of op ``name`` for ``backend`` given its value inputs (no checks).

    The decision is :func:`shopml.jagged.backend.use_triton`'s. Used by
    :mod:`shopml.jagged.fbgemm_compat`, which checks its own arguments.
    """
    if not use_triton(backend, *tensors):
        return getattr(ref, name)
    fn = _TRITON_CACHE.get(name)
    if fn is None:  # first use: import the kernel module (and Triton) now
        module = importlib.import_module(f"shopml.jagged.triton.{_TRITON_MODULES[name]}")
        fn = _TRITON_CACHE[name] = getattr(module, name)
    return fn


def jagged2_offsets(offsets: torch.Tensor) -> torch.Tensor:
    """Offsets ``(B+1,)`` int64 of the jagged2 tensor of a batch: exclusive cumsum of L_i^2."""
    checks.check_offsets(offsets, None)
    return ref.jagged2_offsets(offsets)


def _check_jagged(
    x,
    offsets,
    name="x",
    *,
    min_ndim=1,
    ndim=None,
    floating=False,
    max_len=None,
    max_len_name="max_seqlen",
):
    """Structure of x and offsets; contents of offsets (and lengths <= max_len) in one sync."""
    checks.check_tensor(x, name, min_ndim=min_ndim, ndim=ndim, floating=floating)
    if max_len is not None:
        checks.check_max_seqlen(max_len, name=max_len_name)
    checks.check_offsets(
        offsets, x.shape[0], device=x.device, max_len=max_len, max_len_name=max_len_name
    )


def _check_same(t: torch.Tensor, like: torch.Tensor, name: str, like_name: str) -> None:
    if t.device != like.device or t.dtype != like.dtype:
        raise ValueError(
            f"{name}: expected dtype {like.dtype} on {like.device} (like {like_name}), "
            f"found {t.dtype} on {t.device}"
        )


def _check_jagged2(
    x: torch.Tensor,
    offsets: torch.Tensor,
    name: str = "x",
    *,
    max_len: int | None = None,
    max_len_name: str = "max_seqlen",
) -> None:
    checks.check_tensor(x, name, ndim=1)
    if max_len is not None:
        checks.check_max_seqlen(max_len, name=max_len_name)
    checks.check_offsets(offsets, None, device=x.device, max_len=max_len, max_len_name=max_len_name)
    if checks.content_checks_on():
        total2 = int(ref.jagged2_offsets(offsets)[-1])
        if x.shape[0] != total2:
            raise ValueError(
                f"{name}: expected sum of squared lengths = {total2} entries (one L_i x L_i "
                f"matrix per sequence), found {x.shape[0]}"
            )


def _total2(offsets: torch.Tensor, total2: int | None) -> int:
    if total2 is None:
        return int(ref.jagged2_offsets(offsets)[-1])
    if isinstance(total2, bool) or not isinstance(total2, int) or total2 < 0:
        raise ValueError(f"total2: expected a non-negative Python int or None, found {total2!r}")
    return total2


# ----------------------------------------------------------------------------- conversions
def jagged_to_padded(
    values: torch.Tensor,
    offsets: torch.Tensor,
    max_len: int,
    pad_value: float = 0.0,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Copy jagged rows into a padded tensor; sequences longer than ``max_len`` are truncated.

    Args:
        values: ``(T, ...)`` any dtype, any device.
        offsets: ``(B+1,)`` int32/int64 on the device of ``values``.
        max_len: host int N, the padded length (may be below the longest length).
        pad_value: value written at padding positions.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(B, N, ...)``, dtype and device of ``values``.
    """
    checks.check_tensor(values, "values", min_ndim=1)
    checks.check_offsets(offsets, values.shape[0], device=values.device)
    max_len = checks.check_max_seqlen(max_len, name="max_len")
    return impl("jagged_to_padded", backend, values)(values, offsets, max_len, pad_value)


def padded_to_jagged(
    dense: torch.Tensor, offsets: torch.Tensor, total: int | None = None, *, backend: str = "auto"
) -> torch.Tensor:
    """Gather the real rows of a padded tensor back into jagged values.

    Args:
        dense: ``(B, N, ...)`` any dtype.
        offsets: ``(B+1,)`` int32/int64 on the device of ``dense``; every length <= N.
        total: host int T = ``offsets[-1]`` if known (saves a device sync).
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(T, ...)``, dtype and device of ``dense``.
    """
    checks.check_tensor(dense, "dense", min_ndim=2)
    checks.check_offsets(
        offsets,
        total,
        device=dense.device,
        batch_size=dense.shape[0],
        max_len=dense.shape[1],
        max_len_name="dense.shape[1]",
    )
    if total is None:
        total = int(offsets[-1])
    return impl("padded_to_jagged", backend, dense)(dense, offsets, total)


# ----------------------------------------------------------------------------- bmm
def jagged_dense_bmm(
    x: torch.Tensor,
    offsets: torch.Tensor,
    y: torch.Tensor,
    max_seqlen: int,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-sequence matmul of a jagged and a dense batch: ``out_i = x_i @ y_i``.

    Args:
        x: ``(T, K)`` floating, jagged by ``offsets``.
        offsets: ``(B+1,)`` int32/int64, same device.
        y: ``(B, K, N)`` same dtype and device as ``x``.
        max_seqlen: host int >= every length.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(T, N)``, dtype of ``x`` (fp32 accumulation).
    """
    _check_jagged(x, offsets, ndim=2, floating=True, max_len=max_seqlen)
    checks.check_tensor(y, "y", ndim=3)
    _check_same(y, x, "y", "x")
    if y.shape[0] != offsets.numel() - 1 or y.shape[1] != x.shape[1]:
        raise ValueError(
            f"y: expected shape (B, K, N) = ({offsets.numel() - 1}, {x.shape[1]}, N), found {tuple(y.shape)}"
        )
    return impl("jagged_dense_bmm", backend, x, y)(x, offsets, y, max_seqlen)


def jagged_jagged_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-sequence ``out_i = x_i^T @ y_i`` of two jagged tensors sharing ``offsets``.

    Args:
        x: ``(T, D)`` floating.
        y: ``(T, N)`` same dtype and device.
        offsets: ``(B+1,)`` int32/int64.
        max_seqlen: host int >= every length.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(B, D, N)``, dtype of ``x`` (fp32 accumulation; empty sequences give zeros).
    """
    _check_jagged(x, offsets, ndim=2, floating=True, max_len=max_seqlen)
    checks.check_tensor(y, "y", ndim=2)
    _check_same(y, x, "y", "x")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected {x.shape[0]} rows (like x), found {y.shape[0]}")
    return impl("jagged_jagged_bmm", backend, x, y)(x, y, offsets, max_seqlen)


# ----------------------------------------------------------------------------- softmax
def jagged_softmax(
    x: torch.Tensor, offsets: torch.Tensor, max_seqlen: int, *, backend: str = "auto"
) -> torch.Tensor:
    """Softmax over the rows of each sequence, independently per column.

    Args:
        x: ``(T, H)`` floating.
        offsets: ``(B+1,)`` int32/int64.
        max_seqlen: host int >= every length.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(T, H)``, dtype of ``x``.
    """
    _check_jagged(x, offsets, ndim=2, floating=True, max_len=max_seqlen)
    return impl("jagged_softmax", backend, x)(x, offsets, max_seqlen)


def jagged2_softmax(
    x: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    transpose: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Softmax of each per-sequence ``L_i x L_i`` matrix of a jagged2 tensor.

    Args:
        x: ``(sum L_i^2,)`` floating.
        offsets: ``(B+1,)`` sequence offsets (not the jagged2 ones).
        max_seqlen: host int >= every length.
        transpose: False: each row sums to 1 (softmax over columns); True: each column does.
        backend: ``"auto" | "triton" | "reference"``.
    """
    _check_jagged2(x, offsets, max_len=max_seqlen)
    checks.check_tensor(x, "x", floating=True)
    return impl("jagged2_softmax", backend, x)(x, offsets, max_seqlen, bool(transpose))


# ----------------------------------------------------------------------------- elementwise
def jagged_dense_add(
    x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Jagged plus padded: ``out[offsets[i] + j] = x[offsets[i] + j] + y[i, j]``.

    Args:
        x: ``(T, D)`` floating.
        offsets: ``(B+1,)``; every length <= N.
        y: ``(B, N, D)`` same dtype and device.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(T, D)`` jagged like ``x``.
    """
    checks.check_tensor(x, "x", ndim=2, floating=True)
    checks.check_tensor(y, "y", ndim=3)
    _check_same(y, x, "y", "x")
    checks.check_tensor(offsets, "offsets", ndim=1, device=x.device)
    if y.shape[0] != offsets.numel() - 1 or y.shape[2] != x.shape[1]:
        raise ValueError(
            f"y: expected shape (B, N, D) = ({offsets.numel() - 1}, N, {x.shape[1]}), found {tuple(y.shape)}"
        )
    _check_jagged(x, offsets, ndim=2, max_len=y.shape[1], max_len_name="y.shape[1]")
    return impl("jagged_dense_add", backend, x, y)(x, offsets, y)


def jagged2_mul_dense(
    x: torch.Tensor, offsets: torch.Tensor, y: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    """Multiply each ``L_i x L_i`` matrix of a jagged2 tensor by the top-left block of ``y``.

    Args:
        x: ``(sum L_i^2,)`` floating.
        offsets: ``(B+1,)`` sequence offsets; every length <= N.
        y: ``(N, N)`` same dtype and device (e.g. a causal mask).
        backend: ``"auto" | "triton" | "reference"``.
    """
    checks.check_tensor(x, "x", ndim=1, floating=True)
    checks.check_tensor(y, "y", ndim=2)
    _check_same(y, x, "y", "x")
    if y.shape[0] != y.shape[1]:
        raise ValueError(f"y: expected a square (N, N) tensor, found {tuple(y.shape)}")
    _check_jagged2(x, offsets, max_len=y.shape[0], max_len_name="y.shape[0]")
    return impl("jagged2_mul_dense", backend, x, y)(x, offsets, y)


def jagged_pairwise_diff(
    a: torch.Tensor,
    offsets: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    total2: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Pairwise differences within each sequence: jagged2 ``out_i[p, q] = a_i[p] - b_i[q]``.

    Example: timestamp deltas for a relative-time attention bias (``b`` defaults to ``a``).

    Args:
        a: ``(T,)`` any numeric dtype.
        offsets: ``(B+1,)``.
        b: ``(T,)`` like ``a``, or None for ``a``.
        total2: host int sum L_i^2 if known (saves a device sync).
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(sum L_i^2,)`` dtype of ``a``.
    """
    _check_jagged(a, offsets, "x", ndim=1)
    if b is not None:
        checks.check_tensor(b, "b", ndim=1)
        _check_same(b, a, "b", "a")
        if b.shape != a.shape:
            raise ValueError(f"b: expected shape {tuple(a.shape)} (like a), found {tuple(b.shape)}")
    total2 = _total2(offsets, total2)
    tensors = (a,) if b is None else (a, b)
    return impl("jagged_pairwise_diff", backend, *tensors)(a, offsets, b, total2)


# ----------------------------------------------------------------------------- reductions
def jagged_sum(x: torch.Tensor, offsets: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Per-sequence sum: ``(T, D) -> (B, D)``; an empty sequence sums to 0."""
    _check_jagged(x, offsets, ndim=2)
    return impl("jagged_sum", backend, x)(x, offsets)


def jagged_mean(x: torch.Tensor, offsets: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Per-sequence mean: ``(T, D) -> (B, D)``; an empty sequence gives 0."""
    _check_jagged(x, offsets, ndim=2, floating=True)
    return impl("jagged_mean", backend, x)(x, offsets)


# ----------------------------------------------------------------------------- concat
def jagged_concat(
    a: torch.Tensor,
    a_offsets: torch.Tensor,
    b: torch.Tensor,
    b_offsets: torch.Tensor,
    *,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence concatenation ``[a_i; b_i]``.

    Args:
        a: ``(Ta, ...)`` jagged by ``a_offsets``.
        a_offsets: ``(B+1,)``.
        b: ``(Tb, ...)`` same trailing shape, dtype and device.
        b_offsets: ``(B+1,)``, same B.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(values (Ta+Tb, ...), offsets (B+1,) int64)``.
    """
    checks.check_tensor(a, "a", min_ndim=1)
    checks.check_tensor(b, "b", min_ndim=1)
    _check_same(b, a, "b", "a")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"b: expected trailing shape {tuple(a.shape[1:])} (like a), found {tuple(b.shape[1:])}"
        )
    checks.check_offsets(a_offsets, a.shape[0], name="a_offsets", device=a.device)
    checks.check_offsets(
        b_offsets, b.shape[0], name="b_offsets", device=a.device, batch_size=a_offsets.numel() - 1
    )
    return impl("jagged_concat", backend, a, b)(a, a_offsets, b, b_offsets)


def jagged_prepend_dense(
    dense: torch.Tensor, x: torch.Tensor, offsets: torch.Tensor, *, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend one dense row per sequence: sequence i becomes ``[dense[i]; x_i]``.

    Args:
        dense: ``(B, ...)``.
        x: ``(T, ...)`` same trailing shape, dtype and device.
        offsets: ``(B+1,)``.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(values (T+B, ...), offsets (B+1,) int64)`` (= ``offsets + arange(B+1)``).
    """
    checks.check_tensor(dense, "dense", min_ndim=1)
    _check_jagged(x, offsets, min_ndim=1)
    _check_same(dense, x, "dense", "x")
    if dense.shape[0] != offsets.numel() - 1 or dense.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"dense: expected shape ({offsets.numel() - 1}, {', '.join(map(str, x.shape[1:]))}) "
            f"(B rows like x's), found {tuple(dense.shape)}"
        )
    return impl("jagged_prepend_dense", backend, dense, x)(dense, x, offsets)


# ----------------------------------------------------------------------------- jagged2 family
def jagged2_bmm(
    x: torch.Tensor,
    y: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    total2: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-sequence ``L_i x L_i`` products ``x_i @ y_i^T`` (attention scores) as a jagged2 tensor.

    Args:
        x: ``(T, D)`` floating.
        y: ``(T, D)`` same dtype and device.
        offsets: ``(B+1,)``.
        max_seqlen: host int >= every length.
        total2: host int sum L_i^2 if known (saves a device sync).
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(sum L_i^2,)``, dtype of ``x``.
    """
    _check_jagged(x, offsets, ndim=2, floating=True, max_len=max_seqlen)
    checks.check_tensor(y, "y", ndim=2)
    _check_same(y, x, "y", "x")
    if y.shape != x.shape:
        raise ValueError(f"y: expected shape {tuple(x.shape)} (like x), found {tuple(y.shape)}")
    total2 = _total2(offsets, total2)
    return impl("jagged2_bmm", backend, x, y)(x, y, offsets, max_seqlen, total2)


def jagged2_matmul(
    p: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    max_seqlen: int,
    *,
    transpose: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Per-sequence ``P_i @ v_i`` of a jagged2 ``P`` and a jagged ``v`` (``transpose``: ``P_i^T``).

    Args:
        p: ``(sum L_i^2,)`` floating.
        v: ``(T, D)`` same dtype and device.
        offsets: ``(B+1,)``.
        max_seqlen: host int >= every length.
        transpose: use ``P_i^T``.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(T, D)``, dtype of ``v``.
    """
    checks.check_tensor(v, "v", ndim=2, floating=True)
    _check_same(p, v, "p", "v")
    _check_jagged(v, offsets, "v", ndim=2, max_len=max_seqlen)
    _check_jagged2(p, offsets, "p")
    return impl("jagged2_matmul", backend, p, v)(p, v, offsets, max_seqlen, bool(transpose))


def jagged2_to_padded(
    x: torch.Tensor,
    offsets: torch.Tensor,
    max_len: int,
    pad_value: float = 0.0,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Jagged2 ``(sum L_i^2,)`` to padded ``(B, max_len, max_len)``; larger matrices are cropped.

    Args:
        x: ``(sum L_i^2,)``.
        offsets: ``(B+1,)`` sequence offsets.
        max_len: host int N.
        pad_value: value at padding positions.
        backend: ``"auto" | "triton" | "reference"``.
    """
    _check_jagged2(x, offsets)
    max_len = checks.check_max_seqlen(max_len, name="max_len")
    return impl("jagged2_to_padded", backend, x)(x, offsets, max_len, pad_value)
