"""Data-parallel training through torchrun: 2 CPU processes end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_torchrun_two_processes_keep_weights_in_sync():
    worker = Path(__file__).parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")]
    )
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(worker)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("rank")]
    assert len(lines) == 2
    assert all(ln.endswith("params equal across ranks: True") for ln in lines), lines
    assert all(" 2 192 " in ln for ln in lines), lines  # world size 2, 2 x 96 windows


@pytest.mark.slow
def test_cli_is_the_torchrun_entry_point(tmp_path):
    """``torchrun -m shopml.forecast.cli train``: two ranks train, rank 0 saves, the group is
    destroyed (torch warns at exit when a process group is left alive)."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from conftest import make_sales

    df, _ = make_sales(8, 80)
    df.to_parquet(tmp_path / "sales.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[2] / "src"), env.get("PYTHONPATH", "")]
    )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "-m", "shopml.forecast.cli", "train", "--data", str(tmp_path / "sales.parquet"),
        "--horizon", "7", "--out", str(tmp_path / "run"), "--epochs", "1",
        "--steps-per-epoch", "3", "--batch-size", "16", "--hidden", "8", "--device", "cpu",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert res.stdout.count("trained AR-MDN") == 1 and "x 2;" in res.stdout, res.stdout
    assert "destroy_process_group" not in res.stderr, res.stderr[-2000:]
