"""torch.library custom ops around the Triton attention kernels (torch.compile without graph breaks).

``shopml::jagged_attention_fwd`` and ``shopml::jagged_attention_bwd`` wrap the launchers of
:mod:`shopml.jagged.attention_triton`; each has a fake (meta) implementation so Dynamo/AOTAutograd
can trace shapes, and the forward op has its autograd formula registered with
``register_autograd``. ``lse`` is an output but not differentiable (its gradient is ignored).

Optional tensors are passed as ``None``; the backward op returns 0-element tensors for the
gradients that do not exist (no bias, no table), since an op must return tensors.
"""

# no `from __future__ import annotations`: custom_op infers its schema from real annotations
import math

import torch

from shopml.jagged.attention_reference import RelativeBias, jagged_bias_offsets
from shopml.jagged.attention_triton import _attn_bwd, _attn_fwd

Tensor = torch.Tensor


@torch.library.custom_op("shopml::jagged_attention_fwd", mutates_args=())
def jagged_attention_fwd(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_offsets: Tensor,
    k_offsets: Tensor,
    bias: Tensor | None,
    bias_offsets: Tensor | None,
    table: Tensor | None,
    bounds: Tensor | None,
    tq: Tensor | None,
    tk: Tensor | None,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    post_scale: float,
    causal: bool,
    allow_tf32: bool,
    zero_init: bool,
) -> tuple[Tensor, Tensor]:
    """Forward launcher as an op: returns ``(out (T_q, H, D), lse (T_q, H) fp32)``."""
    return _attn_fwd(
        q,
        k,
        v,
        q_offsets,
        k_offsets,
        bias,
        bias_offsets,
        table,
        bounds,
        tq,
        tk,
        max_seqlen_q,
        max_seqlen_k,
        scale,
        post_scale,
        causal,
        allow_tf32,
        zero_init,
    )


@jagged_attention_fwd.register_fake
def _(q, k, v, q_offsets, k_offsets, bias, bias_offsets, table, bounds, tq, tk,
      max_seqlen_q, max_seqlen_k, scale, post_scale, causal, allow_tf32, zero_init):  # fmt: skip
    return torch.empty_like(q), q.new_empty((q.shape[0], q.shape[1]), dtype=torch.float32)


@torch.library.custom_op("shopml::jagged_attention_bwd", mutates_args=())
def jagged_attention_bwd(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    q_offsets: Tensor,
    k_offsets: Tensor,
    bias: Tensor | None,
    bias_offsets: Tensor | None,
    table: Tensor | None,
    bounds: Tensor | None,
    tq: Tensor | None,
    tk: Tensor | None,
    max_seqlen_q: int,
    max_seqlen_k: int,
    scale: float,
    post_scale: float,
    causal: bool,
    allow_tf32: bool,
    zero_init: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward launchers as an op: ``(dq, dk, dv, dbias or empty, dtable or empty)``."""
    dq, dk, dv, dbias, dtable = _attn_bwd(
        do,
        q,
        k,
        v,
        out,
        lse,
        q_offsets,
        k_offsets,
        bias,
        bias_offsets,
        table,
        bounds,
        tq,
        tk,
        max_seqlen_q,
        max_seqlen_k,
        scale,
        post_scale,
        causal,
        allow_tf32,
        zero_init,
    )
    dbias = dbias if dbias is not None else q.new_empty(0)
    dtable = dtable if dtable is not None else q.new_empty(0)
    return dq, dk, dv, dbias, dtable


@jagged_attention_bwd.register_fake
def _(do, q, k, v, out, lse, q_offsets, k_offsets, bias, bias_offsets, table, bounds, tq, tk,
      max_seqlen_q, max_seqlen_k, scale, post_scale, causal, allow_tf32, zero_init):  # fmt: skip
    dbias = torch.empty_like(bias) if bias is not None else q.new_empty(0)
    dtable = torch.empty_like(table) if table is not None else q.new_empty(0)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), dbias, dtable


_N_INPUTS = 18


def _setup_context(ctx, inputs, output):  # noqa: ANN001
    (q, k, v, q_offsets, k_offsets, bias, bias_offsets, table, bounds, tq, tk,
     max_seqlen_q, max_seqlen_k, scale, post_scale, causal, allow_tf32, zero_init) = inputs  # fmt: skip
    out, lse = output
    ctx.has = (bias is not None, bias_offsets is not None, table is not None, bounds is not None,
               tq is not None, tk is not None)  # fmt: skip
    optional = [t for t in (bias, bias_offsets, table, bounds, tq, tk) if t is not None]
    ctx.save_for_backward(q, k, v, out, lse, q_offsets, k_offsets, *optional)
    ctx.args = (max_seqlen_q, max_seqlen_k, scale, post_scale, causal, allow_tf32, zero_init)


def _backward(ctx, dout, _dlse):  # noqa: ANN001
    saved = list(ctx.saved_tensors)
    q, k, v, out, lse, q_offsets, k_offsets = saved[:7]
    rest = iter(saved[7:])
    bias, bias_offsets, table, bounds, tq, tk = (next(rest) if h else None for h in ctx.has)
    dq, dk, dv, dbias, dtable = jagged_attention_bwd(
        dout,
        q,
        k,
        v,
        out,
        lse,
        q_offsets,
        k_offsets,
        bias,
        bias_offsets,
        table,
        bounds,
        tq,
        tk,
        *ctx.args,
    )
    grads = [None] * _N_INPUTS
    grads[0], grads[1], grads[2] = dq, dk, dv
    if bias is not None:
        grads[5] = dbias
    if table is not None:
        grads[7] = dtable
    return tuple(grads)


jagged_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


class _JaggedAttentionFunction(torch.autograd.Function):
    """Eager path: the same launchers without the custom-op dispatcher (less host overhead).

    Used outside torch.compile; under compile, the custom ops above are traced instead.
    """

    @staticmethod
    def forward(ctx, *inputs):  # noqa: ANN001, ANN205
        output = _attn_fwd(*inputs)
        _setup_context(ctx, inputs, output)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zero-filled gradient for lse (never used)
        return output

    @staticmethod
    def backward(ctx, dout, dlse):  # noqa: ANN001, ANN205
        if dout is None:  # grads are not materialised: nothing flowed back into the output
            return (None,) * _N_INPUTS
        saved = list(ctx.saved_tensors)
        q, k, v, out, lse, q_offsets, k_offsets = saved[:7]
        rest = iter(saved[7:])
        bias, bias_offsets, table, bounds, tq, tk = (next(rest) if h else None for h in ctx.has)
        dq, dk, dv, dbias, dtable = _attn_bwd(
            dout, q, k, v, out, lse, q_offsets, k_offsets, bias, bias_offsets, table, bounds,
            tq, tk, *ctx.args,
        )  # fmt: skip
        grads = [None] * _N_INPUTS
        grads[0], grads[1], grads[2], grads[5], grads[7] = dq, dk, dv, dbias, dtable
        return tuple(grads)


def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def triton_attention(
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
    attn_bias=None,  # noqa: ANN001
    return_lse: bool = False,
    post_scale: float = 1.0,
    allow_tf32: bool = False,
    zero_init: bool = False,
):  # noqa: ANN201
    """Triton backend of :func:`shopml.jagged.attention.jagged_flash_attention` (no checks).

    ``post_scale`` multiplies the output after the softmax; ``zero_init`` zero-fills the output
    first (needed only when sequences may be truncated by ``max_seqlen``).
    """
    self_attention = k_offsets is None
    if k_offsets is None:
        k_offsets = offsets
    if max_seqlen_k is None:
        max_seqlen_k = max_seqlen
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    bias = bias_offsets = table = bounds = tq = tk = None
    if isinstance(attn_bias, RelativeBias):
        table = attn_bias.table.contiguous()
        bounds = attn_bias.boundaries.contiguous()
        tq = attn_bias.q_timestamps
        tk = attn_bias.k_timestamps
        if tk is None and self_attention:
            tk = tq
    elif attn_bias is not None:
        bias = attn_bias.contiguous()
        lq = (offsets[1:] - offsets[:-1]).clamp(max=max_seqlen)
        lk = (k_offsets[1:] - k_offsets[:-1]).clamp(max=max_seqlen_k)
        bias_offsets = jagged_bias_offsets(lq, lk)
    run = jagged_attention_fwd if torch.compiler.is_compiling() else _JaggedAttentionFunction.apply
    out, lse = run(
        q,
        k,
        v,
        offsets,
        k_offsets,
        bias,
        bias_offsets,
        table,
        bounds,
        tq,
        tk,
        int(max_seqlen),
        int(max_seqlen_k),
        float(scale),
        float(post_scale),
        bool(causal),
        bool(allow_tf32),
        bool(zero_init),
    )
    if return_lse:
        return out, lse
    return out
