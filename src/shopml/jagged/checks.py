"""Input checks shared by every jagged op, and the one switch that turns content checks off.

Two kinds of checks guard every public function of :mod:`shopml.jagged`:

- **Structure checks** (always on, free): ranks, dtypes, devices and host-side sizes.
- **Content checks** (on by default): the *values* of ``offsets`` (``offsets[0] == 0``, never
  decreasing, ``offsets[-1] == T``) and sequence lengths within ``max_seqlen``. They read device
  memory, so on CUDA each costs a host-device synchronisation.

The switch is :func:`checks_enabled`. Use it as a context manager to set the flag for a block
and restore the previous value afterwards, or call it to set the flag from here on::

    import shopml.jagged as jg

    with jg.checks_enabled(False):      # hot training loop: inputs already validated once
        y = jg.jagged_softmax(x, offsets, max_seqlen)

    jg.checks_enabled(False)            # or from here on, in this thread / asyncio task
    jg.content_checks_on()              # -> False

The flag lives in a :class:`contextvars.ContextVar`: it is per thread and per asyncio task, so a
worker thread that turns checks off for its request never turns them off for another thread.
A new thread starts with checks on (the default) whatever its parent set; an asyncio task starts
with a copy of its creator's value. Inside ``torch.compile`` (torch 2.14) a change of the flag
recompiles; with older torch (whose Dynamo cannot trace a ContextVar read) the flag is read once
when the graph is traced and the compiled graph keeps it. Either way a graph compiled with checks
on breaks at each check (a host sync): compile with checks off.

Every failure raises ``ValueError`` naming the argument, the expectation and what was found.
With content checks off, malformed offsets give undefined results (never a crash of the process
on CPU; on GPU kernels may read garbage), exactly as in FBGEMM.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

import torch

_CONTENT_CHECKS: ContextVar[bool] = ContextVar("shopml_jagged_content_checks", default=True)

INDEX_DTYPES = (torch.int32, torch.int64)


class checks_enabled:  # noqa: N801  (used like a function)
    """Turn content checks on or off: a context manager, or a plain call that sets the flag.

    The flag is a :class:`contextvars.ContextVar`. As a context manager it is set on entry (in
    fact on construction) and the previous value comes back on exit. As a plain call it sets the
    value of the *current context*: the calling thread (or asyncio task) from here on; other
    threads keep their own value, and threads started later begin with checks on.

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

    __slots__ = ("_token",)

    def __init__(self, enabled: bool) -> None:
        self._token = _CONTENT_CHECKS.set(bool(enabled))

    def __enter__(self) -> checks_enabled:
        return self

    def __exit__(self, *exc: object) -> None:
        _CONTENT_CHECKS.reset(self._token)


# Dynamo traces ContextVar.get (and guards on its value: a change recompiles) in torch 2.14; the
# torch 2.11 of our GPU machine graph-breaks on it, which would break fullgraph compiles of every
# jagged op. There the flag is read once at trace time and kept as a constant of the graph.
_DYNAMO_TRACES_CONTEXTVARS = torch.__version__ >= (2, 14)


def _content_checks_when_traced() -> bool:
    return _CONTENT_CHECKS.get()


# what torch.compiler.assume_constant_result sets, without importing Dynamo (and Triton) at import
_content_checks_when_traced._dynamo_marked_constant = True  # type: ignore[attr-defined]


def content_checks_on() -> bool:
    """Whether content checks (offsets values, lengths vs max_seqlen) run in this context."""
    if not _DYNAMO_TRACES_CONTEXTVARS and torch.compiler.is_compiling():
        return _content_checks_when_traced()
    return _CONTENT_CHECKS.get()


def describe(t: torch.Tensor) -> str:
    """``shape (...), dtype ..., device ...`` of a tensor, for error messages."""
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
            raise ValueError(f"{name}: expected a {want} tensor, found {describe(t)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions, found {describe(t)}")
    if floating and not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, found {describe(t)}")
    if device is not None and t.device != device:
        raise ValueError(
            f"{name}: expected a tensor on {device} (like the values), found {describe(t)}"
        )
    return t


def check_offsets(
    offsets: object,
    total: int | None,
    *,
    name: str = "offsets",
    device: torch.device | None = None,
    batch_size: int | None = None,
    max_len: int | None = None,
    max_len_name: str = "max_seqlen",
) -> torch.Tensor:
    """Check an offsets tensor: 1-D int32/int64, and (content) 0 first, non-decreasing, ``total`` last.

    Args:
        offsets: the candidate ``(B+1,)`` tensor.
        total: the number of rows T of the values it indexes (None: not checked).
        name: argument name for error messages.
        device: the device it must live on (that of the values).
        batch_size: if given, the expected B.
        max_len: if given, (content) every length must be <= it; checked in the same device sync.
        max_len_name: argument name of ``max_len`` for error messages.
    """
    check_tensor(offsets, name, ndim=1, device=device)
    assert isinstance(offsets, torch.Tensor)
    if offsets.dtype not in INDEX_DTYPES:
        raise ValueError(f"{name}: expected dtype int32 or int64, found {describe(offsets)}")
    if offsets.numel() < 1:
        raise ValueError(
            f"{name}: expected B+1 >= 1 entries (offsets[0] = 0), found an empty tensor"
        )
    if batch_size is not None and offsets.numel() != batch_size + 1:
        raise ValueError(
            f"{name}: expected {batch_size + 1} entries (batch size {batch_size} + 1), "
            f"found {offsets.numel()}"
        )
    if content_checks_on():
        check_offsets_content(offsets, total, name=name, max_len=max_len, max_len_name=max_len_name)
    return offsets


def check_offsets_content(
    offsets: torch.Tensor,
    total: int | None,
    *,
    name: str = "offsets",
    max_len: int | None = None,
    max_len_name: str = "max_seqlen",
) -> None:
    """Content check of offsets (always runs; one device sync). See :func:`check_offsets`."""
    if offsets.numel() > 1:
        diffs = offsets[1:] - offsets[:-1]
        smallest, longest = torch.aminmax(diffs)  # one reduction kernel, not two
        stats = torch.stack([offsets[0], offsets[-1], smallest, longest]).tolist()
    else:
        stats = [int(offsets[0])] * 2 + [0, 0]
    first, last, smallest, longest = stats
    if first != 0:
        raise ValueError(f"{name}: expected offsets[0] == 0, found {first}")
    if smallest < 0:
        i = int(torch.nonzero(diffs < 0)[0, 0])
        raise ValueError(
            f"{name}: expected non-decreasing offsets, found offsets[{i + 1}] = "
            f"{int(offsets[i + 1])} < offsets[{i}] = {int(offsets[i])}"
        )
    if total is not None and last != total:
        raise ValueError(
            f"{name}: expected offsets[-1] == number of value rows ({total}), found {last}"
        )
    if max_len is not None and longest > max_len:
        raise ValueError(
            f"{max_len_name}: expected every sequence length <= {max_len}, found a length {longest}"
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
    if offsets is not None and offsets.numel() > 1 and content_checks_on():
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
        raise ValueError(f"{name}: expected dtype int32 or int64, found {describe(lengths)}")
    if lengths.numel() > 0 and content_checks_on():
        smallest = int(lengths.min())
        if smallest < 0:
            raise ValueError(f"{name}: expected lengths >= 0, found {smallest}")
    return lengths
