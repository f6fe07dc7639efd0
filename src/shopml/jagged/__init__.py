"""shopml.jagged: jagged tensors and jagged feature-interaction kernels (Triton + PyTorch reference).

Importing this package does not import Triton; kernels load on first use.

- :class:`JaggedTensor`, :class:`KeyedJaggedTensor`: containers (``values``, ``offsets``).
- :mod:`shopml.jagged.ops`: public ops with ``backend="auto" | "triton" | "reference"``.
- :mod:`shopml.jagged.ops_reference`: the executable spec.
- :mod:`shopml.jagged.fbgemm_compat`: drop-ins for FBGEMM's ``torch.ops.fbgemm.sll_*`` ops.
- :func:`checks_enabled`: the one switch for content checks (see :mod:`shopml.jagged.checks`).
"""

from shopml.jagged.checks import checks_enabled, content_checks_on
from shopml.jagged.ops import *  # noqa: F403
from shopml.jagged.ops import __all__ as _ops_all
from shopml.jagged.tensor import JaggedTensor, KeyedJaggedTensor, lengths_to_offsets

__all__ = [
    "JaggedTensor",
    "KeyedJaggedTensor",
    "checks_enabled",
    "content_checks_on",
    "lengths_to_offsets",
    *_ops_all,
]
