"""shopml.jagged: jagged tensors and jagged feature-interaction kernels (Triton + PyTorch reference).

Importing this package does not import Triton; kernels load on first use.

- :class:`JaggedTensor`, :class:`KeyedJaggedTensor`: containers (``values``, ``offsets``).
- :mod:`shopml.jagged.ops`: public ops with ``backend="auto" | "triton" | "reference"``
  (the one decision: :func:`shopml.jagged.backend.use_triton`).
- :mod:`shopml.jagged.ops_reference`: the executable spec.
- :mod:`shopml.jagged.attention`: jagged flash attention (same shape: ``attention_reference``,
  ``attention_triton``).
- :mod:`shopml.jagged.fbgemm_compat`: drop-ins for FBGEMM's ``torch.ops.fbgemm.sll_*`` ops.
- :func:`checks_enabled`: the one switch for content checks (see :mod:`shopml.jagged.checks`).
"""

from shopml.jagged.attention import (
    RelativeBias,
    jagged_flash_attention,
    jagged_target_attention,
    log_bucket_boundaries,
    relative_bias_dense,
)
from shopml.jagged.checks import checks_enabled, content_checks_on
from shopml.jagged.ops import *  # noqa: F403
from shopml.jagged.ops import __all__ as _ops_all
from shopml.jagged.tensor import JaggedTensor, KeyedJaggedTensor, lengths_to_offsets

__all__ = [
    "JaggedTensor",
    "KeyedJaggedTensor",
    "RelativeBias",
    "checks_enabled",
    "content_checks_on",
    "jagged_flash_attention",
    "jagged_target_attention",
    "lengths_to_offsets",
    "log_bucket_boundaries",
    "relative_bias_dense",
    *_ops_all,
]
