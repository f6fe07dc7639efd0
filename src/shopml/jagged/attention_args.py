"""The one argument set of the Triton attention and its binding to the launchers, shared by the
eager entry (:mod:`shopml.jagged.attention_triton`) and the torch.compile custom ops
(:mod:`shopml.jagged.attention_ops`, which the entry imports only while dynamo traces it).

:class:`AttentionArgs` is the eager autograd Function's input and the custom ops' schema;
:func:`_forward` / :func:`_backward_launch` call the launchers positionally in their own parameter
order (bound by name at import), for both entry points; :func:`_setup_context` and
:func:`_backward` are the custom ops' autograd formula, returning a gradient per field.
"""

from __future__ import annotations

import inspect
import operator
import typing
from typing import NamedTuple

from torch import Tensor

from shopml.jagged.triton.attention_bwd import _attn_bwd
from shopml.jagged.triton.attention_fwd import _attn_fwd

__all__ = ["AttentionArgs"]


class AttentionArgs(NamedTuple):
    """Every input of the attention kernels, by name (field order = the custom ops' schema)."""

    q: Tensor  # (T_q, H, D), last dim contiguous
    k: Tensor  # (T_k, H, D)
    v: Tensor  # (T_k, H, D)
    q_offsets: Tensor  # (B+1,) int32/int64
    k_offsets: Tensor  # (B+1,); the q_offsets themselves for self-attention
    bias: Tensor | None  # (sum_b Lq_b * Lk_b, H) jagged tensor bias
    bias_offsets: Tensor | None  # (B+1,) int64: first bias row of each sample
    table: Tensor | None  # (num_buckets, H) relative-bias table
    bounds: Tensor | None  # (num_buckets - 1,) int64 bucket boundaries
    tq: Tensor | None  # (T_q,) int64 query timestamps (None: positions)
    tk: Tensor | None  # (T_k,) int64 key timestamps (None: positions)
    max_seqlen_q: int
    max_seqlen_k: int
    scale: float  # multiplies q . k
    post_scale: float  # multiplies the output after the softmax (FBGEMM's 1 / max_seq_len)
    causal: bool
    allow_tf32: bool
    zero_init: bool  # zero-fill outputs first (needed when sequences may be truncated)
    consecutive: bool = False  # the bias boundaries are consecutive: closed-form buckets


_FIELD_TYPES = typing.get_type_hints(AttentionArgs)
# the tensors come first, then the settings: the backward saves the former, keeps the latter
_N_TENSORS = sum(kind in (Tensor, Tensor | None) for kind in _FIELD_TYPES.values())
assert all(kind in (Tensor, Tensor | None) for kind in list(_FIELD_TYPES.values())[:_N_TENSORS])
_BIAS, _TABLE = AttentionArgs._fields.index("bias"), AttentionArgs._fields.index("table")


def _in_order_of(launcher, names: tuple[str, ...]) -> operator.itemgetter:
    """Picks a launcher's arguments, in its own parameter order, out of a tuple laid out as
    ``names``: a positional call by name (bound once, at import; keyword calls cost ~3 us each).
    Parameters the launcher has beyond ``names`` keep their defaults; a required one is an error."""
    where = {name: i for i, name in enumerate(names)}
    picks = []
    for param in inspect.signature(launcher).parameters.values():
        if param.name not in where:
            if param.default is inspect.Parameter.empty:
                raise TypeError(f"{launcher.__name__} needs {param.name!r}, which we do not pass")
            break  # it and every later parameter keep their defaults
        picks.append(where.pop(param.name))
    if where:
        raise TypeError(f"{launcher.__name__} does not take {sorted(where)} positionally")
    return operator.itemgetter(*picks)


_FWD_ARGS = _in_order_of(_attn_fwd, AttentionArgs._fields)
_BWD_ARGS = _in_order_of(_attn_bwd, ("do", "out", "lse", *AttentionArgs._fields))


def _forward(*args: object) -> tuple[Tensor, Tensor]:
    """Forward launcher on an :class:`AttentionArgs` (or its fields): ``(out, lse fp32)``."""
    return _attn_fwd(*_FWD_ARGS(args))


def _backward_launch(*args: object):  # noqa: ANN202
    """Backward launchers on ``(do, out, lse, *AttentionArgs)``: ``(dq, dk, dv, dbias or None,
    dtable or None)``."""
    return _attn_bwd(*_BWD_ARGS(args))


def _setup_context(ctx, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:  # noqa: ANN001
    """Save what the backward needs: tensors through ``save_for_backward``, settings on ctx."""
    tensors = inputs[:_N_TENSORS]
    ctx.present = [t is not None for t in tensors]
    ctx.save_for_backward(*output, *[t for t in tensors if t is not None])
    ctx.settings = inputs[_N_TENSORS:]


def _backward(ctx, dout: Tensor, launch) -> tuple:  # noqa: ANN001
    """The one backward of both entry points; ``launch`` is the eager launcher or the custom op.

    Returns one gradient per :class:`AttentionArgs` field: q, k, v, and bias / table if given.
    """
    out, lse, *saved = ctx.saved_tensors
    rest = iter(saved)
    tensors = [next(rest) if present else None for present in ctx.present]
    dq, dk, dv, dbias, dtable = launch(dout, out, lse, *tensors, *ctx.settings)
    grads = dict.fromkeys(AttentionArgs._fields)
    grads.update(q=dq, k=dk, v=dv)
    if tensors[_BIAS] is not None:
        grads["bias"] = dbias
    if tensors[_TABLE] is not None:
        grads["table"] = dtable
    return tuple(grads.values())
