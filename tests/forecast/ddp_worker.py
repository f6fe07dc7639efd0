"""Worker for test_ddp: a tiny fit under torchrun (2 CPU processes, Gloo)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch.distributed as dist
from conftest import make_sales  # noqa: E402

from shopml.common.distributed import setup_distributed, teardown_distributed
from shopml.forecast.config import ARMDNConfig
from shopml.forecast.estimator import ARMDN

df, st = make_sales(8, 80)
ctx = setup_distributed("cpu")  # the worker owns the group: fit joins it and leaves it up
m = ARMDN(
    ARMDNConfig(
        horizon=7,
        context_length=14,
        hidden_size=8,
        num_layers=1,
        max_epochs=2,
        steps_per_epoch=3,
        batch_size=16,
        device="cpu",
    )
).fit(df, st)
w = next(iter(m.net.parameters())).detach().clone()
g = [w.clone() for _ in range(dist.get_world_size())]
dist.all_gather(g, w)
equal = all((x - g[0]).abs().max().item() == 0 for x in g)
line = f"rank {dist.get_rank()} {m.history['world_size']} {m.history['windows']} "
# one write of a short line is atomic on a pipe: the two ranks' lines never interleave
os.write(1, f"{line}params equal across ranks: {equal}\n".encode())
teardown_distributed(ctx)
