"""Jagged ops: Triton vs. the reference (forward and backward), dense equivalence, gradcheck of the
references, input checks. GPU variants reuse the same check with larger shapes and fp16/bf16."""

from __future__ import annotations

import zlib

import pytest
import torch
from cases import CPU_CASES, GPU_CASES, OPS, batch, make_inputs
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import GRADCHECK, assert_matches_reference

from shopml.common.devices import is_interpreter
from shopml.jagged import backend, checks_enabled, ops

needs_triton_cpu = pytest.mark.skipif(
    not is_interpreter(), reason="Triton on CPU needs TRITON_INTERPRET=1 before Python starts"
)
LOWP = (torch.float16, torch.bfloat16)


def _run(test_id, backend, args, kwargs, grad_idx, upstream=None):
    args = [
        a.detach().clone().requires_grad_(True) if i in grad_idx else a for i, a in enumerate(args)
    ]
    out = getattr(ops, OPS[test_id])(*args, **kwargs, backend=backend)
    values = out[0] if isinstance(out, tuple) else out
    if upstream is None:
        gen = torch.Generator().manual_seed(1)
        upstream = torch.randn(values.shape, generator=gen).to(values.device)
    grads = torch.autograd.grad(
        values, [args[i] for i in grad_idx], upstream.to(values.dtype), allow_unused=False
    )
    return out, grads, upstream


def check_against_reference(test_id, lengths, d, dtype, device):
    """Forward and backward (random upstream gradient) of Triton vs. the fp32 reference."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{test_id}{lengths}{d}".encode()))
    args, kwargs, grad_idx = make_inputs(test_id, lengths, d, dtype, device, gen)
    out_t, grads_t, upstream = _run(test_id, "triton", args, kwargs, grad_idx)
    args32 = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
    out_r, grads_r, _ = _run(test_id, "reference", args32, kwargs, grad_idx, upstream)
    out_l, grads_l = out_r, grads_r
    if dtype in LOWP:
        out_l, grads_l, _ = _run(test_id, "reference", args, kwargs, grad_idx, upstream)
    if isinstance(out_t, tuple):  # (values, offsets)
        assert torch.equal(out_t[1], out_r[1])
        out_t, out_r, out_l = out_t[0], out_r[0], out_l[0]
    assert_matches_reference(
        out_t, out_r, out_l if dtype in LOWP else None, name=f"{test_id} forward"
    )
    for i, gt, gr, gl in zip(grad_idx, grads_t, grads_r, grads_l, strict=True):
        assert_matches_reference(
            gt, gr, gl if dtype in LOWP else None, name=f"{test_id} grad of arg {i}"
        )


# ------------------------------------------------------------------ CPU: Triton interpreter
@needs_triton_cpu
@pytest.mark.parametrize("case", CPU_CASES, ids=[c[0] for c in CPU_CASES])
@pytest.mark.parametrize("test_id", list(OPS))
def test_triton_matches_reference(test_id, case):
    _, lengths, d = case
    check_against_reference(test_id, lengths, d, torch.float32, torch.device("cpu"))


@needs_triton_cpu
@settings(max_examples=10, deadline=None)
@given(
    test_id=st.sampled_from(
        [
            "jagged_dense_bmm",
            "jagged_softmax",
            "jagged2_bmm",
            "jagged2_matmul",
            "jagged_sum",
            "jagged_concat",
        ]
    ),
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=4),
    d=st.sampled_from([16, 19, 32]),
)
def test_triton_matches_reference_property(test_id, lengths, d):
    check_against_reference(test_id, lengths, d, torch.float32, torch.device("cpu"))


@needs_triton_cpu
def test_int32_and_int64_offsets_agree():
    x = torch.randn(9, 16)
    for dtype in (torch.int32, torch.int64):
        off, _, _ = batch([4, 0, 5], "cpu", dtype)
        assert torch.allclose(
            ops.jagged_softmax(x, off, 5), ops.jagged_softmax(x, off, 5, backend="reference")
        )


# ------------------------------------------------------------------ GPU: same checks, bigger, low precision
def _gpu_lengths(lengths):
    if lengths is not None:
        return lengths
    gen = torch.Generator().manual_seed(7)
    return torch.randint(0, 301, (64,), generator=gen).tolist()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", GPU_CASES, ids=[c[0] for c in GPU_CASES])
@pytest.mark.parametrize("test_id", list(OPS))
def test_triton_matches_reference_gpu(test_id, case, dtype):
    _, lengths, d = case
    lengths = _gpu_lengths(lengths)
    if test_id.startswith(("jagged2", "jagged_pairwise")) and max(lengths) > 300:
        lengths = [min(n, 300) for n in lengths]  # keep sum L^2 modest
    check_against_reference(test_id, lengths, d, dtype, torch.device("cuda"))


# ------------------------------------------------------------------ all lengths equal == dense
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_equal_lengths_match_dense_torch(backend):
    b, n, d = 3, 6, 16
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, n, d, generator=gen)
    y = torch.randn(b, n, d, generator=gen)
    w = torch.randn(b, d, 5, generator=gen)
    off = torch.arange(0, b * n + 1, n, dtype=torch.int32)
    xj, yj = x.reshape(-1, d), y.reshape(-1, d)
    close = lambda a, e: torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)  # noqa: E731
    kw = {"backend": backend}
    close(ops.jagged_dense_bmm(xj, off, w, n, **kw), torch.bmm(x, w).reshape(-1, 5))
    close(ops.jagged_jagged_bmm(xj, yj, off, n, **kw), torch.bmm(x.transpose(1, 2), y))
    close(ops.jagged_softmax(xj, off, n, **kw), torch.softmax(x, dim=1).reshape(-1, d))
    close(ops.jagged_sum(xj, off, **kw), x.sum(1))
    close(ops.jagged_mean(xj, off, **kw), x.mean(1))
    close(ops.jagged_dense_add(xj, off, y, **kw), (x + y).reshape(-1, d))
    s = torch.bmm(x, y.transpose(1, 2))
    close(ops.jagged2_bmm(xj, yj, off, n, **kw), s.reshape(-1))
    close(ops.jagged2_softmax(s.reshape(-1), off, n, **kw), torch.softmax(s, -1).reshape(-1))
    close(
        ops.jagged2_softmax(s.reshape(-1), off, n, transpose=True, **kw),
        torch.softmax(s, 1).reshape(-1),
    )
    close(ops.jagged2_matmul(s.reshape(-1), xj, off, n, **kw), torch.bmm(s, x).reshape(-1, d))
    close(ops.jagged2_to_padded(s.reshape(-1), off, n, **kw), s)
    mask = torch.tril(torch.ones(n, n))
    close(ops.jagged2_mul_dense(s.reshape(-1), off, mask, **kw), (s * mask).reshape(-1))
    t = x[..., 0]
    close(
        ops.jagged_pairwise_diff(t.reshape(-1), off, **kw),
        (t[:, :, None] - t[:, None, :]).reshape(-1),
    )
    vals, new_off = ops.jagged_prepend_dense(w[:, :5, 0], xj[:, :5].contiguous(), off, **kw)
    close(vals.view(b, n + 1, 5), torch.cat([w[:, None, :5, 0], x[..., :5]], dim=1))
    assert new_off.tolist() == [0, n + 1, 2 * (n + 1), 3 * (n + 1)]
    vals, new_off = ops.jagged_concat(xj, off, yj, off, **kw)
    close(vals.view(b, 2 * n, d), torch.cat([x, y], dim=1))


def test_jagged_softmax_matches_masked_dense_softmax():
    lengths = [3, 0, 5]
    off, t, n = batch(lengths, "cpu")
    x = torch.randn(t, 4)
    dense = ops.jagged_to_padded(x, off, n, pad_value=float("-inf"))
    expect = torch.nan_to_num(torch.softmax(dense, dim=1))
    got = ops.jagged_to_padded(ops.jagged_softmax(x, off, n), off, n)
    torch.testing.assert_close(got, expect)
    assert torch.equal(ops.jagged_mean(x, off)[1], torch.zeros(4))  # empty sequence -> 0


# ------------------------------------------------------------------ gradcheck of the references
@pytest.mark.parametrize("test_id", list(OPS))
def test_reference_gradcheck_float64(test_id):
    gen = torch.Generator().manual_seed(3)
    args, kwargs, grad_idx = make_inputs(
        test_id, [0, 1, 3, 2], 4, torch.float64, torch.device("cpu"), gen
    )
    fn = getattr(ops, OPS[test_id])

    def f(*grad_args):
        full = list(args)
        for i, g in zip(grad_idx, grad_args, strict=True):
            full[i] = g
        out = fn(*full, **kwargs, backend="reference")
        return out[0] if isinstance(out, tuple) else out

    inputs = tuple(args[i].detach().clone().requires_grad_(True) for i in grad_idx)
    assert torch.autograd.gradcheck(f, inputs, **GRADCHECK)


# ------------------------------------------------------------------ dispatch and input checks
def test_backend_dispatch_and_errors(monkeypatch):
    off, t, n = batch([2, 1], "cpu")
    x = torch.randn(t, 4)
    with pytest.raises(ValueError, match="backend: expected one of"):
        ops.jagged_softmax(x, off, n, backend="cuda")
    monkeypatch.setattr(backend, "INTERPRET", False)  # read once at import, as Triton does
    with pytest.raises(
        ValueError, match="backend: 'triton' needs CUDA tensors or TRITON_INTERPRET=1"
    ):
        ops.jagged_softmax(x, off, n, backend="triton")
    assert ops.impl("jagged_softmax", "auto", x).__module__ == "shopml.jagged.ops_reference"
    monkeypatch.setattr(backend, "INTERPRET", True)
    assert ops.impl("jagged_softmax", "auto", x).__module__.startswith("shopml.jagged.triton")
    # integer values always take the reference
    assert ops.impl("jagged_sum", "auto", off).__module__ == "shopml.jagged.ops_reference"


def _bad_calls():
    off, t, n = batch([2, 3], "cpu", torch.int64)
    x = torch.randn(t, 4)
    x2 = torch.randn(13)
    return [
        (lambda: ops.jagged_softmax(x, off.float(), n), "offsets: expected dtype int32 or int64"),
        (
            lambda: ops.jagged_softmax(x, torch.tensor([1, 2, 5]), n),
            r"offsets: expected offsets\[0\] == 0",
        ),
        (
            lambda: ops.jagged_softmax(x, torch.tensor([0, 3, 2]), n),
            "offsets: expected non-decreasing",
        ),
        (
            lambda: ops.jagged_softmax(x, torch.tensor([0, 2, 4]), n),
            r"offsets\[-1\] == number of value rows \(5\)",
        ),
        (
            lambda: ops.jagged_softmax(x, off, 2),
            "max_seqlen: expected every sequence length <= 2, found a length 3",
        ),
        (lambda: ops.jagged_softmax(x, off, 3.0), "max_seqlen: expected a Python int"),
        (lambda: ops.jagged_softmax(x[:, 0], off, n), "x: expected a 2-D tensor"),
        (lambda: ops.jagged_softmax(x.long(), off, n), "x: expected a floating-point tensor"),
        (
            lambda: ops.jagged_dense_bmm(x, off, torch.randn(2, 5, 3), n),
            r"y: expected shape \(B, K, N\) = \(2, 4, N\)",
        ),
        (
            lambda: ops.jagged_dense_bmm(x, off, torch.randn(2, 4, 3).double(), n),
            "y: expected dtype torch.float32",
        ),
        (lambda: ops.jagged_jagged_bmm(x, torch.randn(4, 2), off, n), "y: expected 5 rows"),
        (
            lambda: ops.jagged_dense_add(x, off, torch.randn(2, 2, 4)),
            "y.shape\\[1\\]: expected every sequence length <= 2",
        ),
        (
            lambda: ops.jagged2_softmax(torch.randn(12), off, n),
            "x: expected sum of squared lengths = 13 entries",
        ),
        (
            lambda: ops.jagged2_mul_dense(x2, off, torch.randn(3, 4)),
            r"y: expected a square \(N, N\) tensor",
        ),
        (
            lambda: ops.jagged2_matmul(x2, torch.randn(4, 2), off, n),
            r"offsets: expected offsets\[-1\] == number of value rows \(4\)",
        ),
        (lambda: ops.jagged2_bmm(x, torch.randn(5, 3), off, n), r"y: expected shape \(5, 4\)"),
        (
            lambda: ops.jagged_pairwise_diff(x[:, 0], off, torch.randn(4)),
            r"b: expected shape \(5,\)",
        ),
        (
            lambda: ops.jagged_pairwise_diff(x[:, 0], off, total2=-1),
            "total2: expected a non-negative",
        ),
        (
            lambda: ops.jagged_concat(x, off, torch.randn(2, 3), torch.tensor([0, 1, 2])),
            r"b: expected trailing shape \(4,\)",
        ),
        (
            lambda: ops.jagged_concat(x, off, torch.randn(2, 4), torch.tensor([0, 2])),
            "b_offsets: expected 3 entries",
        ),
        (
            lambda: ops.jagged_prepend_dense(torch.randn(3, 4), x, off),
            r"dense: expected shape \(2, 4\)",
        ),
        (lambda: ops.padded_to_jagged(torch.randn(3, 3, 4), off), "offsets: expected 4 entries"),
        (lambda: ops.jagged_to_padded(x, off, -1), "max_len: expected >= 0"),
        (lambda: ops.jagged2_to_padded(x2, off, n, backend="nope"), "backend: expected one of"),
    ]


@pytest.mark.parametrize("idx", range(len(_bad_calls())))
def test_bad_inputs_raise_value_error_naming_the_argument(idx):
    call, match = _bad_calls()[idx]
    with pytest.raises(ValueError, match=match):
        call()


def test_content_checks_switch_skips_offset_contents():
    x = torch.randn(5, 4)
    bad = torch.tensor([0, 3, 2])  # decreasing: content error only
    with pytest.raises(ValueError, match="non-decreasing"):
        ops.jagged_sum(x, bad, backend="reference")
    with checks_enabled(False):
        ops.jagged_sum(x, torch.tensor([0, 2, 5]), backend="reference")  # runs, no sync checks
        with pytest.raises(ValueError, match="offsets: expected dtype"):  # structure still checked
            ops.jagged_sum(x, bad.float(), backend="reference")


@needs_triton_cpu
def test_truncation_without_checks_matches_reference():
    """Lengths above max_seqlen: FBGEMM's truncation in both backends (memory-bound ops with checks
    off, matmuls in truncate mode as used by fbgemm_compat)."""
    off, t, _ = batch([2, 7, 4], "cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(t, 16, generator=gen)
    y = torch.randn(3, 16, 5, generator=gen)
    with checks_enabled(False):
        for fn in (
            lambda be: ops.impl("jagged_dense_bmm", be, x)(x, off, y, 3, truncate=True),
            lambda be: ops.impl("jagged_jagged_bmm", be, x)(x, x, off, 3, truncate=True),
            lambda be: ops.jagged_softmax(x, off, 3, backend=be),
            lambda be: ops.jagged_dense_add(x, off, torch.ones(3, 3, 16), backend=be),
            lambda be: ops.padded_to_jagged(torch.ones(3, 3, 16), off, t, backend=be),
        ):
            torch.testing.assert_close(fn("triton"), fn("reference"))
