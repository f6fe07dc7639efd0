"""Compile several Triton kernels at once, each in a forked process: a new machine's first call.

Triton compiles a kernel at the first launch of each specialisation: its Python front end, MLIR
passes, LLVM and ptxas, 1.5-2 s per attention kernel for sm_90, one after the other. The
attention's first forward + backward needs three (forward, dQ, dK/dV), or with the Gluon kernels
four (the own-tile numbering, forward, delta, backward: their jobs carry the host-side tensor
descriptors, which a child binds as the launch will). Threads do not overlap
them: on the 2-core CPU machine three compiles in three threads took 1.9x the serial time (the
front end and the passes hold the GIL). Processes do: on an H200's fresh machine the first
forward + backward took 4.7 s (D=64, Triton's cache key included) and 2.3 s (D=128) with this
module, 6.9 s and 5.1 s without (benchmarks/results/attention_cold-nvidia-h200.log).

:func:`compile_all` takes the :class:`~shopml.jagged.triton.launch.Job` s that launchers record
inside :func:`~shopml.jagged.triton.launch.collecting` and compiles each in a child made by
``os.fork()`` (up to one per CPU at a time): the child binds the very arguments of the coming
launch (so Triton derives the same specialisation and cache key), compiles, writes Triton's disk
cache and exits; the first real launch here then loads the binary from that cache. A forked child
must not touch CUDA: it gets the parent's device, stream and compute target in place of Triton's
driver queries, and only binds (host-side) and compiles. Triton's own cache key
(:mod:`~shopml.jagged.triton.startup`) is computed once here, before the fork.

Each compiled job is recorded (``precompiled.json`` in shopml's cache dir, keyed by Triton's
version and cache dir, the target, the kernel's source hash and the launch signature), so a later
process forks nothing for binaries that are already on disk. It is an optimisation only: a child that fails, or outlives ``timeout``, or a platform without
``fork`` leaves the compile to the launch, as before. ``SHOPML_PARALLEL_COMPILE=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import signal
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shopml.common.devices import is_interpreter
from shopml.jagged.triton.launch import Job

stats = {"calls": 0, "jobs": 0, "ok": 0, "failed": 0, "seconds": 0.0}  # for tests and reports


def enabled() -> bool:
    """Fork available, not the interpreter (nothing to compile), not switched off."""
    setting = os.environ.get("SHOPML_PARALLEL_COMPILE", "1")
    return hasattr(os, "fork") and not is_interpreter() and setting not in ("", "0")


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _driver_facts() -> tuple[Any, int, Any]:
    """(Triton's active driver, current device, compile target), read here, before the fork."""
    from triton.runtime import driver

    drv = driver.active
    device = drv.get_current_device()
    return drv, device, drv.get_current_target()


def _in_child(job: Job, drv: Any, device: int, target: Any) -> None:
    """Compile one job without CUDA: Triton's driver queries answered from the parent's facts."""
    capability = (target.arch // 10, target.arch % 10) if isinstance(target.arch, int) else None
    drv.get_current_device = lambda: device
    drv.get_current_stream = lambda *_: 0
    drv.get_current_target = lambda: target
    if capability is not None:
        drv.get_device_capability = lambda *_: capability
    compiled = job.kernel.warmup(*job.args, grid=job.grid, **job.kwargs)
    # a Triton that builds a launcher per signature caches it on disk too (an optimisation)
    with contextlib.suppress(Exception):
        drv.launcher_cls(compiled.src, compiled.metadata)


def _fork(job: Job, facts: tuple) -> int:
    """A child that compiles ``job`` and exits (0 on success); returns its pid."""
    with warnings.catch_warnings():  # Python 3.12 warns about fork in a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: no output (a real error shows again at the launch), no cleanup handlers
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        _in_child(job, *facts)
        code = 0
    finally:
        os._exit(code)


def _job_id(job: Job, target: Any) -> str:
    """What a job compiles, for the record: Triton's version and cache dir, the target, the
    kernel's source hash and the launch signature with its config."""
    import triton

    cache = os.environ.get("TRITON_CACHE_DIR", "")
    text = f"{triton.__version__}|{cache}|{target}|{job.kernel.cache_key}|{job.ident}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _record_path() -> Path:
    from shopml.jagged.triton.tuning import cache_dir

    return cache_dir() / "precompiled.json"


@functools.cache
def _recorded() -> set[str]:
    """Jobs compiled in earlier processes (their binaries are in Triton's disk cache)."""
    try:
        data = json.loads(_record_path().read_text())
        return set(data["ids"]) if data.get("format") == 1 else set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _remember(ids: list[str]) -> None:
    """Add ``ids`` to the record (merged with what other processes wrote; atomic)."""
    from shopml.common.io import write_json

    _recorded.cache_clear()
    merged = _recorded()  # read again: other processes may have added theirs
    merged.update(ids)
    with contextlib.suppress(OSError):  # an optimisation: unwritten, the next process forks again
        write_json(_record_path(), {"format": 1, "ids": sorted(merged)})


def compile_all(jobs: Sequence[Job], *, workers: int | None = None, timeout: float = 300.0) -> int:
    """Compile ``jobs`` in forked children, at most ``workers`` (default: CPUs) at a time.

    Jobs recorded as compiled by an earlier process are skipped (their first launch reads the
    binary from Triton's disk cache), and so is a single job (a child gains nothing then).
    Returns how many compiled; the others compile at their launch. Blocks until every child has
    exited or ``timeout`` seconds have passed (children still running then are killed).
    """
    if len(jobs) < 2 or not enabled():
        return 0
    from shopml.jagged.triton.startup import remember_triton_key

    start = time.perf_counter()
    try:
        facts = _driver_facts()
        ids = [_job_id(job, facts[2]) for job in jobs]
    except Exception:  # noqa: BLE001 - an unfamiliar Triton: compile at the launches
        return 0
    todo = [(i, job) for i, job in zip(ids, jobs, strict=True) if i not in _recorded()]
    if len(todo) < 2:
        return 0
    remember_triton_key()
    try:
        import triton.runtime.cache as cache_mod

        cache_mod.triton_key()  # computed (or read back) once, here, and inherited
    except Exception:  # noqa: BLE001
        return 0
    workers = max(1, workers or _cpus())
    running: dict[int, str] = {}
    compiled: list[str] = []
    deadline = time.monotonic() + timeout
    while todo or running:
        while todo and len(running) < workers:
            ident, job = todo.pop(0)
            running[_fork(job, facts)] = ident
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ident = running.pop(pid)
                if os.waitstatus_to_exitcode(status) == 0:
                    compiled.append(ident)
        if time.monotonic() > deadline:
            for pid in running:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            break
        if running:
            time.sleep(0.002)
    if compiled:
        _remember(compiled)
    stats["calls"] += 1
    stats["jobs"] += len(jobs)
    stats["ok"] += len(compiled)
    stats["failed"] += len(jobs) - len(compiled)
    stats["seconds"] += time.perf_counter() - start
    return len(compiled)
