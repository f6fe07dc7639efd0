"""Kernels compiled at once in forked processes (shopml.jagged.triton.precompile) and the
launchers' dry run that lists them (launch.collecting); the GPU run is in the gpu tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from shopml.jagged.triton import precompile
from shopml.jagged.triton.launch import FastLauncher, Job, collecting


class _FakeJit:
    """A triton.jit function as the pool sees it: ``warmup`` compiles (here: writes a file named
    after the job, from the process that ran it), ``cache_key`` names the source."""

    cache_key = "src-hash"

    def __init__(self, out: Path, fail: bool = False, sleep: float = 0.0) -> None:
        self.out, self.fail, self.sleep = out, fail, sleep
        self.arg_names = ["x_ptr", "n", "BLOCK"]
        self.launches = []

    def warmup(self, *args, grid, **kwargs):
        time.sleep(self.sleep)
        if self.fail:
            raise RuntimeError("compile error")
        (self.out / f"{kwargs['BLOCK']}.{os.getpid()}").write_text(str(args[1:]))
        return SimpleNamespace(src=None, metadata=None)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(args)
            return None  # not a usable binary: the launcher keeps the ordinary path

        return launch


@pytest.fixture
def pool(monkeypatch, tmp_path):
    """Forking on, CUDA and Triton's driver and key faked, shopml's cache dir in tmp_path."""
    import triton.runtime.cache as cache_mod

    monkeypatch.setattr(precompile, "is_interpreter", lambda: False)
    monkeypatch.setenv("SHOPML_CACHE_DIR", str(tmp_path / "cache"))
    target = SimpleNamespace(arch=90, backend="cuda")
    drv = SimpleNamespace(launcher_cls=lambda src, meta: None)
    monkeypatch.setattr(precompile, "_driver_facts", lambda: (drv, 0, target))
    monkeypatch.setattr(cache_mod, "triton_key", lambda: "KEY")
    monkeypatch.setenv("SHOPML_TRITON_KEY_MEMO", "0")
    precompile._recorded.cache_clear()
    yield tmp_path
    precompile._recorded.cache_clear()


def _jobs(kernel, blocks):
    return [Job(kernel, lambda m: (1,), (None, 16 * b), {"BLOCK": b}, f"sig{b}") for b in blocks]


def test_jobs_compile_in_children_once_across_processes(pool):
    kernel = _FakeJit(pool)
    assert precompile.compile_all(_jobs(kernel, [16, 32, 64])) == 3
    made = sorted(p.name for p in pool.glob("*.*"))
    assert [m.split(".")[0] for m in made] == ["16", "32", "64"]
    assert all(int(m.split(".")[1]) != os.getpid() for m in made)  # each in a child
    for p in pool.glob("*.*"):
        p.unlink()
    precompile._recorded.cache_clear()  # a new process reads the record back
    assert precompile.compile_all(_jobs(kernel, [16, 32, 64])) == 0
    assert not list(pool.glob("*.*"))
    assert precompile.compile_all(_jobs(kernel, [16, 128, 256])) == 2  # only the new ones


def test_a_failing_or_slow_child_leaves_its_compile_to_the_launch(pool):
    ok, bad = _FakeJit(pool), _FakeJit(pool, fail=True)
    assert precompile.compile_all(_jobs(ok, [16]) + _jobs(bad, [32])) == 1
    slow = _FakeJit(pool, sleep=30)
    start = time.monotonic()
    assert precompile.compile_all(_jobs(slow, [64, 128]), timeout=0.5) == 0
    assert time.monotonic() - start < 10
    precompile._recorded.cache_clear()
    assert precompile.compile_all(_jobs(bad, [32]) + _jobs(ok, [256])) == 1  # 32 not recorded


def test_nothing_forks_for_one_job_or_when_switched_off(pool, monkeypatch):
    kernel = _FakeJit(pool)
    assert precompile.compile_all(_jobs(kernel, [16])) == 0
    monkeypatch.setenv("SHOPML_PARALLEL_COMPILE", "0")
    assert precompile.compile_all(_jobs(kernel, [16, 32])) == 0
    assert not list(pool.glob("*.*"))


def test_collecting_records_unlaunched_signatures_instead_of_launching(monkeypatch, tmp_path):
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda d: 1, raising=False)
    kernel = _FakeJit(tmp_path)
    fl = FastLauncher(kernel)
    fl.enabled = True
    grid = lambda meta: (1,)
    x = torch.zeros(64)
    with collecting() as jobs:
        fl(grid, (x, 48), {"BLOCK": 16})
    assert kernel.launches == [] and len(jobs) == 1
    assert jobs[0].kwargs == {"BLOCK": 16} and jobs[0].args == (x, 48)
    with collecting() as other:
        fl(grid, (x, 47), {"BLOCK": 16})  # another int class: another signature, another job
    assert other[0].ident != jobs[0].ident
    fl(grid, (x, 48), {"BLOCK": 16})  # outside: launches
    assert len(kernel.launches) == 1


_FIRST_CALL = """
import json, sys, torch
from shopml.jagged import jagged_flash_attention
from shopml.jagged.triton import precompile
lengths = [37, 0, 1, 300, 128, 77]
offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda")
gen = torch.Generator().manual_seed(0)
q, k, v, g = (torch.randn(543, 2, 64, generator=gen).cuda().bfloat16() for _ in range(4))
grads = []
for backend in ("triton", "reference"):
    x = [t.clone().requires_grad_() for t in (q, k, v)]
    out = jagged_flash_attention(*x, offsets, 300, causal=True, backend=backend)
    out.backward(g)
    grads.append([out.float(), *(t.grad.float() for t in x)])
err = max(float((a - b).abs().max() / b.abs().max().clamp(min=1)) for a, b in zip(*grads))
print("RESULT " + json.dumps(dict(precompile.stats, err=err)))
"""


@pytest.mark.gpu
def test_gpu_first_call_compiles_its_three_kernels_in_children(tmp_path):
    """A machine that never ran it (empty caches): forward, dQ and dK/dV compile in children;
    the results equal the reference's; a second process forks nothing."""
    import json
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src, TRITON_CACHE_DIR=str(tmp_path / "triton"),
               SHOPML_CACHE_DIR=str(tmp_path / "shopml"))  # fmt: skip
    env.pop("TRITON_INTERPRET", None)
    results = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        results.append(json.loads(line[7:]))
    first, second = results
    assert first["ok"] == 3 and first["failed"] == 0, first
    assert second["calls"] == 0, second
    assert first["err"] < 0.02 and second["err"] < 0.02, results  # bf16 rounding
