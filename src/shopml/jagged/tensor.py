"""Jagged containers: :class:`JaggedTensor` (one feature) and :class:`KeyedJaggedTensor` (several).

A jagged batch stores B variable-length sequences back to back in one ``values (T, ...)`` tensor;
``offsets (B+1,)`` (int32 or int64, ``offsets[0] = 0``, non-decreasing, ``offsets[-1] = T``)
marks where each sequence starts: sequence ``i`` is ``values[offsets[i]:offsets[i+1]]``. This is
flash-attention's ``cu_seqlens`` and TorchRec's ``JaggedTensor`` layout. Empty sequences are legal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from shopml.jagged import checks


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """Exclusive prefix sum: ``(B,)`` lengths -> ``(B+1,)`` offsets of the same dtype and device."""
    out = torch.zeros(lengths.numel() + 1, dtype=lengths.dtype, device=lengths.device)
    torch.cumsum(lengths, dim=0, out=out[1:])
    return out


class JaggedTensor:
    """B variable-length sequences stored as ``values (T, ...)`` plus ``offsets (B+1,)``.

    Args:
        values: ``(T, ...)`` tensor, any dtype, any device; rows of all sequences back to back.
        offsets: ``(B+1,)`` int32 or int64 on the device of ``values``; ``offsets[0] = 0``,
            non-decreasing, ``offsets[-1] = T``.
        max_seqlen: host int, the longest length (or an upper bound on it). None: computed once
            from ``offsets`` on first use (a device sync on CUDA); pass it in hot paths.

    The constructor checks structure only (ranks, dtypes, devices, ``len(offsets) >= 1``). Call
    :meth:`validate` to check the contents of ``offsets`` too.

    Example:
        Three sequences of lengths 2, 0 and 3 with two features per row::

            >>> import torch
            >>> from shopml.jagged import JaggedTensor
            >>> values = torch.arange(10.0).view(5, 2)
            >>> jt = JaggedTensor.from_lengths(values, torch.tensor([2, 0, 3]))
            >>> jt.offsets
            tensor([0, 2, 2, 5])
            >>> jt.max_seqlen, jt.batch_size
            (3, 3)
            >>> jt.to_padded()[0]          # (B, N, D) = (3, 3, 2); sequence 0 padded with zeros
            tensor([[0., 1.],
                    [2., 3.],
                    [0., 0.]])
            >>> jt[2]                      # rows of sequence 2
            tensor([[4., 5.],
                    [6., 7.],
                    [8., 9.]])
            >>> JaggedTensor.from_padded(jt.to_padded(), jt.lengths()).values.equal(values)
            True
    """

    __slots__ = ("values", "offsets", "_max_seqlen")

    def __init__(
        self, values: torch.Tensor, offsets: torch.Tensor, max_seqlen: int | None = None
    ) -> None:
        checks.check_tensor(values, "values", min_ndim=1)
        checks.check_tensor(offsets, "offsets", ndim=1, device=values.device)
        if offsets.dtype not in checks.INDEX_DTYPES:
            raise ValueError(f"offsets: expected dtype int32 or int64, found {offsets.dtype}")
        if offsets.numel() < 1:
            raise ValueError("offsets: expected B+1 >= 1 entries (offsets[0] = 0), found none")
        if max_seqlen is not None:
            checks.check_max_seqlen(max_seqlen)
        self.values = values
        self.offsets = offsets
        self._max_seqlen = max_seqlen

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_lengths(
        cls, values: torch.Tensor, lengths: torch.Tensor, max_seqlen: int | None = None
    ) -> JaggedTensor:
        """Build from ``values (T, ...)`` and ``lengths (B,)`` (int32/int64, same device)."""
        checks.check_tensor(values, "values", min_ndim=1)
        checks.check_lengths(lengths, device=values.device)
        return cls(values, lengths_to_offsets(lengths), max_seqlen)

    @classmethod
    def from_padded(
        cls, dense: torch.Tensor, lengths: torch.Tensor | Sequence[int]
    ) -> JaggedTensor:
        """Keep the first ``lengths[i]`` rows of each ``dense[i]``.

        Args:
            dense: ``(B, N, ...)`` padded tensor.
            lengths: ``(B,)`` integer tensor or list, each in ``[0, N]``.
        """
        from shopml.jagged import ops_reference

        checks.check_tensor(dense, "dense", min_ndim=2)
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.as_tensor(list(lengths), dtype=torch.int64, device=dense.device)
        checks.check_lengths(lengths, device=dense.device)
        if lengths.numel() != dense.shape[0]:
            raise ValueError(
                f"lengths: expected {dense.shape[0]} entries (dense.shape[0]), found {lengths.numel()}"
            )
        n = dense.shape[1]
        if checks.content_checks_on() and lengths.numel() > 0 and int(lengths.max()) > n:
            raise ValueError(
                f"lengths: expected every length <= dense.shape[1] = {n}, found {int(lengths.max())}"
            )
        offsets = lengths_to_offsets(lengths)
        values = ops_reference.padded_to_jagged(dense, offsets, total=None)
        return cls(values, offsets, n)

    @classmethod
    def from_list(
        cls, sequences: Sequence[torch.Tensor], offsets_dtype: torch.dtype = torch.int64
    ) -> JaggedTensor:
        """Concatenate B tensors ``(L_i, ...)`` (same trailing shape, dtype and device)."""
        if len(sequences) == 0:
            raise ValueError("sequences: expected at least one tensor, found an empty list")
        lengths = torch.tensor([s.shape[0] for s in sequences], dtype=offsets_dtype)
        values = torch.cat(list(sequences), dim=0)
        return cls(values, lengths_to_offsets(lengths).to(values.device), int(lengths.max()))

    # ---------------------------------------------------------------- properties
    @property
    def batch_size(self) -> int:
        """B, the number of sequences."""
        return self.offsets.numel() - 1

    @property
    def total(self) -> int:
        """T, the number of rows of ``values``."""
        return self.values.shape[0]

    @property
    def max_seqlen(self) -> int:
        """The longest sequence length (host int; computed and cached if not given)."""
        if self._max_seqlen is None:
            lengths = self.lengths()
            self._max_seqlen = int(lengths.max()) if lengths.numel() > 0 else 0
        return self._max_seqlen

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    def lengths(self) -> torch.Tensor:
        """``(B,)`` lengths, same dtype and device as ``offsets``."""
        return self.offsets[1:] - self.offsets[:-1]

    # ---------------------------------------------------------------- conversions
    def to_padded(self, max_len: int | None = None, pad_value: float = 0.0) -> torch.Tensor:
        """``(B, max_len, ...)`` padded copy; longer sequences are truncated to ``max_len``.

        Args:
            max_len: padded length N (default: :attr:`max_seqlen`).
            pad_value: value of padding positions.
        """
        from shopml.jagged import ops

        n = self.max_seqlen if max_len is None else max_len
        return ops.jagged_to_padded(self.values, self.offsets, n, pad_value=pad_value)

    def padding_mask(self, max_len: int | None = None) -> torch.Tensor:
        """``(B, max_len)`` bool, True at real (non-padding) positions."""
        n = self.max_seqlen if max_len is None else max_len
        pos = torch.arange(n, device=self.device)
        return pos[None, :] < self.lengths()[:, None]

    def to(self, *args: Any, **kwargs: Any) -> JaggedTensor:
        """Like ``Tensor.to`` on the values; offsets follow the device and keep their dtype."""
        values = self.values.to(*args, **kwargs)
        offsets = self.offsets.to(
            device=values.device, non_blocking=bool(kwargs.get("non_blocking", False))
        )
        return JaggedTensor(values, offsets, self._max_seqlen)

    def with_values(self, values: torch.Tensor) -> JaggedTensor:
        """Same offsets, new ``values`` (first dimension must stay T)."""
        if values.shape[0] != self.total:
            raise ValueError(
                f"values: expected {self.total} rows (like the current values), found {values.shape[0]}"
            )
        return JaggedTensor(values, self.offsets, self._max_seqlen)

    def split(self) -> list[torch.Tensor]:
        """The B sequences as a list of views ``(L_i, ...)`` (one host sync)."""
        bounds = self.offsets.tolist()
        return [self.values[bounds[i] : bounds[i + 1]] for i in range(self.batch_size)]

    def validate(self) -> JaggedTensor:
        """Check offsets contents and ``max_seqlen`` (always, whatever the checks switch says).

        Returns:
            self, so that ``JaggedTensor(...).validate()`` chains.

        Raises:
            ValueError: naming the broken invariant and what was found.
        """
        checks.check_offsets_content(self.offsets, self.total)
        if self._max_seqlen is not None and self.batch_size > 0:
            longest = int(self.lengths().max())
            if longest > self._max_seqlen:
                raise ValueError(
                    f"max_seqlen: expected every sequence length <= {self._max_seqlen}, "
                    f"found a length {longest}"
                )
        return self

    # ---------------------------------------------------------------- python protocol
    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -self.batch_size <= i < self.batch_size:
            raise IndexError(f"i: expected a sequence index in [0, {self.batch_size}), found {i}")
        i = i % self.batch_size
        start, end = self.offsets[i : i + 2].tolist()
        return self.values[start:end]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.split())

    def __repr__(self) -> str:
        return (
            f"JaggedTensor(B={self.batch_size}, T={self.total}, max_seqlen={self._max_seqlen}, "
            f"values={tuple(self.values.shape)} {self.values.dtype}, device={self.device})"
        )


class KeyedJaggedTensor:
    """Several named jagged features of one batch, stored key-major like TorchRec's KJT.

    ``lengths`` has ``len(keys) * B`` entries: first the B lengths of ``keys[0]``, then those of
    ``keys[1]``, and so on; ``values`` concatenates the features in the same order. Give
    ``lengths`` or ``offsets`` (or both); the other is derived.

    Args:
        keys: feature names, unique.
        values: ``(T, ...)`` all features' rows back to back (ids are usually int64 ``(T,)``).
        lengths: ``(K*B,)`` int32/int64, on the device of ``values``.
        offsets: ``(K*B+1,)`` int32/int64, on the device of ``values``.
        weights: optional ``(T,)`` floating per-value weights (TorchRec's weighted features).

    Example:
        >>> import torch
        >>> from shopml.jagged import JaggedTensor, KeyedJaggedTensor
        >>> kjt = KeyedJaggedTensor(
        ...     keys=["clicks", "carts"],
        ...     values=torch.tensor([11, 12, 13, 21, 22]),
        ...     lengths=torch.tensor([2, 1, 0, 2]),       # clicks: [11, 12], [13]; carts: [], [21, 22]
        ... )
        >>> kjt.batch_size
        2
        >>> kjt["carts"].offsets
        tensor([0, 0, 2])
        >>> KeyedJaggedTensor.from_dict(kjt.to_dict()).lengths.tolist()
        [2, 1, 0, 2]

        To and from TorchRec (no import of torchrec here unless :meth:`to_torchrec` is called)::

            kjt = KeyedJaggedTensor.from_torchrec(torchrec_kjt)   # duck-typed: keys/values/lengths
            torchrec_kjt = kjt.to_torchrec()
    """

    __slots__ = ("keys", "values", "lengths", "offsets", "weights")

    def __init__(
        self,
        keys: Sequence[str],
        values: torch.Tensor,
        lengths: torch.Tensor | None = None,
        offsets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        keys = list(keys)
        if len(set(keys)) != len(keys) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"keys: expected unique strings, found {keys!r}")
        checks.check_tensor(values, "values", min_ndim=1)
        if lengths is None and offsets is None:
            raise ValueError("lengths/offsets: expected at least one of them, found neither")
        if lengths is not None:
            checks.check_lengths(lengths, device=values.device)
        if offsets is not None:
            checks.check_offsets(offsets, values.shape[0], device=values.device)
        if lengths is None:
            assert offsets is not None
            lengths = offsets[1:] - offsets[:-1]
        if offsets is None:
            offsets = lengths_to_offsets(lengths)
        if offsets.numel() != lengths.numel() + 1:
            raise ValueError(
                f"offsets: expected len(lengths) + 1 = {lengths.numel() + 1} entries, found {offsets.numel()}"
            )
        if len(keys) == 0:
            if lengths.numel() != 0:
                raise ValueError(
                    f"lengths: expected no entries for no keys, found {lengths.numel()}"
                )
        elif lengths.numel() % len(keys) != 0:
            raise ValueError(
                f"lengths: expected a multiple of len(keys) = {len(keys)} entries "
                f"(key-major, B per key), found {lengths.numel()}"
            )
        if weights is not None:
            checks.check_tensor(weights, "weights", ndim=1, floating=True, device=values.device)
            if weights.shape[0] != values.shape[0]:
                raise ValueError(
                    f"weights: expected {values.shape[0]} entries (one per value), found {weights.shape[0]}"
                )
        self.keys = keys
        self.values = values
        self.lengths = lengths
        self.offsets = offsets
        self.weights = weights

    @property
    def batch_size(self) -> int:
        """B, the number of examples (TorchRec calls it ``stride``)."""
        return self.lengths.numel() // len(self.keys) if self.keys else 0

    def length_per_key(self) -> list[int]:
        """Number of values of each key (one host sync)."""
        if not self.keys:
            return []
        return self.lengths.view(len(self.keys), -1).sum(dim=1).tolist()

    def to_dict(self) -> dict[str, JaggedTensor]:
        """``{key: JaggedTensor}``; values are views, max_seqlen filled in (one host sync)."""
        if not self.keys:
            return {}
        per_key = self.lengths.view(len(self.keys), -1)
        sizes = per_key.sum(dim=1).tolist()
        longest = (
            per_key.max(dim=1).values.tolist() if per_key.shape[1] > 0 else [0] * len(self.keys)
        )
        out: dict[str, JaggedTensor] = {}
        start = 0
        for key, size, row, n in zip(self.keys, sizes, per_key, longest, strict=True):
            out[key] = JaggedTensor(
                self.values[start : start + size], lengths_to_offsets(row), int(n)
            )
            start += size
        return out

    def __getitem__(self, key: str) -> JaggedTensor:
        if key not in self.keys:
            raise KeyError(f"key: expected one of {self.keys}, found {key!r}")
        return self.to_dict()[key]

    def weights_dict(self) -> dict[str, torch.Tensor]:
        """``{key: (T_key,) weights}``; raises if the KJT has no weights."""
        if self.weights is None:
            raise ValueError("weights: expected a weighted KeyedJaggedTensor, found weights=None")
        return dict(zip(self.keys, torch.split(self.weights, self.length_per_key()), strict=True))

    @classmethod
    def from_dict(
        cls, features: Mapping[str, JaggedTensor], weights: Mapping[str, torch.Tensor] | None = None
    ) -> KeyedJaggedTensor:
        """Stack ``{key: JaggedTensor}`` (same batch size, dtype and device) key-major."""
        if not features:
            raise ValueError("features: expected at least one key, found an empty mapping")
        jts = list(features.values())
        b = jts[0].batch_size
        for key, jt in features.items():
            if not isinstance(jt, JaggedTensor):
                raise ValueError(
                    f"features[{key!r}]: expected a JaggedTensor, found {type(jt).__name__}"
                )
            if jt.batch_size != b:
                raise ValueError(
                    f"features[{key!r}]: expected batch size {b} (like the first key), found {jt.batch_size}"
                )
        values = torch.cat([jt.values for jt in jts], dim=0)
        lengths = torch.cat([jt.lengths().to(torch.int64) for jt in jts], dim=0)
        w = None
        if weights is not None:
            w = torch.cat([weights[k] for k in features], dim=0)
        return cls(list(features), values, lengths=lengths, weights=w)

    @classmethod
    def from_torchrec(cls, kjt: Any) -> KeyedJaggedTensor:
        """From a ``torchrec.KeyedJaggedTensor`` (duck-typed: ``keys()``, ``values()``, ``lengths()``)."""
        weights = kjt.weights_or_none() if hasattr(kjt, "weights_or_none") else None
        return cls(list(kjt.keys()), kjt.values(), lengths=kjt.lengths(), weights=weights)

    def to_torchrec(self) -> Any:
        """A ``torchrec.sparse.jagged_tensor.KeyedJaggedTensor`` (needs torchrec installed)."""
        try:
            from torchrec.sparse.jagged_tensor import KeyedJaggedTensor as TorchrecKJT
        except ImportError as exc:  # pragma: no cover - torchrec is optional
            raise ImportError(
                "to_torchrec needs torchrec; use keys/values/lengths directly"
            ) from exc
        return TorchrecKJT(
            keys=self.keys, values=self.values, lengths=self.lengths, weights=self.weights
        )

    def to(self, *args: Any, **kwargs: Any) -> KeyedJaggedTensor:
        """Move to a device (values dtype may change; ids usually should not)."""
        values = self.values.to(*args, **kwargs)
        dev = values.device
        weights = None if self.weights is None else self.weights.to(dev)
        return KeyedJaggedTensor(
            self.keys, values, self.lengths.to(dev), self.offsets.to(dev), weights
        )

    def __repr__(self) -> str:
        return (
            f"KeyedJaggedTensor(keys={self.keys}, B={self.batch_size}, "
            f"values={tuple(self.values.shape)} {self.values.dtype}, device={self.values.device})"
        )
