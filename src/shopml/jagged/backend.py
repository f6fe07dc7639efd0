"""The one backend decision of :mod:`shopml.jagged`: Triton kernels or the PyTorch reference.

Every public op, the attention and :mod:`shopml.jagged.fbgemm_compat` call :func:`use_triton`.

- ``"reference"``: always the reference (the executable spec).
- ``"auto"``: Triton for floating inputs on CUDA, or on any device when Triton runs under its CPU
  interpreter (``TRITON_INTERPRET=1``); the reference otherwise.
- ``"triton"``: like ``"auto"``, but a ``ValueError`` where Triton cannot run.
- Integer-valued inputs (ids, timestamps) always use the reference, whatever the backend.

``TRITON_INTERPRET`` is read once, at import: Triton itself reads it when it compiles a kernel
module, so it must be set before Python starts anyway, and plain module globals keep
``torch.compile`` from tracing environment lookups.
"""

from __future__ import annotations

import importlib.util

import torch

from shopml.common.devices import is_interpreter

BACKENDS = ("auto", "triton", "reference")

INTERPRET = is_interpreter()
HAS_TRITON = importlib.util.find_spec("triton") is not None


def use_triton(backend: str, *tensors: torch.Tensor) -> bool:
    """Whether an op with these inputs runs its Triton kernels (True) or the reference (False).

    Args:
        backend: ``"auto" | "triton" | "reference"``.
        tensors: the op's value inputs (the first one's device decides; offsets are not passed).

    Raises:
        ValueError: for an unknown backend, or ``"triton"`` where Triton cannot run (no CUDA
            tensor and no interpreter, or Triton not installed).
    """
    if backend == "reference":
        return False
    if backend != "auto" and backend != "triton":
        raise ValueError(f"backend: expected one of {BACKENDS}, found {backend!r}")
    for t in tensors:
        if not t.is_floating_point():
            return False  # kernels are for floating values; ids etc. use the reference
    device = tensors[0].device
    runnable = HAS_TRITON and (INTERPRET or device.type == "cuda")
    if backend == "triton" and not runnable:
        if not HAS_TRITON:
            raise ValueError("backend: 'triton' was asked for, but triton is not importable")
        raise ValueError(
            "backend: 'triton' needs CUDA tensors or TRITON_INTERPRET=1 set before Python "
            f"starts, found tensors on {device} without the interpreter"
        )
    return runnable
