"""The single tolerance table of the jagged tests (kernels vs. the PyTorch reference).

- float32: interpreter and GPU run fp32 ``tl.dot`` in IEEE mode (no TF32), so only summation
  order differs from the reference: a few ulps, scaled by the reduction length on GPU shapes.
- float64: references under ``gradcheck``.
- float16 / bfloat16: flash-attention's rule,
  ``max|fast - ref_fp32| <= LOWP_FACTOR * max|ref_lowp - ref_fp32| + LOWP_ABS``,
  where ``ref_lowp`` is the reference run on the low-precision inputs.
"""

from __future__ import annotations

import torch

FP32 = {"cpu": {"atol": 1e-5, "rtol": 1e-5}, "cuda": {"atol": 2e-4, "rtol": 2e-4}}
FP64 = {"atol": 1e-7, "rtol": 1e-7}
LOWP_FACTOR = 2.0
LOWP_ABS = 1e-5
GRADCHECK = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-4}


def assert_matches_reference(
    fast: torch.Tensor,
    ref_fp32: torch.Tensor,
    ref_lowp: torch.Tensor | None = None,
    *,
    name: str = "output",
) -> None:
    """Check a kernel result against the fp32 reference with the table's rule for its dtype."""
    assert fast.shape == ref_fp32.shape, (
        f"{name}: shape {tuple(fast.shape)} != {tuple(ref_fp32.shape)}"
    )
    assert fast.dtype == (ref_lowp.dtype if ref_lowp is not None else ref_fp32.dtype), name
    if fast.dtype in (torch.float16, torch.bfloat16):
        assert ref_lowp is not None
        err = (fast.float() - ref_fp32.float()).abs().max().item() if fast.numel() else 0.0
        base = (ref_lowp.float() - ref_fp32.float()).abs().max().item() if fast.numel() else 0.0
        assert err <= LOWP_FACTOR * base + LOWP_ABS, (
            f"{name}: max error {err} > 2 * {base} + {LOWP_ABS}"
        )
        return
    if fast.dtype == torch.float64:
        torch.testing.assert_close(fast, ref_fp32, **FP64, msg=lambda m: f"{name}: {m}")
        return
    tol = FP32["cuda" if fast.is_cuda else "cpu"]
    if fast.is_floating_point():
        torch.testing.assert_close(fast, ref_fp32, **tol, msg=lambda m: f"{name}: {m}")
    else:
        assert torch.equal(fast, ref_fp32), name


# jagged flash attention (tests/jagged/test_attention.py, test_modules.py): fp32 (atol, rtol) of
# the output/lse and of the gradients (longer reductions: dK, dV sum over all queries); on CUDA
# the fp32 path is IEEE too but reductions run over hundreds of keys.
ATTENTION_FP32 = {
    "cpu": {"fwd": (2e-5, 1e-5), "grad": (1e-4, 1e-4)},
    "cuda": {"fwd": (2e-3, 2e-3), "grad": (2e-3, 2e-3)},
}
