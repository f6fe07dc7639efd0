"""Device predicates. None of these raise on a machine without CUDA."""

from __future__ import annotations

import os

import torch


def is_interpreter() -> bool:
    """True when Triton kernels run on the CPU through ``TRITON_INTERPRET=1``."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def has_cuda() -> bool:
    """True when a CUDA device can be used (never raises)."""
    try:
        return torch.cuda.is_available()
    except Exception:  # broken driver installs raise instead of returning False
        return False


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Turn ``"auto"``/None into ``cuda`` when available else ``cpu``; validate anything else.

    Raises:
        ValueError: if ``device`` names CUDA on a machine without it, or is not a device string.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if has_cuda() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', found {device!r}") from exc
    if dev.type == "cuda" and not has_cuda():
        raise ValueError(f"device: {device!r} was asked for but no CUDA device is available")
    return dev
