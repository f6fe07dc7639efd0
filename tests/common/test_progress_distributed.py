"""common.progress (plain lines off a terminal) and common.distributed (single-process setup)."""

from __future__ import annotations

import io

import pytest
import torch

from shopml.common.distributed import DistContext, dist_env, setup_distributed, teardown_distributed
from shopml.common.progress import Progress


def test_progress_prints_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    bar = Progress(4, "epoch 1/2", stream=out, every_s=0.0)
    for i in range(4):
        bar.update(i + 1, loss=0.5, ex_s=12345.0)
    bar.close("done")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/2  1/4 (25%)  loss 0.5000  12,345 ex/s")
    assert lines[-2].startswith("epoch 1/2  4/4 (100%)")
    assert lines[-1] == "epoch 1/2: done"


def test_progress_throttles_and_can_be_disabled():
    out = io.StringIO()
    bar = Progress(100, "x", stream=out, every_s=3600.0)
    for i in range(100):
        bar.update(i + 1)
    bar.close()
    assert len(out.getvalue().splitlines()) == 1  # only the final line

    quiet = io.StringIO()
    with Progress(3, "y", stream=quiet, enabled=False) as bar:
        bar.update(loss=1.0)
    assert quiet.getvalue() == "" and bar.completed == 1


def test_single_process_setup_is_a_plain_context(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = setup_distributed("cpu")
    assert ctx == DistContext(0, 1, 0, torch.device("cpu"))
    assert ctx.is_main and not ctx.distributed
    teardown_distributed(ctx)  # nothing to tear down


def test_dist_env_rejects_garbage(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        dist_env()
