"""The content-check switch: per thread and per asyncio task (a ContextVar), and under compile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
import torch

from shopml.jagged import checks, checks_enabled, content_checks_on, ops


def test_switch_off_in_one_thread_leaves_checks_on_in_another():
    """The server's case: one worker thread scores with checks off while another still checks."""
    inside = threading.Event()
    done = threading.Event()
    seen = {}

    def quiet_worker():
        with checks_enabled(False):
            seen["quiet inside"] = content_checks_on()
            inside.set()
            done.wait(timeout=10)
        seen["quiet after"] = content_checks_on()

    def checking_worker():
        inside.wait(timeout=10)
        seen["other while quiet"] = content_checks_on()
        bad = torch.tensor([0, 3, 2])  # decreasing offsets: only a content check sees it
        try:
            ops.jagged_sum(torch.randn(2, 4), bad, backend="reference")
        except ValueError as exc:
            seen["other error"] = str(exc)
        done.set()

    threads = [threading.Thread(target=quiet_worker), threading.Thread(target=checking_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert seen["quiet inside"] is False
    assert seen["other while quiet"] is True
    assert "non-decreasing" in seen["other error"]
    assert seen["quiet after"] is True
    assert content_checks_on()  # nothing leaked into the main thread


def test_setter_in_a_thread_sets_only_that_thread():
    seen = {}

    def worker():
        checks_enabled(False)  # plain call: this thread's context from here on
        seen["worker"] = content_checks_on()

    t = threading.Thread(target=worker)
    t.start()
    t.join(timeout=10)
    assert seen["worker"] is False
    assert content_checks_on()


def test_switch_is_per_asyncio_task():
    async def quiet(started: asyncio.Event, release: asyncio.Event) -> bool:
        with checks_enabled(False):
            started.set()
            await release.wait()
            return content_checks_on()

    async def loud(started: asyncio.Event, release: asyncio.Event) -> bool:
        await started.wait()
        value = content_checks_on()
        release.set()
        return value

    async def main() -> tuple[bool, bool]:
        started, release = asyncio.Event(), asyncio.Event()
        return tuple(await asyncio.gather(quiet(started, release), loud(started, release)))

    assert asyncio.run(main()) == (False, True)
    assert content_checks_on()


@pytest.mark.skipif(not checks._DYNAMO_TRACES_CONTEXTVARS, reason="needs torch >= 2.14")
def test_compiled_code_follows_the_switch_where_dynamo_traces_contextvars():
    def fn(x):
        return x + 1 if content_checks_on() else x - 1

    compiled = torch.compile(fn, backend="eager", fullgraph=True)
    assert compiled(torch.zeros(1)).item() == 1
    with checks_enabled(False):
        assert compiled(torch.zeros(1)).item() == -1
    assert compiled(torch.zeros(1)).item() == 1


def test_older_torch_reads_the_switch_once_at_trace_time(monkeypatch):
    """Where Dynamo cannot trace ContextVar.get, the read is a trace-time constant (no graph
    break under fullgraph). The stand-in's get() breaks any graph that traces into it."""

    class Untraceable:
        def get(self) -> bool:
            torch._dynamo.graph_break()
            return False

    monkeypatch.setattr(checks, "_DYNAMO_TRACES_CONTEXTVARS", False)
    monkeypatch.setattr(checks, "_CONTENT_CHECKS", Untraceable())
    torch._dynamo.reset()

    def fn(x):
        return x + 1 if content_checks_on() else x - 1

    compiled = torch.compile(fn, backend="eager", fullgraph=True)
    assert compiled(torch.zeros(1)).item() == -1
    torch._dynamo.reset()


def test_importing_shopml_jagged_imports_neither_triton_nor_dynamo():
    code = (
        "import sys, shopml.jagged, shopml.jagged.fbgemm_compat; "
        "print('triton' in sys.modules, 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
