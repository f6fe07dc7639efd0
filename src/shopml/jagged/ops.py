"""Public jagged ops: validate once, then dispatch to the Triton kernels or the reference.

Every op takes ``backend="auto" | "triton" | "reference"``. ``"auto"`` picks Triton for CUDA
tensors or when Triton runs under its CPU interpreter (``TRITON_INTERPRET=1``), else the
PyTorch reference (:mod:`shopml.jagged.ops_reference`). Structure checks always run; content
checks (offsets values, lengths within max_seqlen) can be switched off with
:func:`shopml.jagged.checks_enabled`.
"""

from __future__ import annotations

import torch

from shopml.common.devices import is_interpreter
from shopml.jagged import checks
from shopml.jagged import ops_reference as ref

BACKENDS = ("auto", "triton", "reference")

__all__ = ["BACKENDS", "jagged_to_padded", "padded_to_jagged"]


def _use_triton(backend: str, *tensors: torch.Tensor) -> bool:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, found {backend!r}")
    if backend == "reference":
        return False
    on_cuda = tensors[0].is_cuda
    if backend == "triton":
        if not (on_cuda or is_interpreter()):
            raise ValueError(
                "backend: 'triton' needs CUDA tensors or TRITON_INTERPRET=1 set before Python "
                f"starts, found tensors on {tensors[0].device} without the interpreter"
            )
        return True
    return on_cuda or is_interpreter()


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
        max_len: host int N, the padded length.
        pad_value: value written at padding positions.
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(B, N, ...)``, dtype and device of ``values``.
    """
    checks.check_tensor(values, "values", min_ndim=1)
    checks.check_offsets(offsets, values.shape[0], device=values.device)
    max_len = checks.check_max_seqlen(max_len, name="max_len")
    if _use_triton(backend, values) and values.is_floating_point():
        from shopml.jagged.triton import conversions

        return conversions.jagged_to_padded(values, offsets, max_len, pad_value)
    return ref.jagged_to_padded(values, offsets, max_len, pad_value)


def padded_to_jagged(
    dense: torch.Tensor,
    offsets: torch.Tensor,
    total: int | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Gather the real rows of a padded tensor back into jagged values.

    Args:
        dense: ``(B, N, ...)`` any dtype.
        offsets: ``(B+1,)`` int32/int64 on the device of ``dense``; each length <= N.
        total: host int T = ``offsets[-1]`` if known (saves a device sync).
        backend: ``"auto" | "triton" | "reference"``.

    Returns:
        ``(T, ...)``, dtype and device of ``dense``.
    """
    checks.check_tensor(dense, "dense", min_ndim=2)
    checks.check_offsets(offsets, total, device=dense.device, batch_size=dense.shape[0])
    checks.check_max_seqlen(dense.shape[1], offsets, name="dense.shape[1]")
    if total is None:
        total = int(offsets[-1])
    if _use_triton(backend, dense) and dense.is_floating_point():
        from shopml.jagged.triton import conversions

        return conversions.padded_to_jagged(dense, offsets, total)
    return ref.padded_to_jagged(dense, offsets, total)
