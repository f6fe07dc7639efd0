"""Direct launches of cached Triton binaries: the host-side fast path of every jagged kernel.

A launch through ``kernel[grid](...)`` passes the autotuner (a key built over every argument), the
JIT binder (every argument specialised) and a cache lookup before the binary runs. On the GPU
machine that host work measured 40-80 us per launch (benchmarks/README.md), more than the device
time of a whole small attention step. :class:`FastLauncher` takes that path once per *launch
signature* and afterwards calls the compiled binary itself.

The launch signature holds everything Triton specialises a binary on: each tensor argument's dtype
and 16-byte alignment; each integer's classes (equal to 1, a multiple of 16, beyond 32 bits); each
host-side tensor descriptor's (the Gluon kernels' ``TensorDescriptor``) base dtype, block shape,
shared-memory layout and other settings, all but its base address, shape and strides, which the
compiled launcher turns into the kernel's TMA descriptor at every launch, on either path; the
value of every autotune-key argument and of every constexpr, passed by name or by position
(``num_warps``, ``maxnreg`` among them); the device. Equal signatures therefore select the binary
and the config that Triton's own path would select. Anything unexpected (an interpreter run, a
Triton without the attributes used, a launch hook such as a profiler's) falls back to the
ordinary launch; hooks are looked for at a signature's first launch only, so a Triton launch hook
installed later needs ``SHOPML_TRITON_FAST_LAUNCH=0``, which turns the fast path off (the PyTorch
profiler sees direct launches as it sees any other). On an H200 the direct launches cut the eager forward+backward
host time of the jagged ops by x1.37 (geomean of 16 ops) and of the attention by x1.45-1.53
(benchmarks/README.md, issue 15).

A call site whose arguments, but for a few leading tensors, repeat from call to call (the
attention's bias-free launches: strides, lengths and settings fixed by the model, the tensors new
each step) binds them once (:meth:`FastLauncher.bind`, a :class:`Bound`) and then passes only
those tensors: no argument assembly, and a launch signature of their alignment alone (on the CPU
machine, with the binaries faked, the attention's eager forward+backward host loop took 112 us
before the cheaper signatures and the bound launches, 65 us after; an empty autograd Function
takes 27). A bound launch hands the binary addresses, not tensors: Triton's launcher takes an
int as the pointer itself, where a tensor costs a ``data_ptr()`` call and a driver query
(``cuPointerGetAttribute``) for each pointer.

Inside :func:`collecting`, launchers do not launch: each records a :class:`Job` (the kernel, its
arguments and chosen config) for a signature it has not launched yet, so that a caller can compile
several kernels at once before their first launches (:mod:`shopml.jagged.triton.precompile`).
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import torch

from shopml.common.devices import is_interpreter
from shopml.jagged.triton.startup import remember_triton_key
from shopml.jagged.triton.tuning import Tuner

_ENABLED = (
    os.environ.get("SHOPML_TRITON_FAST_LAUNCH", "1") not in ("", "0") and not is_interpreter()
)
_WIDE = 1 << 31


class Job(NamedTuple):
    """One compile a first launch would do: ``kernel.warmup(*args, grid=grid, **kwargs)``."""

    kernel: Any  # a triton.jit function
    grid: Callable[[dict], tuple]
    args: tuple
    kwargs: dict  # constexprs and the chosen config
    ident: str  # the launch signature and config, in words (with the kernel: what is compiled)


_COLLECTING: ContextVar[list[Job] | None] = ContextVar("shopml_collecting", default=None)


@contextmanager
def collecting() -> Iterator[list[Job]]:
    """Within the block (this thread or task only), launchers record :class:`Job` s instead of
    launching: one per launch whose signature has no binary yet and whose config is known without
    timing (a config still to be tuned is left to the real launch). Outputs stay unwritten."""
    jobs: list[Job] = []
    token = _COLLECTING.set(jobs)
    try:
        yield jobs
    finally:
        _COLLECTING.reset(token)


def dry_run() -> bool:
    """Whether this thread is inside :func:`collecting`: code that launches other than through a
    FastLauncher (a torch op on a launcher's output) must then not launch either (its inputs may
    be unwritten)."""
    return _COLLECTING.get() is not None


_RUNTIME_FIELDS = ("base", "shape", "strides")  # a descriptor's per-launch values


def _is_descriptor(arg: object) -> bool:
    """A host-side tensor descriptor (Triton's or Gluon's ``TensorDescriptor``): tiles of
    ``block_shape`` over the tensor ``base``."""
    return hasattr(arg, "block_shape") and hasattr(arg, "base")


class _Layout(NamedTuple):
    """Where a launcher's argument classes sit: pickers of the tensor, int and other (neither
    float nor bool) arguments (each ``args -> tuple``), and the tensor descriptors' positions
    with the names of their fields other than base, shape and strides."""

    tensors: Callable[[Sequence[object]], tuple]
    ints: Callable[[Sequence[object]], tuple]
    others: Callable[[Sequence[object]], tuple]
    descs: tuple[tuple[int, tuple[str, ...]], ...]


def _picker(indices: Sequence[int]) -> Callable[[Sequence[object]], tuple]:
    """``args -> tuple(args[i] for i in indices)`` at ``operator.itemgetter``'s speed."""
    if not indices:
        return lambda args: ()
    if len(indices) == 1:
        return lambda args, i=indices[0]: (args[i],)
    return operator.itemgetter(*indices)


def _layout(args: Sequence[object]) -> _Layout:
    """The :class:`_Layout` of one tuple of argument types (found once per launcher and types)."""
    tensors = tuple(i for i, a in enumerate(args) if isinstance(a, torch.Tensor))
    ints = tuple(i for i, a in enumerate(args) if type(a) is int)
    descs = tuple(
        (i, tuple(n for n in vars(a) if n not in _RUNTIME_FIELDS))
        for i, a in enumerate(args)
        if _is_descriptor(a)
    )
    taken = set(tensors) | set(ints) | {i for i, _ in descs}
    floats_bools = (float, bool)
    others = tuple(i for i, a in enumerate(args) if i not in taken and type(a) not in floats_bools)
    return _Layout(_picker(tensors), _picker(ints), _picker(others), descs)


def _frozen(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=4096)
def _int_classes(nums: tuple[int, ...]) -> tuple[tuple[bool, bool, bool], ...]:
    """Each int's classes: a multiple of 16, equal to 1, within 32 bits (a launcher's ints are
    mostly strides and lengths that repeat from call to call: remembered)."""
    return tuple([(n % 16 == 0, n == 1, -_WIDE <= n < _WIDE) for n in nums])


_DTYPE = operator.attrgetter("dtype")


def _signature(args: Sequence[object], layout: _Layout) -> tuple:
    """What Triton specialises on, per argument class: see the module docstring."""
    ptrs = layout.tensors(args)
    return (
        tuple(map(_DTYPE, ptrs)),
        tuple([t.data_ptr() % 16 == 0 for t in ptrs]),
        _int_classes(layout.ints(args)),
        layout.others(args),
        tuple(
            [
                (args[i].base.dtype, *[_frozen(getattr(args[i], n)) for n in names])
                for i, names in layout.descs
            ]
        )
        if layout.descs
        else (),
    )


def _constexpr_names(kernel: Any) -> set[str]:
    """The ``tl.constexpr`` parameters of a ``triton.jit`` function, or of the one an autotuner
    (or heuristics) wraps; empty for an object that is neither (the tests' fakes)."""
    while kernel is not None and not hasattr(kernel, "params"):
        kernel = getattr(kernel, "fn", None)
    params = getattr(kernel, "params", ())
    return {p.name for p in params if getattr(p, "is_constexpr", False)}


def _active(hook: object) -> bool:
    """A launch hook that is set (newer Triton keeps an empty ``HookChain`` when none is)."""
    return hook is not None and getattr(hook, "calls", True) != []


class FastLauncher:
    """Launches ``kernel`` (a ``triton.autotune`` Autotuner or a ``triton.jit`` function).

    With a :class:`~shopml.jagged.triton.tuning.Tuner`, ``kernel`` is a ``triton.jit`` function
    and the tuner picks its config (block sizes, warps, stages) at a signature's first launch.

    Call it as ``launcher(grid, args, constexprs)``: ``grid`` maps the launch meta-parameters (the
    constexprs plus the chosen config's) to the grid tuple; ``args`` are the runtime arguments in
    the kernel's order (a host-side tensor descriptor among them goes to the binary as it is: its
    launcher expands it into the kernel's parameters, as on Triton's path); ``constexprs`` the
    constexpr keyword arguments (not the autotuned ones) and launch options (``num_warps``...).
    """

    def __init__(self, kernel: Any, tuner: Tuner | None = None) -> None:
        self._kernel = kernel
        self._tuner = tuner
        self._names: list[str] = list(kernel.arg_names)  # a JITFunction's, or its autotuner's
        keys = tuner.key_names if tuner is not None else getattr(kernel, "keys", ())
        self._tune_keys = tuple(keys or ())
        self._key_index: tuple[int, ...] | None = None
        self._layouts: dict[tuple, _Layout] = {}  # argument types -> _layout
        self._cache: dict[tuple, tuple[Any, dict, tuple]] = {}
        self.enabled = _ENABLED
        self.direct_launches = 0  # counted for the tests

    def __getitem__(self, grid: Callable[[dict], tuple]) -> Callable[..., None]:
        """Triton's call form, ``launcher[grid](*args, **constexprs)``: arguments positionally in
        the kernel's order, then any further constexprs by name (not the autotuned ones)."""
        return lambda *args, **constexprs: self(grid, args, constexprs)

    def __call__(
        self, grid: Callable[[dict], tuple], args: Sequence[object], constexprs: dict[str, object]
    ) -> None:
        jobs = _COLLECTING.get()
        if jobs is not None:
            self._collect(jobs, grid, args, constexprs)
            return
        if not self.enabled:
            self._launch(grid, args, constexprs)
            return
        key = self._key(args, constexprs)
        hit = self._cache.get(key)
        if hit is None:
            self._first_launch(key, grid, args, constexprs)
            return
        compiled, meta, tail = hit
        g = grid(meta)
        compiled.run(
            g[0],
            g[1] if len(g) > 1 else 1,
            g[2] if len(g) > 2 else 1,
            torch._C._cuda_getCurrentRawStream(key[0]),
            compiled.function,
            compiled.packed_metadata,
            None,
            None,
            None,
            *args,
            *tail,
        )
        self.direct_launches += 1

    def bind(
        self,
        grid: Callable[[dict], tuple],
        args: Sequence[object],
        constexprs: dict[str, object],
        dynamic: int,
        descs: int = 0,
    ) -> Bound:
        """This launch with every argument after its first ``dynamic`` ones (``descs`` tensor
        descriptors, then tensors) fixed: see :class:`Bound`. ``args`` is one call's whole
        argument tuple (its leading arguments are not kept)."""
        return Bound(self, grid, tuple(args[dynamic:]), constexprs, descs)

    def _key(self, args: Sequence[object], constexprs: dict[str, object]) -> tuple:
        """The launch signature (see the module docstring) and the device."""
        if self._key_index is None:
            fixed = set(self._tune_keys) | _constexpr_names(self._kernel)
            self._key_index = tuple(i for i, n in enumerate(self._names[: len(args)]) if n in fixed)
        types = tuple(map(type, args))
        layout = self._layouts.get(types)
        if layout is None:
            layout = self._layouts[types] = _layout(args)
        return (
            torch._C._cuda_getDevice(),
            types,
            tuple(constexprs.values()),
            tuple([args[i] for i in self._key_index]),
            _signature(args, layout),
        )

    def _collect(self, jobs: list[Job], grid: Callable, args: Sequence, constexprs: dict) -> None:
        """Record the compile that this launch's first time would do (see :func:`collecting`)."""
        kernel = self._kernel
        if not hasattr(kernel, "warmup") or hasattr(kernel, "configs"):
            return  # an Autotuner (it has configs): it compiles its own way
        key = self._key(args, constexprs)
        if key in self._cache:
            return
        cfg: dict | None = {}
        if self._tuner is not None:
            cfg = self._tuner.choose(kernel, grid, args, constexprs, timing=False)
        if cfg is not None:
            ident = repr((key[1:], sorted(cfg.items())))
            jobs.append(Job(kernel, grid, tuple(args), dict(constexprs, **cfg), ident))

    def _launch(self, grid: Callable, args: Sequence, constexprs: dict) -> tuple[Any, dict]:
        """The ordinary launch (through the tuner's choice if any): (compiled, its meta-params)."""
        remember_triton_key()  # once per process, before the first compile-cache lookup
        if self._tuner is None:
            compiled = self._kernel[grid](*args, **constexprs)
            config = getattr(self._kernel, "best_config", None)
            return compiled, dict(constexprs, **(config.kwargs if config is not None else {}))
        cfg = self._tuner.choose(self._kernel, grid, args, constexprs)
        compiled = self._kernel[grid](*args, **constexprs, **cfg)
        return compiled, dict(constexprs, **cfg)

    def _first_launch(self, key: tuple, grid: Callable, args: Sequence, constexprs: dict) -> None:
        compiled, meta = self._launch(grid, args, constexprs)
        try:
            import triton

            knobs = getattr(triton, "knobs", None)
            hooked = knobs is not None and any(
                _active(h)
                for h in (knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook)
            )
            names = self._names
            tail = tuple(meta[n] for n in names[len(args) :])
            usable = (
                not hooked
                and len(args) + len(tail) == len(names)
                and compiled is not None
                and getattr(compiled, "function", None) is not None
                and hasattr(compiled, "packed_metadata")
            )
        except (AttributeError, KeyError, TypeError):
            usable = False
        if not usable:  # an unfamiliar Triton, or a launch hook to honour: the ordinary path
            self.enabled = False
            return
        self._cache[key] = (compiled, meta, tail)


class Bound:
    """A :class:`FastLauncher` launch whose arguments after the first few tensors are fixed (made
    by :meth:`FastLauncher.bind` from one call): a call site that has seen these settings before
    passes only its leading tensors. The launch signature is then the fixed arguments' (found
    once) and the passed tensors' 16-byte alignment; their dtypes, and everything the fixed
    arguments, the grid and the constexprs derive from, are the binder's key. Leading tensor
    descriptors (``descs``) go to the binary as they are; their tiles, layouts and dtypes are
    the binder's key too. The first call of each alignment pattern and device, and every call
    inside :func:`collecting` or with direct launches off, takes the launcher's own path."""

    def __init__(
        self,
        launcher: FastLauncher,
        grid: Callable[[dict], tuple],
        fixed: tuple,
        constexprs: dict[str, object],
        descs: int = 0,
    ) -> None:
        self._launcher = launcher
        self._grid = grid
        self._fixed = fixed
        self._constexprs = constexprs
        self._descs = descs  # leading arguments that are tensor descriptors (passed as they are)
        # the fixed arguments with each tensor as its address (they stay alive in _fixed)
        self._fixed_ptrs = tuple(x.data_ptr() if isinstance(x, torch.Tensor) else x for x in fixed)
        self._entries: dict[tuple, tuple] = {}  # (alignments, device) -> binary, grid, tail

    def __call__(self, *tensors: object) -> None:
        self.run(None, *tensors)

    def run(self, gx: int | None, *lead: object) -> None:
        """The launch with these leading arguments (the ``descs`` descriptors, then tensors) on
        the bound grid, its first dimension ``gx`` instead where given (a grid that follows a
        per-call size the fixed arguments do not hold)."""
        launcher = self._launcher
        direct = launcher.enabled and _COLLECTING.get() is None
        n = self._descs
        if direct:
            device = torch._C._cuda_getDevice()
            ptrs = [t.data_ptr() for t in (lead[n:] if n else lead)]  # type: ignore[union-attr]
            where = (tuple([p % 16 == 0 for p in ptrs]), device)
            hit = self._entries.get(where)
            if hit is not None:
                compiled, g0, gy, gz, tail = hit
                # addresses, not tensors: the binary's launcher takes an int as the pointer
                # itself, where a tensor costs a data_ptr() call and a driver query
                # (cuPointerGetAttribute) for each of the launch's 16-21 pointers; descriptors
                # go as they are (the binary's launcher encodes each)
                compiled.run(g0 if gx is None else gx, gy, gz,
                             torch._C._cuda_getCurrentRawStream(device), compiled.function,
                             compiled.packed_metadata, None, None, None, *lead[:n], *ptrs,
                             *self._fixed_ptrs, *tail)  # fmt: skip
                launcher.direct_launches += 1
                return
        args = (*lead, *self._fixed)
        grid = self._grid if gx is None else (lambda meta: (gx,))
        launcher(grid, args, self._constexprs)
        if direct and launcher.enabled:  # remember the binary the launcher now holds
            found = launcher._cache.get(launcher._key(args, self._constexprs))
            if found is not None:
                compiled, meta, tail = found
                g = (*self._grid(meta), 1, 1)
                self._entries[where] = (compiled, g[0], g[1], g[2], tail)
