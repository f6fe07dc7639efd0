"""The one place that talks to glibc's allocator (a no-op where there is no glibc).

- :func:`limit_heap_growth`: fix glibc's mmap threshold at 1 MiB. glibc serves a block above the
  threshold with its own mmap (handed back when freed) and smaller ones from its heaps, but by
  default it raises the threshold to the size of each mmapped block freed (up to 32 MiB). A CPU
  training step allocates and frees hundreds of MB of activations whose sizes change with every
  jagged batch; once they are served from the main heap, freed blocks stay resident as holes
  between live ones. Measured on the small world (CPU ranking, default settings, ``mallinfo2``):
  memory in use flat at 170 MB while the main heap's free bytes grew ~11 MB a step (no limit; the
  other threads' arenas held under 5 MB); a fixed 1 MiB threshold keeps them at ~70 MB and the
  resident memory flat. Its cost, fresh pages for each large block, is within the noise of a step
  (benchmarks/README.md, rank, CPU memory).
- :func:`release_memory`: collect garbage and hand freed heap pages back to the OS.
"""

from __future__ import annotations

import ctypes
import gc
import sys

_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_heap_growth() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD_BYTES`` (see the module docstring; calling
    it again changes nothing). True where glibc accepted it, False where there is no glibc."""
    libc = _libc()
    try:
        return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except AttributeError:
        return False


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc_trim), so a step's
    leftovers (a trained model, its batches) do not add to the next step's peak."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
