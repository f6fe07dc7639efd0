"""One data-parallel setup and teardown for every trainer (torchrun's environment, gloo or NCCL).

Usage::

    ctx = setup_distributed("auto")      # reads RANK / WORLD_SIZE / LOCAL_RANK, picks the device
    try:
        ...                              # ctx.rank, ctx.world_size, ctx.device, ctx.is_main
    finally:
        teardown_distributed(ctx)        # barrier, free DDP's hold on the group, destroy it

Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised and teardown does nothing.
Under torchrun on CUDA each rank takes ``cuda:LOCAL_RANK`` and NCCL; on a CPU, gloo.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch

from shopml.common.devices import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: global rank (0 without torchrun).
        world_size: number of processes (1 without torchrun).
        local_rank: rank within this host (selects the GPU).
        device: the device this rank computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files, evaluates and prints."""
        return self.rank == 0


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK: expected integers ({exc})") from exc
    return rank, world, local


def setup_distributed(device: str | torch.device | None = "auto") -> DistContext:
    """Resolve the device and, under torchrun, join the process group (idempotent).

    Args:
        device: "auto", "cpu" or "cuda[:N]"; under torchrun a CUDA device becomes
            ``cuda:LOCAL_RANK``.

    Returns:
        The :class:`DistContext` of this process.

    Raises:
        ValueError: ``device`` names CUDA on a machine without it, or torchrun's variables are
            not integers.
    """
    rank, world, local = dist_env()
    dev = resolve_device(device)
    if world <= 1:
        return DistContext(0, 1, 0, dev)
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        if dev.type == "cuda":
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dev)


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (a no-op in a single process)."""
    if ctx.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()


def teardown_distributed(ctx: DistContext, *, wait: bool = True) -> None:
    """Leave the process group: every rank waits for the others (``wait``, so that no rank tears
    its end down while rank 0 still evaluates; CI once saw gloo abort a rank in that window),
    DDP's reducer is freed while the interpreter is whole, then the group is destroyed."""
    if not ctx.distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    if wait:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()
