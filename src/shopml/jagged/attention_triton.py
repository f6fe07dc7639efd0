"""Jagged flash attention in Triton: the eager autograd Function and the backend function that
:mod:`shopml.jagged.attention` dispatches to (no input checks here).

Kernels and launchers live in shopml/jagged/triton/attention_{common,fwd,bwd}.py.

Algorithm (flash-attention 2 on flash-attention's varlen layout, ``q, k, v (T, H, D)``):

- forward ``_attn_fwd_kernel``: one program per (query block of ``BLOCK_M`` rows, sample, head).
  It streams the sample's key/value blocks of ``BLOCK_N`` rows through an online softmax in base 2
  (fp32 running max ``m``, sum ``l`` and accumulator), adds the bias (a jagged tensor, or a
  bucketed relative-position/time table looked up from pairwise deltas computed in registers),
  and writes ``out`` and the natural-log ``lse`` (fp32). Memory is linear in T: no score matrix
  ever reaches global memory.
- backward, no atomics, two launches: ``_attn_bwd_dq_kernel`` owns one query block, computes
  ``delta = rowsum(dO * O)`` for its rows (stored for the next kernel) and loops over the key
  blocks it sees; ``_attn_bwd_dkdv_kernel`` then owns one key block and loops over the query
  blocks that see it (writing dK, dV, and the tensor bias gradient, each element exactly once;
  relative-bias table gradients go to per-program partial sums reduced by torch). Scores are
  recomputed from ``lse``.
- launches go through :class:`shopml.jagged.triton.launch.FastLauncher`: after the first call of
  a launch signature the cached binary is called directly (no autotuner or binder on the host).

Grid: ``(cdiv(max_seqlen, BLOCK), B, H)``, optionally mapped through a longest-first batch order
(``SHOPML_ATTN_ORDER=1``). Programs whose block starts past their sequence's end exit at once.
Block sizes are autotuned on CUDA, keyed on the bucketed (next power of two) max sequence
lengths, head dim, causal flag and bias mode; the interpreter uses one 16x16 config.

Limits: ``16 <= D <= 256`` (D need not be a power of two: it is padded to ``BLOCK_D``); q, k, v
share D; float32 inputs use IEEE fp32 dot products (``allow_tf32=True`` selects TF32); sequences
longer than ``max_seqlen`` are truncated (their extra rows output 0, as FBGEMM does). Differs
from the reference only in summation order and in the low-precision rounding of P before P @ V.

Entry points, all on one argument set, :class:`~shopml.jagged.attention_args.AttentionArgs`:

- eager: :class:`_JaggedAttention` (an autograd Function calling the launchers directly: the
  least host overhead), or the forward launcher alone when no input needs a gradient;
- under ``torch.compile``: the custom ops ``shopml::jagged_attention_fwd`` / ``_bwd`` of
  :mod:`shopml.jagged.attention_ops`, imported (and so registered) only when dynamo first traces
  this function: eager use never registers them.

Both share the argument binding and the backward of :mod:`shopml.jagged.attention_args`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from shopml.jagged.attention_args import AttentionArgs, _backward_launch, _forward
from shopml.jagged.attention_reference import (
    RelativeBias,
    consecutive_boundaries,
    jagged_bias_offsets,
)
from shopml.jagged.triton import precompile
from shopml.jagged.triton.launch import collecting

__all__ = ["AttentionArgs", "jagged_flash_attention"]

_PARALLEL_COMPILE = precompile.enabled()


# ------------------------------------------------------------------ first calls
_COMPILED_TOGETHER: set[tuple] = set()  # kinds of call whose kernels were compiled at once


def _compile_together(args: AttentionArgs) -> None:
    """First call of a new kind on CUDA with a gradient to come: compile its forward, dQ and
    dK/dV kernels at once, each in a process of its own (:mod:`shopml.jagged.triton.precompile`),
    instead of one after the other at their first launches. A dry run of the launchers (inside
    :func:`~shopml.jagged.triton.launch.collecting`: nothing launched) says what they would
    compile; kinds of call coarser than the launch signatures only decide when to look."""
    q = args.q
    kind = (q.device, q.dtype, q.shape[1:], args.causal, args.bias is None, args.table is None,
            args.tq is None, args.tk is None, args.max_seqlen_q.bit_length(),
            args.max_seqlen_k.bit_length(), args.allow_tf32, args.consecutive)  # fmt: skip
    if kind in _COMPILED_TOGETHER or torch.cuda.is_current_stream_capturing():
        return  # (a CUDA graph capture would record the dry run's allocations and fills)
    _COMPILED_TOGETHER.add(kind)
    with collecting() as jobs:
        out, lse = _forward(*args)
        _backward_launch(out, out, lse, *args)  # dO: any contiguous tensor of out's layout
    precompile.compile_all(jobs, timeout=60.0)  # a compile takes seconds; a stuck child: give up


def _consecutive(bias: RelativeBias) -> bool:
    """Whether the kernels may take the closed-form buckets for this bias (a kernel constexpr;
    the one place this is decided): ``bias.consecutive`` when its maker knew it
    (:class:`~shopml.jagged.modules.RelativeBiasTable`), else read from the boundaries (one
    device sync off the CPU), except while torch.compile traces or a CUDA graph is captured
    (values unknown, or no sync allowed: the general way, right for any boundaries)."""
    if bias.consecutive is not None:
        return bias.consecutive
    if torch.compiler.is_compiling() or (
        bias.boundaries.is_cuda and torch.cuda.is_current_stream_capturing()
    ):
        return False
    return consecutive_boundaries(bias.boundaries)


# ------------------------------------------------------------------ eager autograd Function
class _JaggedAttention(torch.autograd.Function):
    """Eager path: the launchers without the custom-op dispatcher (less host overhead).

    Its inputs are the five tensors a gradient may flow to (q, k, v, bias, table) and the whole
    :class:`AttentionArgs` as one object (its offsets and settings need no gradient): ``apply``
    then handles 6 arguments and the backward returns 6 gradients, not one per field (19), which
    ``Function.apply``, the graph's setup and the engine each walk (a forward and backward's
    host time over an empty Function's 133 -> 84 us on the GPU machine, without autograd's
    device threads; benchmarks/README.md "Session 16"). Old-style
    (``forward(ctx, ...)``): a separate ``setup_context`` would make every ``apply`` bind its
    arguments through ``inspect.signature``.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, table, args: AttentionArgs) -> tuple:  # noqa: ANN001, D102
        out, lse = _forward(*args)
        # version-checked: the outputs and the tensors with gradients; the rest as it came
        ctx.save_for_backward(out, lse, q, k, v, bias, table)
        ctx.rest = args[3:]
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for lse (never used)
        return out, lse

    @staticmethod
    def backward(ctx, dout: Tensor | None, _dlse: Tensor | None) -> tuple:  # noqa: ANN001, D102
        if dout is None:  # grads are not materialised: nothing flowed back into the output
            return None, None, None, None, None, None
        out, lse, q, k, v, bias, table = ctx.saved_tensors
        dq, dk, dv, dbias, dtable = _backward_launch(dout, out, lse, q, k, v, *ctx.rest)
        return dq, dk, dv, dbias, dtable, None


# ------------------------------------------------------------------ backend function
def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def jagged_flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    offsets: Tensor,
    max_seqlen: int,
    *,
    k_offsets: Tensor | None = None,
    max_seqlen_k: int | None = None,
    scale: float | None = None,
    causal: bool = False,
    attn_bias: Tensor | RelativeBias | None = None,
    return_lse: bool = False,
    post_scale: float = 1.0,
    allow_tf32: bool = False,
    zero_init: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Triton backend of :func:`shopml.jagged.attention.jagged_flash_attention` (no checks).

    ``post_scale`` multiplies the output after the softmax; ``zero_init`` zero-fills the output
    first (needed only when sequences may be truncated by ``max_seqlen``).
    """
    self_attention = k_offsets is None
    if self_attention:
        k_offsets = offsets
    if max_seqlen_k is None:
        max_seqlen_k = max_seqlen
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    bias = bias_offsets = table = bounds = tq = tk = None
    consecutive = False
    if isinstance(attn_bias, RelativeBias):
        table = attn_bias.table.contiguous()
        bounds = attn_bias.boundaries.contiguous()
        tq = attn_bias.q_timestamps
        tk = attn_bias.k_timestamps
        consecutive = _consecutive(attn_bias)
        if tk is None and self_attention:
            tk = tq
    elif attn_bias is not None:
        bias = attn_bias.contiguous()
        lq = (offsets[1:] - offsets[:-1]).clamp(max=max_seqlen)
        lk = (k_offsets[1:] - k_offsets[:-1]).clamp(max=max_seqlen_k)
        bias_offsets = jagged_bias_offsets(lq, lk)
    args = AttentionArgs(
        q=_last_dim_contiguous(q),
        k=_last_dim_contiguous(k),
        v=_last_dim_contiguous(v),
        q_offsets=offsets,
        k_offsets=k_offsets,
        bias=bias,
        bias_offsets=bias_offsets,
        table=table,
        bounds=bounds,
        tq=tq,
        tk=tk,
        max_seqlen_q=int(max_seqlen),
        max_seqlen_k=int(max_seqlen_k),
        scale=float(scale),
        post_scale=float(post_scale),
        causal=bool(causal),
        allow_tf32=bool(allow_tf32),
        zero_init=bool(zero_init),
        consecutive=consecutive,
    )
    if torch.compiler.is_compiling():
        # the custom op, registered on first need: dynamo runs this import while it traces
        from shopml.jagged.attention_ops import jagged_attention_fwd

        out, lse = jagged_attention_fwd(*args)
    elif torch.is_grad_enabled() and (
        q.requires_grad
        or k.requires_grad
        or v.requires_grad
        or (bias is not None and bias.requires_grad)
        or (table is not None and table.requires_grad)
    ):
        if q.is_cuda and _PARALLEL_COMPILE:
            _compile_together(args)
        out, lse = _JaggedAttention.apply(args.q, args.k, args.v, bias, table, args)
    else:  # inference: the launcher alone, no autograd bookkeeping
        out, lse = _forward(*args)
    return (out, lse) if return_lse else out
