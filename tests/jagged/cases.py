"""Input builders shared by the jagged op tests: one entry per op, CPU and GPU shapes.

Each builder takes ``(lengths, d, dtype, device, gen)`` and returns ``(args, kwargs, grad_idx)``:
the positional arguments of ``shopml.jagged.ops.<op>``, its keyword arguments, and the indices of
the floating arguments that must receive a gradient.
"""

from __future__ import annotations

import pytest
import torch

from shopml.common.devices import has_cuda, is_interpreter
from shopml.jagged.tensor import lengths_to_offsets


def triton_device() -> str:
    """The device Triton runs on here, or skip (checked at run time, never at import)."""
    if has_cuda():
        return "cuda"
    if is_interpreter():
        return "cpu"
    pytest.skip("needs CUDA or TRITON_INTERPRET=1")


# Edge cases of DESIGN.md: (id, lengths, width). Interpreter block size is 32.
CPU_CASES = [
    ("empty_and_len1", [0, 1, 3, 0], 16),
    ("all_equal", [5, 5, 5], 16),
    ("not_block_multiple", [33, 17, 1], 20),
    ("one_long", [2, 47, 1, 3], 32),
    ("all_empty", [0, 0], 16),
]
GPU_CASES = [
    ("empty_and_len1", [0, 1, 3, 0, 1, 0, 2], 64),
    ("all_equal", [128] * 8, 64),
    ("not_block_multiple", [33, 17, 1, 129, 255, 63], 96),
    ("one_long", [2, 1000, 1, 3, 17, 5], 128),
    ("many", None, 256),  # filled in by the test: 64 random lengths in [0, 300]
]


def batch(lengths, device, offsets_dtype=torch.int32):
    lengths_t = torch.tensor(lengths, dtype=offsets_dtype)
    offsets = lengths_to_offsets(lengths_t).to(device)
    return offsets, int(lengths_t.sum()), max(lengths, default=0)


def _rand(shape, dtype, device, gen):
    return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)


def _other_lengths(lengths):
    return list(reversed(lengths))


def make_inputs(op: str, lengths, d, dtype, device, gen):
    off, t, n = batch(lengths, device)
    b = len(lengths)
    t2 = sum(x * x for x in lengths)
    r = lambda *shape: _rand(shape, dtype, device, gen)  # noqa: E731
    if op == "jagged_to_padded":
        return (r(t, d), off, n), {"pad_value": -1.5}, [0]
    if op == "jagged_to_padded_truncate":
        return (r(t, d), off, max(n - 2, 0)), {}, [0]
    if op == "padded_to_jagged":
        return (r(b, n + 1, d), off), {}, [0]
    if op == "jagged_dense_bmm":
        return (r(t, d), off, r(b, d, d // 2 + 3), n), {}, [0, 2]
    if op == "jagged_jagged_bmm":
        return (r(t, d), r(t, d // 2 + 3), off, n), {}, [0, 1]
    if op == "jagged_softmax":
        return (r(t, d), off, n), {}, [0]
    if op in ("jagged2_softmax", "jagged2_softmax_t"):
        return (r(t2), off, n), {"transpose": op.endswith("_t")}, [0]
    if op == "jagged_dense_add":
        return (r(t, d), off, r(b, n + 2, d)), {}, [0, 2]
    if op == "jagged2_mul_dense":
        return (r(t2), off, r(n + 1, n + 1)), {}, [0, 2]
    if op == "jagged_pairwise_diff":
        return (r(t), off, r(t)), {}, [0, 2]
    if op == "jagged_pairwise_diff_self":
        return (r(t), off), {}, [0]
    if op in ("jagged_sum", "jagged_mean"):
        return (r(t, d), off), {}, [0]
    if op == "jagged_concat":
        other = _other_lengths(lengths)
        off_b, tb, _ = batch(other, device, torch.int64)
        return (r(t, d), off, r(tb, d), off_b), {}, [0, 2]
    if op == "jagged_prepend_dense":
        return (r(b, d), r(t, d), off), {}, [0, 1]
    if op == "jagged2_bmm":
        return (r(t, d), r(t, d), off, n), {}, [0, 1]
    if op in ("jagged2_matmul", "jagged2_matmul_t"):
        return (r(t2), r(t, d), off, n), {"transpose": op.endswith("_t")}, [0, 1]
    if op == "jagged2_to_padded":
        return (r(t2), off, n + 1), {"pad_value": 0.5}, [0]
    if op == "jagged2_to_padded_crop":
        return (r(t2), off, max(n - 2, 0)), {}, [0]
    raise KeyError(op)


# test id -> public op name
OPS = {
    "jagged_to_padded": "jagged_to_padded",
    "jagged_to_padded_truncate": "jagged_to_padded",
    "padded_to_jagged": "padded_to_jagged",
    "jagged_dense_bmm": "jagged_dense_bmm",
    "jagged_jagged_bmm": "jagged_jagged_bmm",
    "jagged_softmax": "jagged_softmax",
    "jagged2_softmax": "jagged2_softmax",
    "jagged2_softmax_t": "jagged2_softmax",
    "jagged_dense_add": "jagged_dense_add",
    "jagged2_mul_dense": "jagged2_mul_dense",
    "jagged_pairwise_diff": "jagged_pairwise_diff",
    "jagged_pairwise_diff_self": "jagged_pairwise_diff",
    "jagged_sum": "jagged_sum",
    "jagged_mean": "jagged_mean",
    "jagged_concat": "jagged_concat",
    "jagged_prepend_dense": "jagged_prepend_dense",
    "jagged2_bmm": "jagged2_bmm",
    "jagged2_matmul": "jagged2_matmul",
    "jagged2_matmul_t": "jagged2_matmul",
    "jagged2_to_padded": "jagged2_to_padded",
    "jagged2_to_padded_crop": "jagged2_to_padded",
}
