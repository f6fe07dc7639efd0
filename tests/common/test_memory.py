"""shopml.common.memory: the glibc allocator settings do what they say (checked in a fresh
process, so the test session's own allocator is left alone) and are no-ops off glibc."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from shopml.common import memory

GLIBC = memory._libc() is not None and hasattr(memory._libc(), "mallinfo2")

# Allocates a block twice and prints how many of the two allocations glibc served by mmap.
# glibc's dynamic threshold rises to the size of a freed mmapped block, so without a fixed
# threshold the second block of the same size lands on the heap; with limit_heap_growth() both are
# mmapped (and returned to the system when freed).
_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from shopml.common.memory import limit_heap_growth

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks "
                    "fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    libc.malloc.restype = ctypes.c_void_p
    if sys.argv[1] == "limit":
        assert limit_heap_growth() and limit_heap_growth()  # idempotent
    mapped = 0
    for _ in range(2):
        before = libc.mallinfo2().hblks
        block = libc.malloc(int(sys.argv[2]))
        mapped += libc.mallinfo2().hblks - before
        libc.free(ctypes.c_void_p(block))
    print(mapped)
    """
)


def _mapped(mode: str, size: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not GLIBC, reason="glibc (with mallinfo2) only")
def test_limit_heap_growth_keeps_large_blocks_out_of_the_heap():
    big = 4 * memory.MMAP_THRESHOLD_BYTES
    assert _mapped("default", big) < 2  # glibc's dynamic threshold: the second one on the heap
    assert _mapped("limit", big) == 2  # fixed threshold: both mmapped
    assert _mapped("limit", memory.MMAP_THRESHOLD_BYTES // 4) == 0  # small blocks stay on the heap


def test_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory._libc() is None
    assert memory.limit_heap_growth() is False
    memory.release_memory()  # collects garbage, trims nothing, does not fail


def test_no_op_when_libc_lacks_mallopt(monkeypatch):
    monkeypatch.setattr(memory, "_libc", object)  # a "libc" without mallopt or malloc_trim
    assert memory.limit_heap_growth() is False
