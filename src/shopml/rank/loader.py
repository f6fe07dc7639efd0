"""Batches of ranking examples for training and evaluation: shuffled per epoch, sharded for DDP,
collated in worker processes (``RankExamples.collate`` is vectorised), pinned for the GPU."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from shopml.rank.batch import RankBatch
from shopml.rank.data import RankExamples


class _BatchDataset(torch.utils.data.Dataset):
    """Dataset whose item ``i`` is the whole batch ``i`` of the current epoch's order."""

    def __init__(self, examples: RankExamples, batches: list[np.ndarray], layout: str) -> None:
        self.examples = examples
        self.batches = batches
        self.layout = layout

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> RankBatch:
        return self.examples.collate(self.batches[i], self.layout)


def _identity(x: Any) -> Any:
    return x


class BatchLoader:
    """Iterate over batches of :class:`RankExamples`, shuffled per epoch, sharded for DDP.

    With ``world_size > 1`` each step's global batch of ``batch_size`` examples is split between the
    ranks (rank ``r`` takes every ``world_size``-th example starting at ``r``), so that the union of
    all ranks' batches is exactly the single-process batch. A last global batch with fewer examples
    than ranks is dropped (for training; evaluation runs unsharded).

    Args:
        examples: the examples.
        batch_size: global examples per step (>= 1).
        layout: "jagged" or "padded".
        shuffle: shuffle each epoch with ``seed + epoch``.
        seed: base seed of the shuffling.
        rank / world_size: this process's shard.
        num_workers: DataLoader workers (0 = collate in this process).
        pin_memory: pin host memory (for asynchronous copies to the GPU).
    """

    def __init__(
        self,
        examples: RankExamples,
        batch_size: int,
        layout: str = "jagged",
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, found {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, found {rank}")
        self.examples = examples
        self.batch_size = batch_size
        self.layout = layout
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self) -> tuple[list[np.ndarray], list[int]]:
        """This rank's example indices of every step, and every step's global batch size."""
        n = len(self.examples)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        out, sizes = [], []
        for start in range(0, n, self.batch_size):
            chunk = order[start : start + self.batch_size]
            if self.world_size > 1:
                if len(chunk) < self.world_size:
                    continue
                sizes.append(len(chunk))
                chunk = chunk[self.rank :: self.world_size]
            else:
                sizes.append(len(chunk))
            out.append(chunk)
        return out, sizes

    def _batches(self) -> list[np.ndarray]:
        return self._plan()[0]

    def global_batch_sizes(self) -> list[int]:
        """Examples of each step summed over all ranks (the loss normaliser of DDP training)."""
        return self._plan()[1]

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self) -> Iterator[RankBatch]:
        dataset = _BatchDataset(self.examples, self._batches(), self.layout)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=_identity,
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
        return iter(loader)


def history_layout(sequence_backend: str) -> str:
    """Batch layout a sequence backend consumes: "padded" for "padded", else "jagged"."""
    return "padded" if sequence_backend == "padded" else "jagged"
