"""Jagged flash attention in Triton: forward, backward, and the torch.compile custom ops.

Kernels live in shopml/jagged/triton/attention_{common,fwd,bwd}.py; this module is their entry.

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

Grid: ``(cdiv(max_seqlen, BLOCK), B, H)``. Axis 1 is mapped through a permutation of the batch
sorted by length, longest first, so the longest sequences start first and short ones fill the
tail (load balance for skewed lengths). Programs whose block starts past their sequence's end
exit at once. Block sizes are autotuned on CUDA, keyed on the bucketed (next power of two) max
sequence lengths, head dim, causal flag and bias mode; the interpreter uses one 16x16 config.

Limits: ``16 <= D <= 256`` (D need not be a power of two: it is padded to ``BLOCK_D``); q, k, v
share D; float32 inputs use IEEE fp32 dot products (``allow_tf32=True`` selects TF32); sequences
longer than ``max_seqlen`` are truncated (their extra rows output 0, as FBGEMM does). Differs
from the reference only in summation order and in the low-precision rounding of P before P @ V.
"""

from shopml.jagged.triton.attention_bwd import _attn_bwd
from shopml.jagged.triton.attention_common import _AUTOTUNE, _INTERPRET
from shopml.jagged.triton.attention_fwd import _attn_fwd

__all__ = ["_AUTOTUNE", "_INTERPRET", "_attn_bwd", "_attn_fwd"]
