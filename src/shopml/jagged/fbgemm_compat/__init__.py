"""Drop-in replacements for FBGEMM's ``torch.ops.fbgemm.sll_*`` jagged ops and attention.

Switch by changing an import::

    # out = torch.ops.fbgemm.sll_jagged_dense_bmm(x, y, x_offsets, N, allow_tf32)
    from shopml.jagged import fbgemm_compat as sll
    out = sll.jagged_dense_bmm(x, y, x_offsets, N, allow_tf32)

Each function has the FBGEMM op's name (without ``sll_``), argument names and order, and its
semantics as implemented by FBGEMM's CPU path (fbgemm-gpu-cpu 1.9.0 serves as the test oracle),
including:

- silent truncation where FBGEMM truncates: ``jagged_dense_bmm`` (rows at positions
  ``>= N`` give 0), ``jagged_jagged_bmm`` (such rows are ignored), ``jagged_softmax`` (softmax
  over the first ``max_seq_len`` rows, later rows 0; FBGEMM leaves them uninitialised),
  ``array_jagged_bmm_jagged_out`` (only the top-left ``max_seq_len`` block and rows are used);
- the jagged2 offsets conventions: ``jagged2_to_padded_dense`` and
  ``jagged_dense_elementwise_mul_jagged_out`` take offsets of the flattened ``L_i x L_i`` blocks,
  ``jagged2_softmax`` takes the sequence offsets plus ``offsets_total`` (the block offsets);
- ``jagged_self_substraction_jagged_out`` (spelling kept): ``out_i[p, q] = a_i[p] - a_i[q + 1]``
  for a sequence of ``L_i + 1`` values.

Flags of FBGEMM's compiled kernels (``allow_tf32``, ``use_fbgemm_kernel``) are accepted and
ignored: fp32 matmuls always run in IEEE fp32. Unlike FBGEMM, every floating input receives a
gradient (FBGEMM gives none to the mask of ``jagged_dense_elementwise_mul_jagged_out`` and none at
all for ``dense_jagged_cat_jagged_out`` / ``jagged_self_substraction_jagged_out``).
The attention functions (``jagged_flash_attention_basic``, ``multi_head_jagged_flash_attention``,
``jagged_dense_flash_attention``) keep FBGEMM's semantics too: no ``1/sqrt(D)`` scale, outputs
divided by ``max_seq_len`` where FBGEMM divides, truncation at ``max_seq_len``.
Inputs are checked like :mod:`shopml.jagged.ops` (see :func:`shopml.jagged.checks_enabled`).
Dispatch is ``backend="auto"`` (:func:`shopml.jagged.backend.use_triton`): Triton on CUDA or
under the interpreter, else the reference.

Two modules: :mod:`~shopml.jagged.fbgemm_compat.ops` (the jagged ops) and
:mod:`~shopml.jagged.fbgemm_compat.attention` (the attention functions).
"""

from shopml.jagged.fbgemm_compat.attention import (
    jagged_dense_flash_attention,
    jagged_flash_attention_basic,
    multi_head_jagged_flash_attention,
)
from shopml.jagged.fbgemm_compat.ops import (
    array_jagged_bmm_jagged_out,
    dense_jagged_cat_jagged_out,
    jagged2_softmax,
    jagged2_to_padded_dense,
    jagged_dense_bmm,
    jagged_dense_elementwise_add,
    jagged_dense_elementwise_mul_jagged_out,
    jagged_jagged_bmm,
    jagged_jagged_bmm_jagged_out,
    jagged_self_substraction_jagged_out,
    jagged_softmax,
)

__all__ = [
    "array_jagged_bmm_jagged_out",
    "dense_jagged_cat_jagged_out",
    "jagged2_softmax",
    "jagged2_to_padded_dense",
    "jagged_dense_bmm",
    "jagged_dense_elementwise_add",
    "jagged_dense_elementwise_mul_jagged_out",
    "jagged_dense_flash_attention",
    "jagged_flash_attention_basic",
    "jagged_jagged_bmm",
    "jagged_jagged_bmm_jagged_out",
    "jagged_self_substraction_jagged_out",
    "jagged_softmax",
    "multi_head_jagged_flash_attention",
]
