"""Jagged flash attention: Triton vs reference (forward, lse, backward), vs per-sequence SDPA,
biases, cross and target attention, torch.compile, FBGEMM semantics, and bad inputs.

CPU CI runs the Triton kernels under TRITON_INTERPRET=1 (fp32, tiny shapes); the ``gpu`` tests
reuse the same checks with realistic shapes and fp16/bf16 (flash-attention's tolerance rule).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from cases import triton_device
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerances import ATTENTION_FP32, LOWP_ABS, LOWP_FACTOR

from shopml.jagged import attention_reference as ref
from shopml.jagged import checks_enabled
from shopml.jagged.attention import (
    RelativeBias,
    jagged_flash_attention,
    jagged_target_attention,
    log_bucket_boundaries,
    relative_bias_dense,
)
from shopml.jagged.fbgemm_compat import (
    jagged_dense_flash_attention,
    jagged_flash_attention_basic,
    multi_head_jagged_flash_attention,
)

TOL = ATTENTION_FP32["cpu"]  # tiny shapes everywhere but the `gpu` tests

# edge cases of shared/DESIGN.md: empty and length-1 sequences, lengths not a multiple of the
# block (16 under the interpreter), one long sequence among short ones, all lengths equal
CASES = {
    "mixed": [0, 1, 17, 40, 5],
    "equal": [16, 16, 16],
    "one_long": [2, 64, 3],
}


def _offsets(lengths, device="cpu", dtype=torch.int64) -> torch.Tensor:
    lengths_t = torch.tensor(lengths, dtype=dtype)
    return torch.cat([lengths_t.new_zeros(1), torch.cumsum(lengths_t, 0)]).to(device)


def _qkv(tq, tk, heads, dim, dtype=torch.float32, device="cpu"):
    q = torch.randn(tq, heads, dim, dtype=dtype, device=device, requires_grad=True)
    k = torch.randn(tk, heads, dim, dtype=dtype, device=device, requires_grad=True)
    v = torch.randn(tk, heads, dim, dtype=dtype, device=device, requires_grad=True)
    return q, k, v


def _run(backend, q, k, v, grad, extra=(), **kw):
    out, lse = jagged_flash_attention(q, k, v, return_lse=True, backend=backend, **kw)
    grads = torch.autograd.grad(out, (q, k, v, *extra), grad)
    return out, lse, grads


def _assert_close(fast, ref_out, kind):
    atol, rtol = TOL[kind]
    torch.testing.assert_close(fast.float(), ref_out.float(), atol=atol, rtol=rtol)


def _assert_lse(fast, reference):
    assert torch.equal(torch.isinf(fast), torch.isinf(reference))
    finite = ~torch.isinf(reference)
    _assert_close(fast[finite], reference[finite], "fwd")


# relative biases: (buckets, max_distance, timestamp range): consecutive boundaries with
# positions or small timestamps (the kernels' closed form), widely spread timestamps or
# log-spaced boundaries (their per-boundary compares); "sorted": increasing times, gaps drawn
# from the range (the model's: most tiles share an end bucket, the kernels' one add a tile),
# or sorted over int64's whole range (tiles whose delta span wraps: a lookup a score)
RELATIVE = {
    "positions": (9, 32, 0, 0),
    "timestamps": (9, 32, 0, 50),
    "timestamps_wide": (9, 32, -(2**40), 2**40),
    "timestamps_log": (24, 64, 0, 200),
    "timestamps_many": (40, 64, -100, 100),  # buckets past 31 (the dK/dV kernel's bit set)
    "sorted": (16, 4096, 0, 3),  # boundaries -7, ..., 7: the closed form
    "sorted_log": (24, 64, 0, 9),
    "sorted_int64": (16, 4096, -(2**63), 2**63 - 1),
}


def _times(kind: str, lo: int, hi: int, lengths: list[int], device) -> torch.Tensor:  # noqa: ANN001
    """int64 event times of a RELATIVE kind for samples of ``lengths``."""
    n = sum(lengths)
    if kind == "sorted_int64":  # each sample's own sorted draw: key and query tiles far apart
        # differ by more than 2**63 for some pairs only
        draws = [torch.randint(lo, hi, (m,)).sort().values for m in lengths]
        return torch.cat(draws).to(device)
    if kind.startswith("sorted"):  # increasing over the whole tensor, so in each sample too
        return torch.randint(lo, hi, (n,)).cumsum(0).to(device)
    return torch.randint(lo, hi, (n,), device=device)


def _compare_backends(lengths_q, lengths_k=None, heads=2, dim=16, causal=False, bias_kind=None):
    device = triton_device()
    offsets = _offsets(lengths_q, device)
    kw = {"causal": causal}
    tq = sum(lengths_q)
    tk = tq
    if lengths_k is not None:
        kw.update(k_offsets=_offsets(lengths_k, device), max_seqlen_k=max(max(lengths_k), 1))
        tk = sum(lengths_k)
    q, k, v = _qkv(tq, tk, heads, dim, device=device)
    extra = ()
    if bias_kind == "tensor":
        lk = lengths_k if lengths_k is not None else lengths_q
        bias = torch.randn(
            sum(a * b for a, b in zip(lengths_q, lk, strict=True)), heads, device=device
        )
        bias.requires_grad_(True)
        kw["attn_bias"], extra = bias, (bias,)
    elif bias_kind is not None:  # a RelativeBias: see RELATIVE
        buckets, max_distance, lo, hi = RELATIVE[bias_kind]
        table = torch.randn(buckets, heads, device=device, requires_grad=True)
        ts_q = ts_k = None
        if bias_kind != "positions":
            ts_q = _times(bias_kind, lo, hi, lengths_q, device)
            ts_k = _times(bias_kind, lo, hi, lengths_k, device) if lengths_k is not None else None
        bounds = log_bucket_boundaries(buckets, max_distance).to(device)
        kw["attn_bias"], extra = RelativeBias(table, bounds, ts_q, ts_k), (table,)
    grad = torch.randn(tq, heads, dim, device=device)
    fast = _run("triton", q, k, v, grad, extra, offsets=offsets, max_seqlen=max(lengths_q), **kw)
    slow = _run("reference", q, k, v, grad, extra, offsets=offsets, max_seqlen=max(lengths_q), **kw)
    _assert_close(fast[0], slow[0], "fwd")
    _assert_lse(fast[1], slow[1])
    for a, b in zip(fast[2], slow[2], strict=True):
        _assert_close(a, b, "grad")


# ------------------------------------------------------------------------------ the reference


@pytest.mark.parametrize("causal", [False, True])
def test_reference_matches_sdpa_applied_per_sequence(causal):
    lengths = [3, 0, 1, 9]
    offsets = _offsets(lengths)
    q, k, v = _qkv(sum(lengths), sum(lengths), 2, 16)
    out, lse = ref.jagged_flash_attention(q, k, v, offsets, 9, causal=causal, return_lse=True)
    for b, n in enumerate(lengths):
        s, e = int(offsets[b]), int(offsets[b + 1])
        if n == 0:
            continue
        qs, ks, vs = (t[s:e].transpose(0, 1) for t in (q, k, v))  # (H, L, D)
        expect = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal).transpose(0, 1)
        _assert_close(out[s:e], expect, "fwd")
        scores = qs @ ks.transpose(-1, -2) / 4.0
        if causal:
            scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        _assert_close(lse[s:e], torch.logsumexp(scores, -1).transpose(0, 1), "fwd")


def test_reference_gradcheck_float64():
    lengths = [2, 0, 3]
    offsets = _offsets(lengths)
    q, k, v = (t.detach().double().requires_grad_() for t in _qkv(5, 5, 1, 16))
    table = torch.randn(4, 1, dtype=torch.float64, requires_grad=True)
    bias_fn = lambda tab: RelativeBias(tab, log_bucket_boundaries(4, 8))
    fn = lambda q, k, v, tab: ref.jagged_flash_attention(
        q, k, v, offsets, 3, causal=True, attn_bias=bias_fn(tab)
    )
    assert torch.autograd.gradcheck(fn, (q, k, v, table))


def test_relative_bias_dense_matches_a_plain_loop():
    lengths = [3, 0, 4]
    offsets = _offsets(lengths)
    ts = torch.tensor([5, 7, 20, 1, 2, 3, 50])
    table = torch.randn(8, 2)
    bounds = log_bucket_boundaries(8, 16)
    dense = relative_bias_dense(RelativeBias(table, bounds, ts), offsets, 4)  # (B, H, N, N)
    assert dense.shape == (3, 2, 4, 4)
    for b, n in enumerate(lengths):
        s = int(offsets[b])
        for i in range(4):
            for j in range(4):
                if i < n and j < n:
                    bucket = int((bounds <= ts[s + i] - ts[s + j]).sum())
                    assert torch.equal(dense[b, :, i, j], table[bucket])
                else:
                    assert torch.all(dense[b, :, i, j] == 0)


def test_log_bucket_boundaries_are_strictly_increasing_and_sized():
    for n in (1, 2, 5, 16, 33):
        for bidirectional in (False, True):
            bounds = log_bucket_boundaries(n, 1000, bidirectional=bidirectional)
            assert bounds.shape == (n - 1,) and bounds.dtype == torch.int64
            assert bool((bounds[1:] > bounds[:-1]).all())
    # bidirectional: -1, 0 and 1 fall in distinct buckets
    buckets = ref.bucketize_delta(torch.tensor([-1, 0, 1]), log_bucket_boundaries(16))
    assert len(set(buckets.tolist())) == 3


# ------------------------------------------------------------------------------ Triton vs reference


@pytest.mark.parametrize("dim", [16, 32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_triton_matches_reference_self_attention(case, causal, dim):
    _compare_backends(CASES[case], heads=2, dim=dim, causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_triton_matches_reference_cross_attention(causal):
    # different query and key lengths, including empty on either side, Lq > Lk and Lq < Lk
    _compare_backends([3, 0, 20, 33, 1], [5, 4, 0, 18, 1], heads=2, dim=32, causal=causal)


@pytest.mark.parametrize(
    ("bias_kind", "causal", "cross"),
    [("tensor", False, False), ("tensor", True, True), ("positions", True, False),
     ("positions", False, True), ("timestamps", False, False), ("timestamps", True, True),
     ("timestamps_wide", False, False), ("timestamps_log", True, True),
     ("timestamps_log", False, False), ("timestamps_many", False, False),
     ("sorted", False, False), ("sorted", True, True), ("sorted_log", False, True),
     ("sorted_int64", False, False)],
)  # fmt: skip
def test_triton_matches_reference_with_bias_and_its_gradient(bias_kind, causal, cross):
    lengths_k = [4, 2, 0, 19] if cross else None
    lengths_q = [3, 0, 20, 17]
    if bias_kind.startswith("sorted"):  # several key blocks a sample: tiles off the diagonal
        lengths_q, lengths_k = [3, 0, 50, 37], ([4, 2, 0, 45] if cross else None)
    _compare_backends(lengths_q, lengths_k, heads=2, dim=16, causal=causal, bias_kind=bias_kind)


def test_head_dim_not_a_power_of_two():
    _compare_backends([5, 0, 18], heads=1, dim=24, causal=True)


def test_all_lengths_equal_gives_the_dense_result():
    device = triton_device()
    batch, n, heads, dim = 3, 16, 2, 16
    q, k, v = _qkv(batch * n, batch * n, heads, dim, device=device)
    offsets = _offsets([n] * batch, device)
    out = jagged_flash_attention(q, k, v, offsets, n, causal=True, backend="triton")
    dense = lambda t: t.view(batch, n, heads, dim).transpose(1, 2)
    expect = F.scaled_dot_product_attention(dense(q), dense(k), dense(v), is_causal=True)
    _assert_close(out, expect.transpose(1, 2).reshape(batch * n, heads, dim), "fwd")


@settings(max_examples=4, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 35), min_size=1, max_size=3),
    causal=st.booleans(),
)
def test_triton_matches_reference_on_random_lengths(lengths, causal):
    if sum(lengths) == 0:
        lengths = [*lengths[:-1], 1]
    _compare_backends(lengths, heads=1, dim=16, causal=causal)


def test_int32_offsets_and_strided_inputs():
    device = triton_device()
    lengths = [4, 0, 19]
    offsets = _offsets(lengths, device, torch.int32)
    qkv = torch.randn(23, 3, 2, 16, device=device)  # q, k, v as strided views of one tensor
    q, k, v = qkv.unbind(1)
    fast = jagged_flash_attention(q, k, v, offsets, 19, backend="triton")
    slow = jagged_flash_attention(q, k, v, offsets, 19, backend="reference")
    _assert_close(fast, slow, "fwd")


def test_longest_first_order_and_generous_max_seqlen(attn_switch):
    """SHOPML_ATTN_ORDER=1 (grid through a longest-first permutation), max_seqlen > longest."""
    device = triton_device()
    attn_switch("SHOPML_ATTN_ORDER", "1")
    lengths = [5, 0, 33, 1]
    offsets = _offsets(lengths, device)
    q, k, v = _qkv(39, 39, 2, 16, device=device)
    grad = torch.randn(39, 2, 16, device=device)
    fast = _run("triton", q, k, v, grad, offsets=offsets, max_seqlen=64, causal=True)
    slow = _run("reference", q, k, v, grad, offsets=offsets, max_seqlen=33, causal=True)
    _assert_close(fast[0], slow[0], "fwd")
    _assert_lse(fast[1], slow[1])
    for a, b in zip(fast[2], slow[2], strict=True):
        _assert_close(a, b, "grad")


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_batch_of_empty_sequences(backend):
    device = triton_device() if backend == "triton" else "cpu"
    offsets = _offsets([0, 0], device)
    q, k, v = _qkv(0, 0, 2, 16, device=device)
    out, lse = jagged_flash_attention(q, k, v, offsets, 0, return_lse=True, backend=backend)
    assert out.shape == (0, 2, 16) and lse.shape == (0, 2)
    grads = torch.autograd.grad(out.sum(), (q, k, v), allow_unused=True)
    assert all(g is None or g.shape == (0, 2, 16) for g in grads)


# ------------------------------------------------------------------------------ target attention


@pytest.mark.parametrize("bias_kind", [None, "tensor", "timestamps"])
def test_target_attention_matches_reference_and_sdpa(bias_kind):
    device = triton_device()
    lengths = [3, 0, 17, 1]
    offsets = _offsets(lengths, device)
    batch, m, heads, dim = 4, 3, 2, 16
    q = torch.randn(batch, m, heads, dim, device=device, requires_grad=True)
    _, k, v = _qkv(0, sum(lengths), heads, dim, device=device)
    extra, bias = (), None
    if bias_kind == "tensor":
        bias = torch.randn(m * sum(lengths), heads, device=device, requires_grad=True)
        extra = (bias,)
    elif bias_kind == "timestamps":
        table = torch.randn(6, heads, device=device, requires_grad=True)
        bias = RelativeBias(
            table, log_bucket_boundaries(6, 20).to(device),
            torch.full((batch * m,), 30, device=device), torch.randint(0, 30, (sum(lengths),), device=device),
        )  # fmt: skip
        extra = (table,)
    grad = torch.randn(batch, m, heads, dim, device=device)
    results = []
    for backend in ("triton", "reference"):
        out = jagged_target_attention(q, k, v, offsets, 17, attn_bias=bias, backend=backend)
        results.append((out, torch.autograd.grad(out, (q, k, v, *extra), grad)))
    (fast, g_fast), (slow, g_slow) = results
    _assert_close(fast, slow, "fwd")
    for a, b in zip(g_fast, g_slow, strict=True):
        _assert_close(a, b, "grad")
    assert torch.all(fast[1] == 0)  # empty history -> zeros
    if bias_kind is None:  # one sample against plain SDPA
        s, e = int(offsets[2]), int(offsets[3])
        expect = F.scaled_dot_product_attention(
            q[2].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1)
        ).transpose(0, 1)
        _assert_close(fast[2], expect, "fwd")


# ------------------------------------------------------------------------------ torch.compile


@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_function_has_no_graph_break_and_matches_eager(with_bias):
    """Through the custom ops: with a relative bias, and without (0-element bias gradients)."""
    device = triton_device()
    lengths = [3, 0, 18]
    offsets = _offsets(lengths, device)
    q, k, v = _qkv(21, 21, 2, 16, device=device)
    table = torch.randn(5, 2, device=device, requires_grad=True)
    bounds = log_bucket_boundaries(5, 10).to(device)

    def fn(q, k, v, table):
        bias = RelativeBias(table, bounds) if with_bias else None
        out = jagged_flash_attention(
            q, k, v, offsets, 18, causal=True, attn_bias=bias, backend="triton"
        )
        return (out * out).sum()

    with checks_enabled(False):
        compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
        inputs = (q, k, v, table) if with_bias else (q, k, v)
        loss_c = compiled(q, k, v, table)
        grads_c = torch.autograd.grad(loss_c, inputs)
        loss_e = fn(q, k, v, table)
        grads_e = torch.autograd.grad(loss_e, inputs)
    _assert_close(loss_c, loss_e, "fwd")
    for a, b in zip(grads_c, grads_e, strict=True):
        _assert_close(a, b, "grad")


def test_custom_op_passes_opcheck():
    device = triton_device()
    from shopml.jagged.attention_args import AttentionArgs
    from shopml.jagged.attention_ops import jagged_attention_fwd

    offsets = _offsets([3, 0, 5], device)
    q, k, v = _qkv(8, 8, 1, 16, device=device)
    args = AttentionArgs(q, k, v, offsets, offsets, None, None, None, None, None, None,
                         max_seqlen_q=5, max_seqlen_k=5, scale=0.25, post_scale=1.0, causal=False,
                         allow_tf32=False, zero_init=False)  # fmt: skip
    torch.library.opcheck(
        jagged_attention_fwd, tuple(args), test_utils=("test_schema", "test_faketensor")
    )


def test_launcher_arguments_are_bound_by_name():
    """The entry calls the launchers positionally in *their* parameter order, found by name."""
    from shopml.jagged.attention_args import _in_order_of

    def launcher(b, a, c=3, d=4):
        return a, b, c, d

    pick = _in_order_of(launcher, ("a", "b", "c"))
    assert launcher(*pick(("A", "B", "C"))) == ("A", "B", "C", 4)
    with pytest.raises(TypeError, match="needs 'b'"):
        _in_order_of(launcher, ("a",))
    with pytest.raises(TypeError, match=r"does not take \['e'\]"):
        _in_order_of(launcher, ("a", "b", "e"))


# ------------------------------------------------------------------------------ FBGEMM semantics


def _fbgemm_loop(q, k, v, offsets, n, mask):
    """FBGEMM sll semantics written as a per-sample loop (truncation, no scale, /N, post mask)."""
    out = torch.zeros_like(q)
    for b in range(offsets.numel() - 1):
        s = int(offsets[b])
        length = min(int(offsets[b + 1]) - s, n)
        if length == 0:
            continue
        p = torch.softmax(q[s : s + length] @ k[s : s + length].T, dim=-1)
        if mask:
            p = p * torch.ones(length, length).triu()
        out[s : s + length] = p @ v[s : s + length] / n
    return out


@pytest.mark.parametrize("use_mask", [False, True])
def test_fbgemm_basic_semantics_with_truncation(use_mask):
    lengths, n = [3, 0, 21, 1], 16  # 21 > max_seq_len: truncated, tail rows 0
    offsets = _offsets(lengths)
    q, k, v = (torch.randn(25, 16) for _ in range(3))
    out = jagged_flash_attention_basic(q, k, v, offsets, n, use_mask=use_mask, allow_tf32=False)
    expect = _fbgemm_loop(q, k, v, offsets, n, use_mask)
    _assert_close(out, expect, "fwd")
    assert torch.all(out[3 + 16 : 3 + 21] == 0)


def test_fbgemm_multi_head_semantics():
    lengths, n = [3, 0, 21], 16
    offsets = _offsets(lengths)
    q, k, v = (torch.randn(2, 24, 16) for _ in range(3))  # (H, T, D)
    out = multi_head_jagged_flash_attention(q, k, v, offsets, n, allow_tf32=False)
    assert out.shape == (2, 24, 16)
    for h in range(2):
        _assert_close(out[h], _fbgemm_loop(q[h], k[h], v[h], offsets, n, False), "fwd")


def test_fbgemm_jagged_dense_semantics_and_gradients():
    lengths, n, slots, dim = [3, 0, 20], 16, 2, 16
    offsets = _offsets(lengths)
    q = torch.randn(23, dim, requires_grad=True)
    k = torch.randn(3, dim, slots, requires_grad=True)
    v = torch.randn(23, dim, requires_grad=True)
    bias = torch.randn(3, n, slots, requires_grad=True)
    out = jagged_dense_flash_attention(q, k, v, bias, offsets, n, allow_tf32=False)
    expect = torch.zeros(3, slots, dim)
    for b in range(3):
        s = int(offsets[b])
        length = min(lengths[b], n)
        if length == 0:
            continue
        scores = q[s : s + length] @ k[b] + bias[b, :length]  # (L, S)
        expect[b] = torch.softmax(scores, dim=0).T @ v[s : s + length]
    _assert_close(out, expect, "fwd")
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v, bias), grad)
    want = torch.autograd.grad(expect, (q, k, v, bias), grad)
    for a, b in zip(got, want, strict=True):
        _assert_close(a, b, "grad")


def test_fbgemm_attention_matches_the_fbgemm_oracle():
    """Forward and backward against FBGEMM's own CPU ops (skipped without fbgemm-gpu-cpu)."""
    pytest.importorskip("fbgemm_gpu")
    import fbgemm_gpu.sll  # noqa: F401  (registers torch.ops.fbgemm.sll_*)

    ops = torch.ops.fbgemm
    offsets = _offsets([3, 0, 13, 1])  # FBGEMM's CPU mask path cannot truncate: lengths <= N
    for use_mask in (False, True):
        q, k, v = (torch.randn(17, 16, requires_grad=True) for _ in range(3))
        want = ops.sll_jagged_flash_attention_basic(q, k, v, offsets, 16, use_mask, False)
        got = jagged_flash_attention_basic(
            q, k, v, offsets, 16, use_mask=use_mask, allow_tf32=False
        )
        grad = torch.randn_like(want)
        _assert_close(got, want, "fwd")
        for a, b in zip(
            torch.autograd.grad(got, (q, k, v), grad),
            torch.autograd.grad(want, (q, k, v), grad),
            strict=True,
        ):
            _assert_close(a, b, "grad")
    q, v = torch.randn(17, 16, requires_grad=True), torch.randn(17, 16, requires_grad=True)
    k, bias = torch.randn(4, 16, 2, requires_grad=True), torch.randn(4, 16, 2, requires_grad=True)
    want = ops.sll_jagged_dense_flash_attention(q, k, v, bias, offsets, 16, False)
    got = jagged_dense_flash_attention(q, k, v, bias, offsets, 16, allow_tf32=False)
    _assert_close(got, want, "fwd")
    grad = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad(got, (q, k, v, bias), grad),
        torch.autograd.grad(want, (q, k, v, bias), grad),
        strict=True,
    ):
        _assert_close(a, b, "grad")


# ------------------------------------------------------------------------------ bad inputs


def _bad_calls():
    q = torch.randn(5, 2, 16)
    off = torch.tensor([0, 2, 5])
    return {
        "q not a tensor": lambda: jagged_flash_attention([1], q, q, off, 3),
        "q 2-D": lambda: jagged_flash_attention(q[:, 0], q, q, off, 3),
        "int dtype": lambda: jagged_flash_attention(q.long(), q.long(), q.long(), off, 3),
        "k dtype differs": lambda: jagged_flash_attention(q, q.double(), q, off, 3),
        "v shape differs": lambda: jagged_flash_attention(q, q, q[:4], off, 3),
        "head dim too small": lambda: jagged_flash_attention(
            q[..., :8], q[..., :8], q[..., :8], off, 3
        ),
        "head dim too large": lambda: jagged_flash_attention(
            *(torch.randn(5, 1, 512),) * 3, off, 3
        ),
        "offsets float": lambda: jagged_flash_attention(q, q, q, off.float(), 3),
        "offsets not starting at 0": lambda: jagged_flash_attention(
            q, q, q, torch.tensor([1, 2, 5]), 3
        ),
        "offsets decreasing": lambda: jagged_flash_attention(
            q, q, q, torch.tensor([0, 4, 3, 5]), 4
        ),
        "offsets end != T": lambda: jagged_flash_attention(q, q, q, torch.tensor([0, 2, 4]), 3),
        "max_seqlen too small": lambda: jagged_flash_attention(q, q, q, off, 2),
        "max_seqlen a tensor": lambda: jagged_flash_attention(q, q, q, off, torch.tensor(3)),
        "self-attention T_k != T_q": lambda: jagged_flash_attention(q, q[:4], q[:4], off, 3),
        "k_offsets batch differs": lambda: jagged_flash_attention(
            q, q, q, off, 3, k_offsets=torch.tensor([0, 5])
        ),
        "scale nan": lambda: jagged_flash_attention(q, q, q, off, 3, scale=float("nan")),
        "bias rows": lambda: jagged_flash_attention(q, q, q, off, 3, attn_bias=torch.randn(12, 2)),
        "bias heads": lambda: jagged_flash_attention(q, q, q, off, 3, attn_bias=torch.randn(13, 3)),
        "bias type": lambda: jagged_flash_attention(q, q, q, off, 3, attn_bias="x"),
        "relative table heads": lambda: jagged_flash_attention(
            q, q, q, off, 3, attn_bias=RelativeBias(torch.randn(4, 3), log_bucket_boundaries(4))
        ),
        "relative boundaries size": lambda: jagged_flash_attention(
            q, q, q, off, 3, attn_bias=RelativeBias(torch.randn(4, 2), log_bucket_boundaries(5))
        ),
        "relative timestamps size": lambda: jagged_flash_attention(
            q,
            q,
            q,
            off,
            3,
            attn_bias=RelativeBias(
                torch.randn(4, 2), log_bucket_boundaries(4), torch.zeros(4, dtype=torch.long)
            ),
        ),  # fmt: skip
        "backend": lambda: jagged_flash_attention(q, q, q, off, 3, backend="cuda"),
        "target q 3-D": lambda: jagged_target_attention(q, q, q, off, 3),
        "target batch differs": lambda: jagged_target_attention(
            torch.randn(3, 1, 2, 16), q, q, off, 3
        ),
        "buckets 0": lambda: log_bucket_boundaries(0),
    }


@pytest.mark.parametrize("name", list(_bad_calls()))
def test_bad_input_is_rejected_with_a_named_value_error(name):
    with pytest.raises(ValueError, match=r"^\w[\w.]*: expected"):
        _bad_calls()[name]()


# ------------------------------------------------------------------------------ GPU


def _lowp_check(fast, ref_lowp, ref_fp32):
    """flash-attention's rule: max|fast - ref32| <= 2 * max|ref_lowp - ref32| + 1e-5."""
    err = (fast.float() - ref_fp32.float()).abs().max().item()
    bound = LOWP_FACTOR * (ref_lowp.float() - ref_fp32.float()).abs().max().item() + LOWP_ABS
    assert err <= bound, f"error {err} > bound {bound}"


@pytest.mark.gpu
@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32], ids=lambda d: str(d)[6:]
)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dim", [64, 128, 256])
def test_gpu_matches_reference_realistic(dtype, causal, dim):
    _check_gpu_realistic(dtype, causal, dim)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("timestamps", ["minutes", "wide"])
def test_gpu_relative_bias_with_timestamps_matches_reference(dtype, timestamps):
    """Event times as the ranking model's (minutes, gaps of up to 4 hours: the kernels' closed
    form) and spread over +-2**50 (their per-boundary compares)."""
    _check_gpu_realistic(dtype, False, 64, timestamps)


def _check_gpu_realistic(dtype, causal, dim, timestamps=None):
    gen = torch.Generator().manual_seed(dim)
    lengths = torch.distributions.Exponential(1 / 150.0).sample((48,)).clamp(1, 600).long()
    lengths[3] = 0
    lengths[5] = 1
    lengths = lengths.tolist()
    offsets = _offsets(lengths, "cuda")
    total = sum(lengths)
    base = [torch.randn(total, 2, dim, generator=gen).cuda() for _ in range(3)]
    bias_table = torch.randn(16, 2, device="cuda")
    times = None
    if timestamps == "minutes":
        times = torch.randint(0, 240, (total,), generator=gen).cumsum(0).cuda()
    elif timestamps == "wide":
        times = torch.randint(-(2**50), 2**50, (total,), generator=gen).cuda()
    bias = RelativeBias(bias_table, log_bucket_boundaries(16, 256).cuda(), times)
    grad = torch.randn(total, 2, dim, device="cuda")

    def run(backend, dt, math_dtype=None):
        q, k, v = (t.to(dt).requires_grad_() for t in base)
        table = bias_table.clone().requires_grad_()
        b = RelativeBias(table, bias.boundaries, times)
        if backend == "triton":
            out = jagged_flash_attention(
                q, k, v, offsets, max(lengths), causal=causal, attn_bias=b, backend=backend
            )
        else:  # low-precision reference: the same math carried out in the input dtype
            out = ref.jagged_flash_attention(
                q, k, v, offsets, max(lengths), causal=causal, attn_bias=b, math_dtype=math_dtype
            )
        return [out, *torch.autograd.grad(out, (q, k, v, table), grad.to(dt))]

    fast = run("triton", dtype)
    ref32 = run("reference", torch.float32)
    if dtype == torch.float32:
        atol, rtol = ATTENTION_FP32["cuda"]["grad"]
        for a, b in zip(fast, ref32, strict=True):
            torch.testing.assert_close(a, b, atol=atol, rtol=rtol)
        return
    reflow = run("reference", dtype, math_dtype=dtype)
    for a, b, c in zip(fast, reflow, ref32, strict=True):
        _lowp_check(a, b, c)
