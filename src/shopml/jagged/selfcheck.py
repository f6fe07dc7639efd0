"""A quick self-test of the Triton kernels: every jagged op and the attention against the reference.

Used by ``shopml jagged check``; runs in seconds on tiny shapes (lengths 0, 1, 5, 33), forward and
backward, on the given device. It needs the kernels to run there: CUDA, or a CPU under the Triton
interpreter (``TRITON_INTERPRET=1`` set before Python starts: the CLI re-runs itself so when it is
not); :func:`run_selfcheck` reports which implementation each op used.
"""

from __future__ import annotations

import torch

from shopml.jagged import attention, backend, ops
from shopml.jagged.tensor import lengths_to_offsets


def _cases(device: torch.device, gen: torch.Generator):
    lengths = torch.tensor([0, 1, 5, 33], dtype=torch.int32)
    off = lengths_to_offsets(lengths).to(device)
    t, n, b, d = int(lengths.sum()), int(lengths.max()), lengths.numel(), 16
    t2 = int((lengths.long() ** 2).sum())

    def r(*shape):
        return torch.randn(*shape, generator=gen).to(device)

    return {
        "jagged_to_padded": (lambda be, x: ops.jagged_to_padded(x[0], off, n, backend=be), [r(t, d)]),
        "padded_to_jagged": (lambda be, x: ops.padded_to_jagged(x[0], off, backend=be), [r(b, n, d)]),
        "jagged_dense_bmm": (lambda be, x: ops.jagged_dense_bmm(x[0], off, x[1], n, backend=be), [r(t, d), r(b, d, 8)]),
        "jagged_jagged_bmm": (lambda be, x: ops.jagged_jagged_bmm(x[0], x[1], off, n, backend=be), [r(t, d), r(t, 8)]),
        "jagged_softmax": (lambda be, x: ops.jagged_softmax(x[0], off, n, backend=be), [r(t, d)]),
        "jagged_dense_add": (lambda be, x: ops.jagged_dense_add(x[0], off, x[1], backend=be), [r(t, d), r(b, n, d)]),
        "jagged_sum": (lambda be, x: ops.jagged_sum(x[0], off, backend=be), [r(t, d)]),
        "jagged_mean": (lambda be, x: ops.jagged_mean(x[0], off, backend=be), [r(t, d)]),
        "jagged_concat": (lambda be, x: ops.jagged_concat(x[0], off, x[1], off, backend=be)[0], [r(t, d), r(t, d)]),
        "jagged_prepend_dense": (lambda be, x: ops.jagged_prepend_dense(x[0], x[1], off, backend=be)[0], [r(b, d), r(t, d)]),
        "jagged2_bmm": (lambda be, x: ops.jagged2_bmm(x[0], x[1], off, n, backend=be), [r(t, d), r(t, d)]),
        "jagged2_softmax": (lambda be, x: ops.jagged2_softmax(x[0], off, n, backend=be), [r(t2)]),
        "jagged2_matmul": (lambda be, x: ops.jagged2_matmul(x[0], x[1], off, n, backend=be), [r(t2), r(t, d)]),
        "jagged2_to_padded": (lambda be, x: ops.jagged2_to_padded(x[0], off, n, backend=be), [r(t2)]),
        "jagged2_mul_dense": (lambda be, x: ops.jagged2_mul_dense(x[0], off, x[1], backend=be), [r(t2), r(n, n)]),
        "jagged_pairwise_diff": (lambda be, x: ops.jagged_pairwise_diff(x[0], off, backend=be), [r(t)]),
        "jagged_flash_attention": (lambda be, x: attention.jagged_flash_attention(x[0], x[1], x[2], off, n, causal=True, backend=be), [r(t, 2, d), r(t, 2, d), r(t, 2, d)]),
    }  # fmt: skip


def _run(fn, backend, inputs, upstream):
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    out = fn(backend, xs)
    if upstream is None:
        upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, xs, upstream)
    return [out, *grads], upstream


def kernels_runnable(device: torch.device) -> bool:
    """Whether the Triton kernels run on ``device`` in this process (CUDA, or the interpreter)."""
    return backend.use_triton("auto", torch.empty(0, device=device))


def _used(name: str, inputs: list[torch.Tensor]) -> str:
    """The module that ``backend="auto"`` runs for this op: a kernel file or a reference."""
    if name == "jagged_flash_attention":
        triton = backend.use_triton("auto", *inputs)
        return "attention_triton" if triton else "attention_reference"
    return ops.impl(name, "auto", *inputs).__module__.rsplit(".", 1)[-1]


def run_selfcheck(
    device: str | torch.device = "cpu", seed: int = 0
) -> list[tuple[str, str, float]]:
    """Returns ``[(op, module used by backend="auto", max abs error over output and gradients)]``.

    Where the kernels cannot run (:func:`kernels_runnable` is False) every op uses its reference
    and the errors are 0 by construction: callers must check the module column.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    results = []
    for name, (fn, inputs) in _cases(device, gen).items():
        used = _used(name, inputs)
        fast, upstream = _run(fn, "auto", inputs, None)
        slow, _ = _run(fn, "reference", inputs, upstream)
        err = max(
            ((a - b).abs().max().item() if a.numel() else 0.0)
            for a, b in zip(fast, slow, strict=True)
        )
        results.append((name, used, err))
    return results
