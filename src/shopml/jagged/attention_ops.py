"""The torch.compile face of the Triton attention: custom ops ``shopml::jagged_attention_fwd`` and
``shopml::jagged_attention_bwd``, registered when this module is imported.

Nothing imports it in eager use: :func:`shopml.jagged.attention_triton.jagged_flash_attention`
imports it inside its ``torch.compiler.is_compiling()`` branch, and dynamo executes that import
(really, once) while it traces, before it records the op's call. An eager process never
registers them: under cProfile the registration showed 0.88 s of a new process on the GPU machine
(torch 2.11), though a later process of the registering code measured no slower without the
profiler (benchmarks/results/attention_cold-nvidia-h200.log). Code that replays a compiled
artifact without tracing the Python source again (e.g. a saved ``torch.export`` program) imports
this module first.

Schemas are built from :class:`~shopml.jagged.attention_args.AttentionArgs` (its fields, in
order); fake implementations serve tracing; the autograd formula registered on the forward is the
eager path's own (:func:`~shopml.jagged.attention_args._backward`). ``lse`` is an output but
not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from shopml.jagged.attention_args import (
    _FIELD_TYPES,
    AttentionArgs,
    _backward,
    _backward_launch,
    _forward,
    _setup_context,
)

__all__ = ["jagged_attention_bwd", "jagged_attention_fwd"]

_SCHEMA_TYPES = {Tensor: "Tensor", Tensor | None: "Tensor?", int: "SymInt", float: "float",
                 bool: "bool"}  # fmt: skip


def _schema(leading: str, returns: str) -> str:
    """A custom op's schema: ``leading`` arguments, then :class:`AttentionArgs`' fields."""
    fields = ", ".join(f"{_SCHEMA_TYPES[kind]} {name}" for name, kind in _FIELD_TYPES.items())
    return f"({leading}{fields}) -> {returns}"


@torch.library.custom_op(
    "shopml::jagged_attention_fwd", mutates_args=(), schema=_schema("", "(Tensor, Tensor)")
)
def jagged_attention_fwd(*args: object) -> tuple[Tensor, Tensor]:
    """Forward launcher as an op (arguments: :class:`AttentionArgs`): ``(out, lse (T_q, H) fp32)``."""
    return _forward(*args)


@jagged_attention_fwd.register_fake
def _(*args: object) -> tuple[Tensor, Tensor]:
    q = AttentionArgs(*args).q
    return torch.empty_like(q), q.new_empty((q.shape[0], q.shape[1]), dtype=torch.float32)


@torch.library.custom_op(
    "shopml::jagged_attention_bwd",
    mutates_args=(),
    schema=_schema(
        "Tensor do, Tensor out, Tensor lse, ", "(Tensor, Tensor, Tensor, Tensor, Tensor)"
    ),
)
def jagged_attention_bwd(
    do: Tensor, out: Tensor, lse: Tensor, *args: object
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward launchers as an op: ``(dq, dk, dv, dbias, dtable)``, 0-element where absent."""
    dq, dk, dv, dbias, dtable = _backward_launch(do, out, lse, *args)
    dbias = dq.new_empty(0) if dbias is None else dbias  # outputs must not alias each other
    dtable = dq.new_empty(0) if dtable is None else dtable
    return dq, dk, dv, dbias, dtable


@jagged_attention_bwd.register_fake
def _(do: Tensor, out: Tensor, lse: Tensor, *args: object) -> tuple[Tensor, ...]:
    a = AttentionArgs(*args)
    dbias = a.q.new_empty(0) if a.bias is None else torch.empty_like(a.bias)
    dtable = a.q.new_empty(0) if a.table is None else torch.empty_like(a.table)
    return torch.empty_like(a.q), torch.empty_like(a.k), torch.empty_like(a.v), dbias, dtable


def _op_backward(ctx, dout: Tensor, _dlse: Tensor) -> tuple:  # noqa: ANN001
    return _backward(ctx, dout, jagged_attention_bwd)


jagged_attention_fwd.register_autograd(_op_backward, setup_context=_setup_context)
