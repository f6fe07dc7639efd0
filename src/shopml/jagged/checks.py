"""Input checks shared by every jagged op, and the one switch that turns content checks off.

Two kinds of checks guard every public function of :mod:`shopml.jagged`:

- **Structure checks** (always on, free): ranks, dtypes, devices and host-side sizes.
- **Content checks** (on by default): the *values* of ``offsets`` (``offsets[0] == 0``, never
  decreasing, ``offsets[-1] == T``) and sequence lengths within ``max_seqlen``. They read device
  memory, so on CUDA each costs a host-device synchronisation.

The switch is :func:`checks_enabled`. Call it to set the flag, or use it as a context manager to
set it for a block and restore the previous value afterwards::

    import shopml.jagged as jg

    with jg.checks_enabled(False):      # hot training loop: inputs already validated once
        y = jg.jagged_softmax(x, offsets, max_seqlen)

    jg.checks_enabled(False)            # or process-wide, until switched back on
    jg.content_checks_on()              # -> False

Every failure raises ``ValueError`` naming the argument, the expectation and what was found.
With content checks off, malformed offsets give undefined results (never a crash of the process
on CPU; on GPU kernels may read garbage), exactly as in FBGEMM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_CONTENT_CHECKS = True

INDEX_DTYPES = (torch.int32, torch.int64)


class checks_enabled:  # noqa: N801  (used like a function)
    """Turn content checks on or off; usable as a plain call or as a context manager.

    Args:
        enabled: True to check the contents of offsets/lengths (default state), False to skip
            those checks (and their device synchronisation). Structure checks always run.

    Example:
        >>> from shopml.jagged import checks_enabled, content_checks_on
        >>> with checks_enabled(False):
        ...     content_checks_on()
        False
        >>> content_checks_on()
        True
    """

    def __init__(self, enabled: bool) -> None:
        global _CONTENT_CHECKS
        self._previous = _CONTENT_CHECKS
        _CONTENT_CHECKS = bool(enabled)

    def __enter__(self) -> checks_enabled:
        return self

    def __exit__(self, *exc: object) -> None:
        global _CONTENT_CHECKS
        _CONTENT_CHECKS = self._previous


def content_checks_on() -> bool:
    """Whether content checks (offsets values, lengths vs max_seqlen) currently run."""
    return _CONTENT_CHECKS


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_tensor(
    t: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    floating: bool = False,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Structure check of one tensor argument; returns it unchanged."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} tensor, found {_describe(t)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions, found {_describe(t)}")
    if floating and not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, found {_describe(t)}")
    if device is not None and t.device != device:
        raise ValueError(
            f"{name}: expected a tensor on {device} (like the values), found {_describe(t)}"
        )
    return t


def check_offsets(
    offsets: object,
    total: int | None,
    *,
    name: str = "offsets",
    device: torch.device | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Check an offsets tensor: 1-D int32/int64, and (content) 0 first, non-decreasing, ``total`` last.

    Args:
        offsets: the candidate ``(B+1,)`` tensor.
        total: the number of rows T of the values it indexes (None: not checked).
        name: argument name for error messages.
        device: the device it must live on (that of the values).
        batch_size: if given, the expected B.
    """
    check_tensor(offsets, name, ndim=1, device=device)
    assert isinstance(offsets, torch.Tensor)
    if offsets.dtype not in INDEX_DTYPES:
        raise ValueError(f"{name}: expected dtype int32 or int64, found {_describe(offsets)}")
    if offsets.numel() < 1:
        raise ValueError(
            f"{name}: expected B+1 >= 1 entries (offsets[0] = 0), found an empty tensor"
        )
    if batch_size is not None and offsets.numel() != batch_size + 1:
        raise ValueError(
            f"{name}: expected {batch_size + 1} entries (batch size {batch_size} + 1), "
            f"found {offsets.numel()}"
        )
    if _CONTENT_CHECKS:
        check_offsets_content(offsets, total, name=name)
    return offsets


def check_offsets_content(
    offsets: torch.Tensor, total: int | None, *, name: str = "offsets"
) -> None:
    """Content check of offsets (always runs; one device sync). See :func:`check_offsets`."""
    first = int(offsets[0])
    if first != 0:
        raise ValueError(f"{name}: expected offsets[0] == 0, found {first}")
    if offsets.numel() > 1:
        diffs = offsets[1:] - offsets[:-1]
        bad = torch.nonzero(diffs < 0)
        if bad.numel() > 0:
            i = int(bad[0, 0])
            raise ValueError(
                f"{name}: expected non-decreasing offsets, found offsets[{i + 1}] = "
                f"{int(offsets[i + 1])} < offsets[{i}] = {int(offsets[i])}"
            )
    last = int(offsets[-1])
    if total is not None and last != total:
        raise ValueError(
            f"{name}: expected offsets[-1] == number of value rows ({total}), found {last}"
        )


def check_max_seqlen(
    max_seqlen: object, offsets: torch.Tensor | None = None, *, name: str = "max_seqlen"
) -> int:
    """Check a host-int max_seqlen >= 0 and (content) that no sequence is longer; returns it."""
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int):
        raise ValueError(
            f"{name}: expected a Python int (host side), found {type(max_seqlen).__name__}"
        )
    if max_seqlen < 0:
        raise ValueError(f"{name}: expected >= 0, found {max_seqlen}")
    if _CONTENT_CHECKS and offsets is not None and offsets.numel() > 1:
        longest = int((offsets[1:] - offsets[:-1]).max())
        if longest > max_seqlen:
            raise ValueError(
                f"{name}: expected every sequence length <= {max_seqlen}, found a length {longest}"
            )
    return max_seqlen


def check_lengths(
    lengths: object, *, name: str = "lengths", device: torch.device | None = None
) -> torch.Tensor:
    """Check a ``(B,)`` lengths tensor: 1-D integer, and (content) no negative entry."""
    check_tensor(lengths, name, ndim=1, device=device)
    assert isinstance(lengths, torch.Tensor)
    if lengths.dtype not in INDEX_DTYPES:
        raise ValueError(f"{name}: expected dtype int32 or int64, found {_describe(lengths)}")
    if _CONTENT_CHECKS and lengths.numel() > 0:
        smallest = int(lengths.min())
        if smallest < 0:
            raise ValueError(f"{name}: expected lengths >= 0, found {smallest}")
    return lengths
