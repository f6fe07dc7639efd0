"""The one-pass backward (dK, dV and atomic dQ per key block) against the two-pass one.

Both are called through the launchers of shopml.jagged.triton (``SHOPML_ATTN_BWD`` picks the
variant), on the CPU interpreter with tiny shapes, and on the GPU with realistic ones.
"""

from __future__ import annotations

import math

import pytest
import torch
from cases import triton_device

from shopml.jagged.triton import attention_bwd
from shopml.jagged.triton.attention_bwd import _attn_bwd, _bwd_variant
from shopml.jagged.triton.attention_fwd import _attn_fwd


def _offsets(lengths, device):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=device)


def launcher_inputs(lengths_q, lengths_k, heads, dim, dtype, bias, device, seed=0):
    """Random inputs of the attention launchers: ``(q, k, v, do, qo, ko, extra, mq, mk, scale)``,
    ``extra`` = [bias, bias_offsets, table, bounds, tq, tk] for ``bias`` None/tensor/relative
    (boundaries for the launchers' general way)/consecutive (``consecutive=True``: the closed
    form)."""
    gen = torch.Generator().manual_seed(seed)
    tq, tk = sum(lengths_q), sum(lengths_k)
    mk = lambda t: torch.randn(t, heads, dim, generator=gen).to(device, dtype)  # noqa: E731
    q, k, v, do = mk(tq), mk(tk), mk(tk), mk(tq)
    qo, ko = _offsets(lengths_q, device), _offsets(lengths_k, device)
    extra = [None] * 6  # bias, bias_offsets, table, bounds, tq, tk
    if bias == "tensor":
        sizes = torch.tensor(lengths_q) * torch.tensor(lengths_k)
        extra[0] = torch.randn(int(sizes.sum()), heads, generator=gen).to(device)
        extra[1] = _offsets(sizes.tolist(), device)
    elif bias in ("relative", "consecutive"):  # the general way / the closed form (see below)
        extra[2] = torch.randn(9, heads, generator=gen).to(device)
        bounds = [-8, -4, -2, -1, 0, 1, 2, 4] if bias == "relative" else list(range(-4, 4))
        extra[3] = torch.tensor(bounds, device=device)
    return q, k, v, do, qo, ko, extra, max(lengths_q), max(lengths_k), 1.0 / math.sqrt(dim)


def _both(attn_switch, lengths_q, lengths_k, heads, dim, dtype, causal, bias, device, seed=0):
    """(fused, split) results of one forward + backward: [out, dq, dk, dv, dbias or dtable]."""
    q, k, v, do, qo, ko, extra, mq, mk_, scale = launcher_inputs(
        lengths_q, lengths_k, heads, dim, dtype, bias, device, seed
    )
    closed = bias == "consecutive"
    out, lse = _attn_fwd(
        q, k, v, qo, ko, *extra, mq, mk_, scale, 1.0, causal, False, True, consecutive=closed
    )
    results = []
    for variant in ("fused", "split"):
        attn_switch("SHOPML_ATTN_BWD", variant)
        grads = _attn_bwd(do, q, k, v, out, lse, qo, ko, *extra, mq, mk_, scale, 1.0, causal,
                          False, consecutive=closed)  # fmt: skip
        results.append([g for g in grads if g is not None])
    return results


@pytest.mark.parametrize(
    ("causal", "bias"),
    [(False, None), (True, "tensor"), (False, "relative"), (True, "consecutive")],
)
def test_fused_equals_split_on_tiny_shapes(attn_switch, causal, bias):
    device = triton_device()
    lengths_q = [0, 1, 17, 40, 5]
    fused, split = _both(
        attn_switch, lengths_q, lengths_q, 2, 16, torch.float32, causal, bias, device
    )
    for a, b in zip(fused, split, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_fused_cross_attention_and_unaligned_head_dim(attn_switch):
    device = triton_device()
    fused, split = _both(
        attn_switch, [3, 0, 20, 9], [40, 5, 0, 18], 1, 24, torch.float32, True, None, device
    )
    for a, b in zip(fused, split, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_variant_choice(attn_switch):
    q = torch.zeros(1, 1, 16)
    attn_switch("SHOPML_ATTN_BWD", "split")
    assert _bwd_variant(q, 64) == "split"
    attn_switch("SHOPML_ATTN_BWD", "fused")
    assert _bwd_variant(q, 256) == "fused"
    attn_switch("SHOPML_ATTN_BWD", "auto")
    assert _bwd_variant(q, 64) == "split"  # the default (measured faster on an H200)
    attn_switch("SHOPML_ATTN_BWD", "atomic")
    with pytest.raises(ValueError, match="SHOPML_ATTN_BWD: expected 'auto', 'fused' or 'split'"):
        _bwd_variant(q, 64)


def test_a_switch_is_read_once_and_kept_until_reread(monkeypatch):
    """No environment lookup per call: a change is seen after ``reread_settings()`` only."""
    from shopml.jagged.triton.attention_common import reread_settings

    q = torch.zeros(1, 1, 16)
    monkeypatch.setenv("SHOPML_ATTN_BWD", "fused")
    assert _bwd_variant(q, 64) == "fused"
    monkeypatch.setenv("SHOPML_ATTN_BWD", "split")
    assert _bwd_variant(q, 64) == "fused"
    reread_settings()
    assert _bwd_variant(q, 64) == "split"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_fused_equals_split(attn_switch, dtype, dim, causal):
    torch.manual_seed(dim)
    lengths = torch.distributions.Exponential(1 / 200.0).sample((64,)).clamp(1, 900).long()
    lengths[7] = 0
    lengths = lengths.tolist()
    bias = "relative" if causal else "consecutive"  # both ways of bucketing
    fused, split = _both(attn_switch, lengths, lengths, 2, dim, dtype, causal, bias, "cuda")
    for a, b in zip(fused, split, strict=True):
        scale = b.float().abs().max().item()
        err = (a.float() - b.float()).abs().max().item()
        # same math, another summation order (and, in 16 bits, dQ rounded once instead of per tile)
        assert err <= (2e-4 if dtype == torch.float32 else 2e-2) * max(scale, 1.0), (err, scale)


def test_the_fused_launcher_zeroes_its_accumulator_when_timing():
    assert attention_bwd._FUSED._tuner.reset == ("dq_ptr",)
