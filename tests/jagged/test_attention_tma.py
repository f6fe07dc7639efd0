"""The Hopper path of the attention kernels (tensor-descriptor loads) against the pointer path.

``SHOPML_ATTN_TMA=1`` forces the Hopper path, also in the CPU interpreter (which emulates the
descriptors: zeros past a sequence's end, nothing written there); ``0`` forces the pointer path.
On the GPU the Hopper path is the default on sm_90 and newer.
"""

from __future__ import annotations

import pytest
import torch
from cases import triton_device

from shopml.common.devices import has_cuda
from shopml.jagged.triton import attention_bwd, attention_fwd
from shopml.jagged.triton.attention_bwd import _attn_bwd
from shopml.jagged.triton.attention_common import _tma_mode, _tma_ok
from shopml.jagged.triton.attention_fwd import _attn_fwd

from .test_attention_bwd import launcher_inputs

_TMA_LAUNCHERS = ("_FWD_TMA", "_DQ_TMA", "_DKDV_TMA")


def _count_tma_launches(monkeypatch) -> dict[str, int]:
    """Counts the launches that go through the Hopper path's launchers (bound ones too)."""
    counts = dict.fromkeys(_TMA_LAUNCHERS, 0)

    class Counted:
        def __init__(self, name: str, launch) -> None:  # noqa: ANN001
            self.name, self.launch = name, launch

        def __call__(self, *args):  # noqa: ANN002, ANN204
            counts[self.name] += 1
            return self.launch(*args)

        def bind(self, *args):  # noqa: ANN002, ANN202
            return Counted(self.name, self.launch.bind(*args))

    for name in _TMA_LAUNCHERS:
        module = attention_fwd if name == "_FWD_TMA" else attention_bwd
        monkeypatch.setattr(module, name, Counted(name, getattr(module, name)))
    return counts


def _run(lengths_q, lengths_k, heads, dim, dtype, causal, bias, device, seed=0):
    """[out, lse, dq, dk, dv, dbias or dtable] of one forward + backward (launchers directly)."""
    q, k, v, do, qo, ko, extra, mq, mk_, scale = launcher_inputs(
        lengths_q, lengths_k, heads, dim, dtype, bias, device, seed
    )
    closed = bias == "consecutive"  # the closed-form buckets (see launcher_inputs)
    out, lse = _attn_fwd(
        q, k, v, qo, ko, *extra, mq, mk_, scale, 1.0, causal, False, False, consecutive=closed
    )
    grads = _attn_bwd(do, q, k, v, out, lse, qo, ko, *extra, mq, mk_, scale, 1.0, causal, False,
                      consecutive=closed)  # fmt: skip
    return [out, lse, *(g for g in grads if g is not None)]


def _both(monkeypatch, attn_switch, *args):
    """(Hopper path, pointer path) results; checks that the first really took the Hopper path."""
    counts = _count_tma_launches(monkeypatch)
    attn_switch("SHOPML_ATTN_TMA", "1")
    tma = _run(*args)
    assert all(n == 1 for n in counts.values()), counts
    attn_switch("SHOPML_ATTN_TMA", "0")
    ptr = _run(*args)
    assert all(n == 1 for n in counts.values()), counts
    return tma, ptr


@pytest.mark.parametrize(
    ("lengths_q", "lengths_k", "dim", "causal", "bias"),
    [
        ([0, 1, 17, 40, 5], None, 16, False, None),
        ([0, 1, 17, 40, 5], None, 16, True, "tensor"),
        ([33, 2, 20], None, 24, True, "relative"),  # head dim not a power of two
        ([33, 2, 20], None, 16, False, "consecutive"),
        ([3, 0, 20, 9], [40, 5, 0, 18], 16, True, None),  # cross attention, empty sides
    ],
)
def test_hopper_path_equals_pointer_path_on_tiny_shapes(
    monkeypatch, attn_switch, lengths_q, lengths_k, dim, causal, bias
):
    device = triton_device()
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    tma, ptr = _both(
        monkeypatch,
        attn_switch,
        lengths_q,
        lengths_k or lengths_q,
        2,
        dim,
        dtype,
        causal,
        bias,
        device,
    )
    for a, b in zip(tma, ptr, strict=True):
        torch.testing.assert_close(a.float(), b.float(), atol=tol, rtol=tol)


def test_which_inputs_take_the_hopper_path(attn_switch):
    x = torch.zeros(10, 2, 64)
    attn_switch("SHOPML_ATTN_TMA", "0")
    assert not _tma_ok(64, x)
    attn_switch("SHOPML_ATTN_TMA", "auto")
    assert not _tma_ok(64, x)  # a CPU tensor: forced only
    attn_switch("SHOPML_ATTN_TMA", "1")
    assert _tma_ok(64, x, x.to(torch.bfloat16))
    assert not _tma_ok(20, torch.zeros(10, 2, 20))  # head dim not a multiple of 8
    assert not _tma_ok(256, torch.zeros(10, 2, 256))  # head dim above 128
    assert not _tma_ok(64, x, torch.zeros(1281)[1:].view(10, 2, 64))  # base off 16 bytes
    assert not _tma_ok(64, x, torch.zeros(10, 2, 66)[:, :, :64])  # rows off 16 bytes
    assert not _tma_ok(64, torch.zeros(10, 2, 64, dtype=torch.float64))
    assert not _tma_ok(64, torch.zeros(10, 64, 2).transpose(1, 2))  # last dim strided
    attn_switch("SHOPML_ATTN_TMA", "yes")
    with pytest.raises(ValueError, match="SHOPML_ATTN_TMA: expected 'auto', '0' or '1'"):
        _tma_mode()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_hopper_path_equals_pointer_path(monkeypatch, attn_switch, dtype, dim, causal):
    if not has_cuda() or torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the Hopper path needs sm_90 or newer")
    torch.manual_seed(dim)
    lengths = torch.distributions.Exponential(1 / 200.0).sample((64,)).clamp(1, 900).long()
    lengths[7] = 0
    lengths[9] = 1
    lengths = lengths.tolist()
    bias = "relative" if causal else "consecutive"  # both ways of bucketing
    tma, ptr = _both(
        monkeypatch, attn_switch, lengths, lengths, 2, dim, dtype, causal, bias, "cuda"
    )
    for a, b in zip(tma, ptr, strict=True):
        finite = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a), finite)  # lse = -inf exactly where no key is seen
        scale = b[finite].float().abs().max().item()
        err = (a[finite].float() - b[finite].float()).abs().max().item()
        # same math, other tiles (another summation order, P rounded per tile)
        assert err <= 2e-2 * max(scale, 1.0), (err, scale)
