"""The fast step: training and inference steps captured in CUDA graphs, one per shape bucket.

Eager PyTorch spends more host time (Python, autograd, about 250 kernel launches) on a ranking
step than the GPU spends computing it. Here each bucket of shapes (:mod:`shopml.rank.buckets`)
gets its own CUDA graph holding the whole step: the forward under bf16 autocast, the weighted
loss, the backward, gradient clipping and a fused, capturable AdamW step. A step is then two
asynchronous copies of a packed pinned batch into the graph's static input buffers and one replay:
no host synchronisation, no content check, no data-dependent Python branch. The host returns at
once and collates the next batch while the GPU works.

Details:

- The first training step runs eagerly (through the same function): it creates the optimizer's
  state and compiles/autotunes the kernels. A new bucket is warmed up by one forward+backward
  (no optimizer step, so warming up does not train) before its capture.
- Gradients live in persistent buffers shared by every graph (zeroed inside each graph, then
  accumulated into by the backward); all graphs allocate from one shared memory pool.
- Replaying a graph overwrites the outputs of the previous replay: :meth:`GraphTrainStep.__call__`
  returns the loss as a tensor that the caller consumes (adds to an accumulator) at once.
- With ``compile`` (``shopml rank train``'s default for long runs on a GPU) the graphs hold the
  model's forward and backward as compiled by ``torch.compile`` (Inductor fuses the layer norms,
  casts and elementwise ops that otherwise dominate the step); the token and row counts are marked
  dynamic, so one compilation serves every bucket. The compilation happens in the first step (about
  10-15 s on an H200). If compiling fails, the step says why (``compile_fallback_reason``, and a
  warning) and goes on with the uncompiled model, still in graphs.
- When a capture fails (an op that synchronises, an unusual PyTorch), the step falls back to eager
  for good and says why (``fallback_reason``); eager stays the reference.
- A batch's copy to the GPU overlaps the previous replay: the pinned host buffers go to a staging
  buffer on a side stream, then one device copy into the graph's inputs just before the replay.

:func:`select_step_mode` says which step a run gets; :class:`GraphInference` is the forward-only
twin used by :func:`shopml.rank.evaluate.predict` (and thus by ``shopml rank evaluate`` and the
service's ranker) on a GPU.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F

from shopml.rank.buckets import BucketKey, PackedBatch, layout_views

STEP_MODES = ("auto", "graphs", "eager")


def select_step_mode(
    requested: str,
    device: torch.device,
    sequence_backend: str,
    *,
    world_size: int = 1,
    compile: bool | None = False,  # noqa: ARG001 - kept in the signature: compiled graphs run too
) -> str:
    """The training step a run gets: ``"graphs"`` or ``"eager"``.

    ``"auto"`` gives graphs on a single CUDA device for the "jagged" and "pooling" backends
    (DDP's gradient hooks and the padded backend's fixed-width tensors keep the eager step; with
    ``compile`` the graphs hold the compiled model). ``"graphs"`` asks for them and fails where
    they cannot run; ``"eager"`` is the reference.
    """
    if requested not in STEP_MODES:
        raise ValueError(f"step: expected one of {STEP_MODES}, found {requested!r}")
    blockers = []
    if device.type != "cuda":
        blockers.append(f"device {device} is not CUDA")
    if sequence_backend == "padded":
        blockers.append("sequence_backend 'padded' has its own fixed shapes")
    if world_size > 1:
        blockers.append(f"world_size {world_size} > 1 (DDP)")
    if requested == "eager":
        return "eager"
    if requested == "graphs" and blockers:
        raise ValueError(f"step: 'graphs' cannot run here: {'; '.join(blockers)}")
    return "eager" if blockers else "graphs"


def weighted_loss_sum(
    model: torch.nn.Module,
    views: dict[str, torch.Tensor],
    max_seqlen: int,
    autocast: bool,
    forward: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """``sum_i w_i * BCE(logit_i, label_i)`` of a packed batch (weights 0 on padding slots).

    ``forward`` replaces ``model.forward_flat`` (a compiled version of it)."""
    device = views["ids"].device
    forward = forward if forward is not None else model.forward_flat
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast, cache_enabled=False):
        logits = forward(
            views["ids"],
            views["times"],
            views["offsets"],
            max_seqlen,
            views["candidates"],
            views["price"],
        )  # (R,)
    return F.binary_cross_entropy_with_logits(
        logits.float(), views["labels"], weight=views["weights"], reduction="sum"
    )


AUTO_COMPILE_MIN_STEPS = 2000


def resolve_compile(requested: bool | None, mode: str, steps: int) -> bool:
    """Whether a run compiles its model: ``requested`` when given (True/False), else ("auto")
    for the graph step of a run of at least ``AUTO_COMPILE_MIN_STEPS`` steps, where the one-time
    compilation (10-30 s) pays back (it halves the step time at B=256, N=1024 on an H200)."""
    if requested is not None:
        return bool(requested)
    return mode == "graphs" and steps >= AUTO_COMPILE_MIN_STEPS


def _compiled_forward(
    model: torch.nn.Module, dynamic: bool = True, memory_budget: float | None = None
) -> Callable[..., torch.Tensor]:
    """``model.forward_flat`` under ``torch.compile`` (Inductor's fused kernels, the jagged
    attention as custom ops); the CUDA graphs around it are ours. ``dynamic``: the token and row
    counts are symbolic from the first compilation (one graph for every bucket).
    ``memory_budget``: AOTAutograd's activation memory budget (1: its default choice of saved
    activations; lower: recompute more in the backward to save memory)."""
    import contextlib

    compiled = torch.compile(model.forward_flat)

    def forward(ids, times, offsets, max_seqlen, candidates, price):  # noqa: ANN001, ANN202
        if dynamic:
            for t, dim in ((ids, 1), (times, 0), (offsets, 0), (candidates, 1), (price, 0)):
                torch._dynamo.maybe_mark_dynamic(t, dim)
        budget = contextlib.nullcontext()
        if memory_budget is not None:
            budget = torch._functorch.config.patch(activation_memory_budget=memory_budget)
        with budget:
            return compiled(ids, times, offsets, max_seqlen, candidates, price)

    return forward


class _Graph:
    """One captured bucket: static input buffers, the graph, its static output."""

    def __init__(self, key: BucketKey, device: torch.device) -> None:
        self.key = key
        self.ints = torch.zeros(key.int_size, dtype=torch.int64, device=device)
        self.floats = torch.zeros(key.float_size, dtype=torch.float32, device=device)
        self.views = layout_views(key, self.ints, self.floats)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None
        self.staged: tuple[torch.Tensor, torch.Tensor] | None = None  # see load_overlapped
        self.consumed: torch.cuda.Event | None = None

    def load(self, batch: PackedBatch) -> None:
        self.ints.copy_(batch.ints, non_blocking=True)
        self.floats.copy_(batch.floats, non_blocking=True)

    def load_overlapped(self, batch: PackedBatch, side: torch.cuda.Stream) -> None:
        """Copy a pinned batch to a staging buffer on ``side`` (overlapping the GPU work queued
        before it), then into the inputs on the current stream (after the previous replay)."""
        current = torch.cuda.current_stream(self.ints.device)
        if self.staged is None:
            self.staged = (torch.empty_like(self.ints), torch.empty_like(self.floats))
            self.consumed = torch.cuda.Event()
            self.consumed.record(current)
        side.wait_event(self.consumed)  # the last staged batch was copied in
        with torch.cuda.stream(side):
            self.staged[0].copy_(batch.ints, non_blocking=True)
            self.staged[1].copy_(batch.floats, non_blocking=True)
        current.wait_stream(side)
        self.ints.copy_(self.staged[0])
        self.floats.copy_(self.staged[1])
        self.consumed.record(current)


_CAPTURE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream of a device for every warm-up and capture: cuBLAS keeps a workspace
    (32 MiB on Hopper) for each stream it runs on, so a new stream per capture would hold one
    more workspace per bucket."""
    stream = _CAPTURE_STREAMS.get(device)
    if stream is None:
        stream = _CAPTURE_STREAMS[device] = torch.cuda.Stream(device)
    return stream


class _GraphCache:
    """Graphs by bucket (least recently used dropped past ``max_graphs``), one memory pool."""

    def __init__(self, device: torch.device, max_graphs: int) -> None:
        self.device = device
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[BucketKey, _Graph] = OrderedDict()
        self.pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None
        self.copy_stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.captures = 0
        self.fallback_reason: str | None = None

    def get(self, key: BucketKey) -> _Graph | None:
        g = self.graphs.get(key)
        if g is not None:
            self.graphs.move_to_end(key)
        return g

    def capture(self, key: BucketKey, batch: PackedBatch, fn: Callable[[_Graph], torch.Tensor],
                warmup: Callable[[_Graph], None]) -> _Graph | None:  # fmt: skip
        """Warm up and capture ``fn`` for ``key``; None (and eager from now on) on failure."""
        g = _Graph(key, self.device)
        g.load(batch)
        try:
            side = _capture_stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                warmup(g)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: a loader's pinning thread may touch CUDA meanwhile
            with torch.cuda.graph(
                graph, pool=self.pool, stream=side, capture_error_mode="thread_local"
            ):
                out = fn(g)
        except Exception as exc:  # noqa: BLE001 - any capture failure: eager is the reference
            self.fallback_reason = f"capture failed for {key}: {type(exc).__name__}: {exc}"[:500]
            torch.cuda.synchronize(self.device)
            return None
        g.graph, g.output = graph, out
        self.graphs[key] = g
        self.captures += 1
        while len(self.graphs) > self.max_graphs:
            self.graphs.popitem(last=False)
        return g


class _Compiled:
    """The forward a runner uses: compiled when asked, the model's own after a compile failure."""

    def __init__(
        self,
        model: torch.nn.Module,
        compile: bool,
        dynamic: bool,
        memory_budget: float | None = None,
    ) -> None:
        self.model = model
        self.forward = _compiled_forward(model, dynamic, memory_budget) if compile else None
        self.compile_fallback_reason: str | None = None

    def drop(self, exc: BaseException) -> bool:
        """After ``exc``: go on uncompiled (True) if the compiled forward was in use."""
        if self.forward is None:
            return False
        self.forward = None
        self.compile_fallback_reason = f"torch.compile failed: {type(exc).__name__}: {exc}"[:500]
        warnings.warn(
            f"{self.compile_fallback_reason}; the fast step goes on with the uncompiled model",
            RuntimeWarning,
            stacklevel=3,
        )
        return True


class GraphTrainStep:
    """A training step replayed from CUDA graphs (see the module docstring).

    Args:
        model: a :class:`~shopml.rank.model.RankingModel` ("jagged" or "pooling") on CUDA.
        optimizer: its optimizer, built with ``capturable=True`` (:func:`make_optimizer`).
        grad_clip: max gradient norm (0: no clipping).
        autocast: bf16 autocast of the forward.
        compile: run the forward (and so the backward) through ``torch.compile`` inside the
            graphs (fused elementwise kernels; compiled in the first step). A compile failure
            falls back to the uncompiled model (``compile_fallback_reason``).
        dynamic: with ``compile``, symbolic token and row counts (one compilation for all
            buckets) instead of one compilation per bucket shape.
        memory_budget: with ``compile``, AOTAutograd's activation memory budget (None: its
            default, 1.0; lower recomputes more in the backward).
        max_graphs: graphs kept (least recently used dropped).

    Call it with a :class:`PackedBatch` (pinned) and the loss multiplier of the batch; it returns
    the unscaled weighted loss sum as a device scalar, valid until the next call.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        grad_clip: float = 0.0,
        autocast: bool = True,
        compile: bool = False,
        dynamic: bool = True,
        memory_budget: float | None = None,
        max_graphs: int = 64,
    ) -> None:
        self.model = model
        self.compiled = _Compiled(model, compile, dynamic, memory_budget)
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.autocast = autocast
        self.device = next(model.parameters()).device
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.cache = _GraphCache(self.device, max_graphs)
        self.scale = torch.ones((), device=self.device)
        self.replays = 0
        self.eager_steps = 0
        self._started = False
        if self.device.type != "cuda":
            self.cache.fallback_reason = f"device {self.device} is not CUDA"

    @property
    def fallback_reason(self) -> str | None:
        return self.cache.fallback_reason

    @property
    def compile_fallback_reason(self) -> str | None:
        return self.compiled.compile_fallback_reason

    @property
    def compiling(self) -> bool:
        """Whether the step runs the compiled model."""
        return self.compiled.forward is not None

    def _forward_backward(self, g: _Graph) -> torch.Tensor:
        loss_sum = weighted_loss_sum(
            self.model, g.views, g.key.max_seqlen, self.autocast, self.compiled.forward
        )
        (loss_sum * self.scale).backward()
        return loss_sum.detach()

    def _step(self, g: _Graph) -> torch.Tensor:
        """The captured body: zero gradients, forward, backward, clip, optimizer step."""
        torch._foreach_zero_([p.grad for p in self.params])
        loss_sum = self._forward_backward(g)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip, foreach=True)
        self.optimizer.step()
        return loss_sum

    def _warmup(self, g: _Graph) -> None:
        self._forward_backward(g)
        torch._foreach_zero_([p.grad for p in self.params])

    def __call__(self, batch: PackedBatch, loss_scale: float) -> torch.Tensor:
        from shopml.jagged.checks import checks_enabled

        self.scale.fill_(loss_scale)
        with checks_enabled(False):
            if not self._started:  # first step eagerly: optimizer state, compilation, autotuning
                self._started = True
                for p in self.params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                try:
                    return self._eager(batch)
                except Exception as exc:  # noqa: BLE001 - a compile failure: go on uncompiled
                    if not self.compiled.drop(exc):
                        raise
                    return self._eager(batch)
            if self.cache.fallback_reason is not None:
                return self._eager(batch)
            g = self.cache.get(batch.key)
            if g is None:
                g = self.cache.capture(batch.key, batch, self._step, self._warmup)
                if g is None and self.compiled.drop(RuntimeError(self.cache.fallback_reason)):
                    self.cache.fallback_reason = None  # retry the capture uncompiled
                    g = self.cache.capture(batch.key, batch, self._step, self._warmup)
                if g is None:
                    return self._eager(batch)
            else:
                g.load_overlapped(batch, self.cache.copy_stream)
            g.graph.replay()
            self.replays += 1
            return g.output

    def _eager(self, batch: PackedBatch) -> torch.Tensor:
        g = _Graph(batch.key, self.device)
        g.load(batch)
        self.eager_steps += 1
        return self._step(g)


class GraphInference:
    """Forward-only logits ``(examples,)`` of packed batches, replayed from CUDA graphs.

    ``compile`` and ``dynamic`` as for :class:`GraphTrainStep` (off by default: an evaluation
    or a service's first requests would wait for the compilation). Thread-safe (one replay at a
    time): the service may call it from worker threads.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        autocast: bool = True,
        compile: bool = False,
        dynamic: bool = True,
        max_graphs: int = 32,
    ) -> None:
        self.model = model
        self.compiled = _Compiled(model, compile, dynamic)
        self.autocast = autocast
        self.device = next(model.parameters()).device
        self.cache = _GraphCache(self.device, max_graphs)
        self.lock = threading.Lock()
        self.replays = 0
        if self.device.type != "cuda":
            self.cache.fallback_reason = f"device {self.device} is not CUDA"

    @property
    def fallback_reason(self) -> str | None:
        return self.cache.fallback_reason

    @property
    def compile_fallback_reason(self) -> str | None:
        return self.compiled.compile_fallback_reason

    @torch.no_grad()
    def _logits(self, g: _Graph) -> torch.Tensor:
        v = g.views
        forward = self.compiled.forward or self.model.forward_flat
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False
        ):
            logits = forward(
                v["ids"], v["times"], v["offsets"], g.key.max_seqlen, v["candidates"], v["price"]
            )
        return logits.float()

    def __call__(self, batch: PackedBatch) -> torch.Tensor:
        """Logits of the batch's real examples (a new device tensor)."""
        from shopml.jagged.checks import checks_enabled

        with self.lock, checks_enabled(False):
            g = self.cache.get(batch.key) if self.cache.fallback_reason is None else None
            if g is None and self.cache.fallback_reason is None:
                g = self.cache.capture(batch.key, batch, self._logits, self._logits)
                if g is None and self.compiled.drop(RuntimeError(self.cache.fallback_reason)):
                    self.cache.fallback_reason = None  # retry the capture uncompiled
                    g = self.cache.capture(batch.key, batch, self._logits, self._logits)
            elif g is not None:
                g.load_overlapped(batch, self.cache.copy_stream)
            if g is None:
                g = _Graph(batch.key, self.device)
                g.load(batch)
                return self._logits(g)[: batch.examples]
            g.graph.replay()
            self.replays += 1
            return g.output[: batch.examples].clone()


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW: fused and capturable on CUDA (one kernel per step, graph-safe), foreach on CPU."""
    if device.type == "cuda":
        return torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=weight_decay, fused=True, capturable=True
        )
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


__all__ = [
    "AUTO_COMPILE_MIN_STEPS",
    "STEP_MODES",
    "GraphInference",
    "GraphTrainStep",
    "make_optimizer",
    "resolve_compile",
    "select_step_mode",
    "weighted_loss_sum",
]
