"""Launch configs chosen once per tuning key and remembered: on disk, and shipped for known GPUs.

A :class:`Tuner` picks the launch config (block sizes, warps, pipeline stages) of one Triton
kernel for a *tuning key*: the kernel's name and version, the GPU, the dtype of its first tensor
argument, and the values of its key arguments (head dim, causal flag, bias mode and power-of-two
buckets of the sequence lengths). In order, it takes

1. the choice already made in this process;
2. the choice remembered on disk for this GPU (``$SHOPML_CACHE_DIR``, else
   ``$XDG_CACHE_HOME/shopml``, else ``~/.cache/shopml``; file ``autotune/<gpu>.json``);
3. the shipped table ``pretuned.json`` (package data) for this class of GPU (compute
   capability and multiprocessor count, so a table measured on an H200 serves an H100 SXM too),
   exact key or else the entry with the nearest length buckets (and, for ``soft`` fields such
   as the bias mode, another value when the table has none of this one);
4. otherwise, when tuning is on, it times every candidate on the call's own inputs (compiling
   each), keeps the fastest and writes it to the disk cache (atomically, merged with what other
   processes wrote meanwhile); when tuning is off, the first candidate (the default).

So a first call on a known GPU compiles one config per kernel and measures nothing, and a later
process reads its choices back instead of timing again. A bumped kernel version (the kernel's
code changed) invalidates both the disk entries and the shipped ones. The disk cache is an
optimisation: an unreadable or unwritable file is ignored, with a warning.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

CACHE_FORMAT = 1
PRETUNED_FILE = "pretuned.json"  # written by benchmarks/attention_hopper.py --parts pretune
Config = dict[str, int]  # BLOCK_* sizes plus num_warps and num_stages


def cache_dir() -> Path:
    """Where tuning choices are remembered: ``$SHOPML_CACHE_DIR`` or the user cache dir."""
    explicit = os.environ.get("SHOPML_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shopml"


def slug(name: str) -> str:
    """File-name form of a GPU name: ``NVIDIA H200`` -> ``nvidia-h200``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


@functools.cache
def gpu_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


@functools.cache
def gpu_class(index: int) -> str:
    """``sm90-132`` = compute capability 9.0 with 132 multiprocessors (H100 SXM, H200)."""
    props = torch.cuda.get_device_properties(index)
    return f"sm{props.major}{props.minor}-{props.multi_processor_count}"


def make_key(kernel: str, version: int, dtype: torch.dtype, fields: Mapping[str, object]) -> str:
    """``attn_fwd@3|bfloat16|HEAD_DIM=64|...``: booleans as 0/1, fields in the given order."""
    parts = [f"{kernel}@{version}", str(dtype).removeprefix("torch.")]
    parts += [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in fields.items()]
    return "|".join(parts)


def _split_key(key: str, soft: Sequence[str]) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    """(the key without its ``*_bucket`` and soft fields, the buckets, the soft parts)."""
    rest, buckets, loose = [], [], []
    for part in key.split("|"):
        name, _, value = part.partition("=")
        if name.endswith("_bucket"):
            buckets.append(int(value))
        elif name in soft:
            loose.append(part)
        else:
            rest.append(part)
    return "|".join(rest), tuple(buckets), tuple(loose)


def nearest(table: Mapping[str, Config], key: str, soft: Sequence[str] = ()) -> Config | None:
    """``table[key]``, else the entry equal on every other field with the nearest buckets.

    Distance: the sum over bucket fields of ``|log2(a) - log2(b)|``, plus 100 per differing
    ``soft`` field (an entry of another bias mode serves only when none of this mode exists);
    ties go to the larger buckets (their tiles were timed on more work). None when no entry
    shares the other fields.
    """
    if key in table:
        return table[key]
    base, buckets, loose = _split_key(key, soft)
    best, best_d = None, math.inf
    for other, cfg in table.items():
        obase, obuckets, oloose = _split_key(other, soft)
        if obase != base or len(obuckets) != len(buckets) or len(oloose) != len(loose):
            continue
        d = sum(
            abs(math.log2(max(a, 1)) - math.log2(max(b, 1)))
            for a, b in zip(buckets, obuckets, strict=True)
        )
        d += 100.0 * sum(a != b for a, b in zip(loose, oloose, strict=True))
        d -= 1e-6 * sum(obuckets)  # ties: larger buckets
        if d < best_d:
            best, best_d = cfg, d
    return best


class DiskCache:
    """The remembered choices of one GPU: ``<cache_dir>/autotune/<gpu slug>.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, Config] | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Config]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"shopml tuning cache {self.path} unreadable ({exc}); ignored", stacklevel=3
            )
            return {}
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            return {}
        entries = data.get("entries", {})
        return {k: v for k, v in entries.items() if _valid(v)} if isinstance(entries, dict) else {}

    def get(self, key: str) -> Config | None:
        if self._entries is None:
            self._entries = self._read()
        return self._entries.get(key)

    def put(self, key: str, cfg: Config) -> None:
        """Add one entry: re-read the file, merge, write a temporary file and rename it."""
        from shopml.common.io import write_json  # pandas is imported by shopml.common.io: lazily

        with self._lock:
            entries = self._read()
            entries[key] = dict(cfg)
            self._entries = entries
            try:
                write_json(self.path, {"format": CACHE_FORMAT, "entries": entries})
            except OSError as exc:
                warnings.warn(f"shopml tuning cache {self.path} not written ({exc})", stacklevel=3)


def _valid(cfg: object) -> bool:
    return isinstance(cfg, dict) and bool(cfg) and all(type(v) is int for v in cfg.values())


@functools.cache
def disk_cache(directory: str, gpu: str) -> DiskCache:
    return DiskCache(Path(directory) / "autotune" / f"{slug(gpu)}.json")


@functools.cache
def _pretuned() -> dict[str, dict[str, Config]]:
    """The shipped tables (package data ``pretuned.json``), by GPU class; {} if unreadable."""
    from importlib import resources

    try:
        data = json.loads(resources.files(__package__).joinpath(PRETUNED_FILE).read_text())
    except (OSError, ValueError) as exc:
        warnings.warn(f"shopml: shipped tiles {PRETUNED_FILE} unreadable ({exc})", stacklevel=2)
        return {}
    if data.get("format") != CACHE_FORMAT:
        return {}
    return {
        cls: {k: v for k, v in entries.items() if _valid(v)}
        for cls, entries in data.get("tables", {}).items()
    }


def pretuned_table(cls: str) -> Mapping[str, Config]:
    return _pretuned().get(cls, {})


class Tuner:
    """Chooses the launch config of one kernel per tuning key (see the module docstring).

    Args:
        name, version: the kernel's name in the caches; bump ``version`` when its code changes.
        key_names: kernel arguments (runtime or constexpr) that make up the tuning key.
        candidates: maps the key fields to the configs worth trying, the default first; a
            single config means nothing to choose (interpreter, tuning off for this shape).
        tune: time the candidates when nothing is remembered (else take the default).
        reset: tensor arguments zeroed before each timed run and before the real launch
            (accumulators the kernel adds into).
        bench: ``bench(fn) -> ms`` (tests replace it); default ``triton.testing.do_bench``.
        soft: key fields in which a shipped entry may differ when no entry matches them.
    """

    def __init__(
        self,
        name: str,
        version: int,
        key_names: Sequence[str],
        candidates: Callable[[Mapping[str, object]], list[Config]],
        tune: bool | Callable[[], bool] = True,
        reset: Sequence[str] = (),
        bench: Callable[[Callable[[], object]], float] | None = None,
        soft: Sequence[str] = (),
    ) -> None:
        self.name, self.version = name, version
        self.key_names = tuple(key_names)
        self.candidates = candidates
        self._tune = tune
        self.reset = tuple(reset)
        self._bench = bench
        self.soft = tuple(soft)
        self._memory: dict[tuple, Config] = {}
        self.timings: dict[str, dict[str, float]] = {}  # key -> {config: ms}, for reports
        self.sources: dict[str, str] = {}  # key -> where the choice came from

    def choose(
        self,
        kernel: Any,
        grid: Callable,
        args: Sequence[object],
        constexprs: Mapping[str, object],
        timing: bool = True,
    ) -> Config | None:
        """The config for this launch (timing the candidates if need be; with ``timing=False``,
        None instead of timing)."""
        named = dict(zip(kernel.arg_names[: len(args)], args, strict=True))
        named.update(constexprs)
        fields = {n: named[n] for n in self.key_names}
        cands = self.candidates(fields)
        if len(cands) == 1:
            return cands[0]
        first = next(v for v in named.values() if isinstance(v, torch.Tensor))
        index = first.device.index
        if index is None:
            index = torch.cuda.current_device() if first.is_cuda else 0
        key = make_key(self.name, self.version, first.dtype, fields)
        memo = (index, key)
        cfg = self._memory.get(memo)
        if cfg is not None:
            return cfg
        cfg, source = self._remembered(key, index, cands)
        if cfg is None:
            tune = self._tune() if callable(self._tune) else self._tune
            if tune and not timing:
                return None
            if tune:
                cfg, source = self._time(kernel, grid, args, constexprs, named, key, cands), "timed"
                disk_cache(str(cache_dir()), gpu_name(index)).put(key, cfg)
                for name in self.reset:  # the timed runs added into these
                    named[name].zero_()
            else:
                cfg, source = cands[0], "default"
        self._memory[memo] = cfg
        self.sources[key] = source
        return cfg

    def _remembered(self, key: str, index: int, cands: list[Config]) -> tuple[Config | None, str]:
        cfg = disk_cache(str(cache_dir()), gpu_name(index)).get(key)
        if cfg is not None and cfg in cands:
            return cfg, "disk"
        cfg = nearest(pretuned_table(gpu_class(index)), key, self.soft)
        if cfg is not None and cfg in cands:
            return cfg, "pretuned"
        return None, ""

    def _time(self, kernel, grid, args, constexprs, named, key, cands) -> Config:  # noqa: ANN001
        bench = self._bench
        if bench is None:
            from triton.testing import do_bench

            bench = lambda fn: do_bench(fn, warmup=5, rep=20, return_mode="median")  # noqa: E731
        times: dict[str, float] = {}
        best, best_ms, error = None, math.inf, None
        for cfg in cands:

            def run(cfg: Config = cfg) -> None:
                for name in self.reset:
                    named[name].zero_()
                kernel[grid](*args, **constexprs, **cfg)

            try:
                run()  # compiles; a config that does not fit the GPU raises here
                ms = float(bench(run))
            except Exception as exc:  # noqa: BLE001 - OutOfResources and kin: skip the config
                error, ms = exc, math.inf
            times[json.dumps(cfg, sort_keys=True)] = ms
            if ms < best_ms:
                best, best_ms = cfg, ms
        if best is None:
            raise RuntimeError(f"{self.name}: no launch config ran for {key}") from error
        self.timings[key] = times
        return best
