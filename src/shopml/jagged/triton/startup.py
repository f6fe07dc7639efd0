"""Per-process start cost of Triton: its cache key, remembered across processes.

Before Triton can look a compiled kernel up in its disk cache it computes ``triton_key()``: a
SHA-256 over its own Python sources and its ~500 MB ``libtriton`` library, once per process
(0.5-1.8 s measured; benchmarks/README.md). The value changes only when Triton's files change, so
:func:`remember_triton_key` stores it in shopml's cache directory under a fingerprint of those
files (version, and the size and modification time of every file that the key hashes) and hands
the stored value to Triton in later processes; any change of those files gives a new fingerprint
and the key is computed again. ``SHOPML_TRITON_KEY_MEMO=0`` leaves Triton alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

_DONE = False


def _fingerprint(triton_dir: Path) -> str:
    """Version plus (path, size, mtime) of libtriton and of every .py file the key hashes."""
    import triton

    parts = [triton.__version__]
    lib = triton_dir / "_C"
    files = sorted(p for p in lib.glob("libtriton.*") if p.is_file())
    for sub in ("compiler", "backends", "language", "runtime"):
        files += sorted((triton_dir / sub).rglob("*.py"))
    for p in files:
        st = p.stat()
        parts.append(f"{p.relative_to(triton_dir)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def remember_triton_key() -> None:
    """Serve ``triton_key()`` from the stored value when Triton's files are unchanged (once)."""
    global _DONE
    if _DONE or os.environ.get("SHOPML_TRITON_KEY_MEMO", "1") in ("", "0"):
        return
    _DONE = True
    try:
        import triton.runtime.cache as cache_mod

        original = cache_mod.triton_key
        from shopml.jagged.triton.tuning import cache_dir

        path = cache_dir() / "triton_key.json"
        fingerprint = _fingerprint(Path(cache_mod.__file__).resolve().parent.parent)
    except (ImportError, AttributeError, OSError):
        return
    stored = None
    try:
        data = json.loads(path.read_text())
        if data.get("fingerprint") == fingerprint and isinstance(data.get("key"), str):
            stored = data["key"]
    except (OSError, ValueError, AttributeError):
        pass

    def triton_key() -> str:
        nonlocal stored
        if stored is None:
            stored = original()
            try:
                from shopml.common.io import write_json

                write_json(path, {"fingerprint": fingerprint, "key": stored})
            except OSError:
                pass
        return stored

    for name, mod in list(sys.modules.items()):  # every module that bound the original by name
        if name.startswith("triton") and getattr(mod, "triton_key", None) is original:
            mod.triton_key = triton_key
