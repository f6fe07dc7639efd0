"""Triton's cache key remembered across processes (shopml.jagged.triton.startup)."""

from __future__ import annotations

import json
import sys

import pytest

from shopml.jagged.triton import startup


@pytest.fixture
def fake_key(monkeypatch, tmp_path):
    """Triton's triton_key replaced by a counting fake in every module that bound it."""
    import triton.runtime.cache as cache_mod

    calls = []

    def fake():
        calls.append(1)
        return "KEY-1"

    real = cache_mod.triton_key
    for name, mod in list(sys.modules.items()):
        if name.startswith("triton") and getattr(mod, "triton_key", None) is real:
            monkeypatch.setattr(mod, "triton_key", fake)
    monkeypatch.setenv("SHOPML_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(startup, "_DONE", False)
    return cache_mod, calls, tmp_path


def test_first_process_computes_and_stores_the_next_reads_back(fake_key, monkeypatch):
    cache_mod, calls, tmp = fake_key
    startup.remember_triton_key()
    assert cache_mod.triton_key() == "KEY-1" and cache_mod.triton_key() == "KEY-1"
    assert len(calls) == 1
    stored = json.loads((tmp / "triton_key.json").read_text())
    assert stored["key"] == "KEY-1" and len(stored["fingerprint"]) == 64
    # a new process: the fake is the "original" again, the stored key is served without it
    monkeypatch.setattr(startup, "_DONE", False)
    startup.remember_triton_key()
    assert cache_mod.triton_key() == "KEY-1" and len(calls) == 1


def test_a_changed_fingerprint_computes_the_key_again(fake_key, monkeypatch):
    cache_mod, calls, tmp = fake_key
    (tmp / "triton_key.json").write_text(json.dumps({"fingerprint": "old", "key": "STALE"}))
    startup.remember_triton_key()
    assert cache_mod.triton_key() == "KEY-1" and len(calls) == 1


def test_switched_off_leaves_triton_alone(fake_key, monkeypatch):
    cache_mod, calls, _ = fake_key
    monkeypatch.setenv("SHOPML_TRITON_KEY_MEMO", "0")
    before = cache_mod.triton_key
    startup.remember_triton_key()
    assert cache_mod.triton_key is before


_EAGER_PROBE = """
import sys, torch
import shopml.jagged as J
offsets = torch.tensor([0, 3, 3, 10])
q, k, v = (torch.randn(10, 2, 16, requires_grad=True) for _ in range(3))
J.jagged_flash_attention(q, k, v, offsets, 7, backend="triton").sum().backward()
with torch.no_grad():
    J.jagged_flash_attention(q, k, v, offsets, 7, backend="triton")
assert q.grad is not None and bool(torch.isfinite(q.grad).all())
heavy = ("shopml.jagged.attention_ops", "sympy", "torch._dynamo", "torch._inductor")
print("LOADED", [m for m in heavy if m in sys.modules])
print("REGISTERED", hasattr(torch.ops.shopml, "jagged_attention_fwd"))
"""


def test_eager_attention_registers_no_custom_op_and_imports_no_sympy():
    """A new process's eager forward + backward (Triton path, under the interpreter) leaves the
    torch.compile custom ops unregistered and imports
    neither sympy nor dynamo; the ops appear once dynamo traces (tests of test_attention.py)."""
    import os
    import subprocess
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=src)
    done = subprocess.run(
        [sys.executable, "-c", _EAGER_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOADED []" in done.stdout, done.stdout
    assert "REGISTERED False" in done.stdout, done.stdout
