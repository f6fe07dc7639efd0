"""The Gluon backward prototype (attention_gluon_bwd.py, FA3's backward) against the reference and
the Triton backward. Needs an sm_90 GPU (the kernel is written for Hopper's wgmma and TMA)."""

from __future__ import annotations

import math

import pytest
import torch
from tolerances import assert_matches_reference

from shopml.jagged import attention_reference as ref
from shopml.jagged.triton.attention_bwd import _attn_bwd
from shopml.jagged.triton.attention_fwd import _attn_fwd

from .test_attention_gluon import CASES, CAUSAL_CASES, _inputs, _offsets, _sm90

pytestmark = pytest.mark.gpu

# launcher configurations (BLOCK_M, STAGES, NUM_WG, SPLIT_DQ, maxnreg, DQ_TMA) beside the default
CONFIGS = {
    "default": None,
    "one_warpgroup": (64, 2, 1, False, 168, False),  # 64 keys against 64 queries
    "no_split": (64, 2, 2, False, 168, False),  # each warpgroup adds a whole dQ_i
    "bm64_s3": (64, 3, 2, True, 168, False),
    "bm128": (128, 2, 2, True, 168, False),
    # dQ_i reduced by the copy engine from shared memory
    "tma_one_warpgroup": (64, 2, 1, False, 168, True),
    "tma_no_split": (64, 2, 2, False, 168, True),
    "tma": (64, 2, 2, True, 168, True),
    "tma_two_buffers": (64, 2, 2, True, 168, 2),
    # (several programs an SM, maxnreg under 168: refused by the launcher, see
    # test_attention_gluon.py's test_the_gluon_backward_refuses_its_occupancy_configurations)
}
# configurations tested at head dim 64 only: 128 query rows a block (FA3's D=64 tiles)
D64_ONLY = {"bm128"}
# (configuration, dtype): the default in both dtypes, the others in bfloat16; the simplest
# first, so that a first failure (``-x``) says which part broke
CONFIG_DTYPES = [
    ("one_warpgroup", torch.bfloat16),
    ("no_split", torch.bfloat16),
    ("tma_one_warpgroup", torch.bfloat16),
    ("tma_no_split", torch.bfloat16),
    ("tma", torch.bfloat16),
    ("tma", torch.float16),
    ("tma_two_buffers", torch.bfloat16),
    ("default", torch.bfloat16),
    ("default", torch.float16),
    ("bm64_s3", torch.bfloat16),
    ("bm128", torch.bfloat16),
]


def _grad_out(lengths, heads, dim, dtype, seed):  # noqa: ANN001, ANN202
    """A random dO ``(sum(lengths), heads, dim)`` on the GPU."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(sum(lengths), heads, dim, generator=gen).to("cuda", dtype)


def _reference_grads(q, k, v, do, qo, ko, mq, mk, scale, math_dtype, causal=False):  # noqa: ANN001, ANN202
    """(dq, dk, dv) of the reference in ``math_dtype`` (inputs cast to it), through autograd."""
    leaves = [t.detach().to(math_dtype).requires_grad_() for t in (q, k, v)]
    out = ref.jagged_flash_attention(*leaves, qo, mq, k_offsets=ko, max_seqlen_k=mk, scale=scale,
                                     causal=causal, math_dtype=math_dtype)  # fmt: skip
    out.backward(do.to(math_dtype))
    return [t.grad for t in leaves]


@pytest.mark.parametrize("dim", [64, 128])
@pytest.mark.parametrize(("case", "lengths_q", "lengths_k"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(
    ("config", "dtype"), CONFIG_DTYPES, ids=[f"{c}-{str(d)[6:]}" for c, d in CONFIG_DTYPES]
)
def test_gluon_backward_matches_reference(
    case, lengths_q, lengths_k, dim, dtype, config, attn_switch
):
    _sm90()
    attn_switch("SHOPML_ATTN_GLUON", "0")  # the helper's _attn_fwd, _attn_bwd: the Triton kernels
    if config in D64_ONLY and dim > 64:  # bm128: 263 KB of shared memory at D=128 (227 KB)
        pytest.skip("a head-dim-64 configuration (shared memory or registers)")
    _gluon_grads_match_reference(lengths_q, lengths_k, dim, dtype, config, False, seed=0)


def _gluon_grads_match_reference(lengths_q, lengths_k, dim, dtype, config, causal, seed):  # noqa: ANN001, ANN202
    """One forward (Triton) and the Gluon backward under ``config``: finite dq, dk, dv within the
    reference's contract, and (default config) within the Triton backward's; returns the
    gradients and the forward's lse. Inputs from ``seed``, dO from ``seed + 1``."""
    from shopml.jagged.triton import attention_gluon_bwd as glb

    lengths_k = lengths_k or lengths_q
    heads = 3
    q, k, v = _inputs(lengths_q, lengths_k, heads, dim, dtype, seed=seed)
    do = _grad_out(lengths_q, heads, dim, dtype, seed=seed + 1)
    qo, ko = _offsets(lengths_q), _offsets(lengths_k)
    mq, mk = max(lengths_q), max(lengths_k)
    scale = 1.0 / math.sqrt(dim)
    assert glb.gluon_bwd_ok(q, k, v, do, scale)
    out, lse = _attn_fwd(q, k, v, qo, ko, *[None] * 6, mq, mk, scale, 1.0, causal, False, True)
    grads = glb._attn_bwd_gluon(do, q, k, v, out, lse, qo, ko, mq, mk, scale,
                                config=CONFIGS[config], causal=causal)  # fmt: skip
    refs32 = _reference_grads(q, k, v, do, qo, ko, mq, mk, scale, torch.float32, causal=causal)
    refslow = _reference_grads(q, k, v, do, qo, ko, mq, mk, scale, dtype, causal=causal)
    for name, g, r32, rlow in zip("qkv", grads, refs32, refslow, strict=True):
        assert torch.isfinite(g).all(), f"d{name}: not finite"
        assert_matches_reference(g, r32, rlow, name=f"d{name}")
    if config == "default":  # the Triton backward on the same inputs: the same contract
        triton_grads = _attn_bwd(do, q, k, v, out, lse, qo, ko, *[None] * 6, mq, mk, scale, 1.0,
                                 causal, False)[:3]  # fmt: skip
        for g, t in zip(grads, triton_grads, strict=True):
            torch.testing.assert_close(g.float(), t.float(), atol=3e-2, rtol=3e-2)
    return grads, lse


# causal (id, query lengths, key lengths or None): the forward's cases (lengths around the 64-row
# blocks and 128-key tiles, cross attention with more keys, and with more queries: rows that see
# no key) and sequences with queries but no keys and keys but no queries
CAUSAL_BWD_CASES = [
    *CAUSAL_CASES,
    ("empty_sides", [0, 130, 0, 1, 64, 200], [129, 0, 1, 0, 200, 63]),
]
# causal (configuration, head dim, dtype): the default at both head dims in both dtypes; one
# warpgroup (atomic adds, the copy engine's reduction); each warpgroup a whole dQ_i; 128 query
# rows a block
CAUSAL_CONFIG_CASES = [
    ("default", 64, torch.bfloat16),
    ("default", 128, torch.bfloat16),
    ("default", 64, torch.float16),
    ("default", 128, torch.float16),
    ("one_warpgroup", 128, torch.bfloat16),
    ("tma_one_warpgroup", 64, torch.bfloat16),
    ("no_split", 64, torch.bfloat16),
    ("bm128", 64, torch.bfloat16),
]


@pytest.mark.parametrize(
    ("case", "lengths_q", "lengths_k"), CAUSAL_BWD_CASES, ids=[c[0] for c in CAUSAL_BWD_CASES]
)
@pytest.mark.parametrize(
    ("config", "dim", "dtype"),
    CAUSAL_CONFIG_CASES,
    ids=[f"{c}-d{d}-{str(t)[6:]}" for c, d, t in CAUSAL_CONFIG_CASES],
)
def test_gluon_causal_backward_matches_reference(
    case, lengths_q, lengths_k, config, dim, dtype, attn_switch
):
    """The causal mask (key j visible from query i iff j <= i + Lk - Lq): dq, dk, dv as the
    reference's (and the Triton backward's); rows that see no key (lse -inf) get dq exactly 0,
    keys without queries dk = dv = 0."""
    _sm90()
    attn_switch("SHOPML_ATTN_GLUON", "0")  # the helper's _attn_fwd, _attn_bwd: the Triton kernels
    grads, lse = _gluon_grads_match_reference(lengths_q, lengths_k, dim, dtype, config, True,
                                              seed=2)  # fmt: skip
    blind = torch.isneginf(lse)  # (T_q, H): rows that see no key
    if case == "more_queries":
        assert blind.any()
    assert torch.all(grads[0][blind] == 0)
    pairs = zip(lengths_q, lengths_k or lengths_q, strict=True)
    no_queries = torch.cat([torch.full((lk,), lq == 0) for lq, lk in pairs]).cuda()  # key rows
    assert torch.all(grads[1][no_queries] == 0) and torch.all(grads[2][no_queries] == 0)


# a batch whose grid keeps every SM busy with several programs at once (the cases above launch
# fewer programs than an H200 has SMs, so there configurations of 2-3 programs an SM never share
# one); lengths 1-1024
MANY = torch.randint(1, 1025, (128,), generator=torch.Generator().manual_seed(5)).tolist()


def _many_programs_match_triton(config: str, causal: bool) -> None:
    """Many programs an SM (B=128, H=2, D=64, about 2000 live key blocks): finite gradients
    within the default's contract of the Triton backward's."""
    from shopml.jagged.triton import attention_gluon_bwd as glb

    heads, dim = 2, 64
    q, k, v = _inputs(MANY, MANY, heads, dim, torch.bfloat16, seed=5)
    do = _grad_out(MANY, heads, dim, torch.bfloat16, seed=6)
    qo = _offsets(MANY)
    n = max(MANY)
    scale = dim**-0.5
    out, lse = _attn_fwd(q, k, v, qo, qo, *[None] * 6, n, n, scale, 1.0, causal, False, True)
    grads = glb._attn_bwd_gluon(do, q, k, v, out, lse, qo, qo, n, n, scale,
                                config=CONFIGS[config], causal=causal)  # fmt: skip
    triton_grads = _attn_bwd(do, q, k, v, out, lse, qo, qo, *[None] * 6, n, n, scale, 1.0, causal,
                             False)[:3]  # fmt: skip
    for name, g, t in zip("qkv", grads, triton_grads, strict=True):
        assert torch.isfinite(g).all(), f"d{name}: not finite"
        torch.testing.assert_close(g.float(), t.float(), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("config", ["default", "tma_one_warpgroup"])
def test_gluon_backward_many_programs_match_triton(config, attn_switch):
    _sm90()
    attn_switch("SHOPML_ATTN_GLUON", "0")  # the helper's _attn_fwd, _attn_bwd: the Triton kernels
    _many_programs_match_triton(config, causal=False)


def test_gluon_causal_backward_many_programs_match_triton(attn_switch):
    """As above, causal: programs of the same sequence run different counts of query blocks."""
    _sm90()
    attn_switch("SHOPML_ATTN_GLUON", "0")
    _many_programs_match_triton("default", causal=True)


def test_switch_routes_the_backward_and_keeps_the_contract(monkeypatch, attn_switch):
    """``SHOPML_ATTN_GLUON=1``: the bias-free backward, causal or not, goes through the Gluon
    kernel, post_scale and a max_seqlen below the longest sequence (key rows past it 0 with
    zero_init) included."""
    _sm90()
    from shopml.jagged.triton import attention_gluon_bwd as glb

    calls = []
    original = glb._attn_bwd_gluon

    def counted(*args):  # noqa: ANN002, ANN202
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(glb, "_attn_bwd_gluon", counted)
    lengths = [300, 0, 70, 1]
    q, k, v = _inputs(lengths, lengths, 2, 64, torch.bfloat16, seed=1)
    do = _grad_out(lengths, 2, 64, torch.bfloat16, seed=2)
    qo = _offsets(lengths)
    scale, post = 0.125, 0.5
    for causal in (False, True):
        attn_switch("SHOPML_ATTN_GLUON", "0")
        out, lse = _attn_fwd(q, k, v, qo, qo, *[None] * 6, 256, 256, scale, post, causal, False,
                             True)  # fmt: skip
        results = []
        for value in ("1", "0"):
            attn_switch("SHOPML_ATTN_GLUON", value)
            results.append(_attn_bwd(do, q, k, v, out, lse, qo, qo, *[None] * 6, 256, 256, scale,
                                     post, causal, False)[:3])  # fmt: skip
        assert len(calls) == 1 + causal
        for g, t in zip(*results, strict=True):
            torch.testing.assert_close(g.float(), t.float(), atol=3e-2, rtol=3e-2)
        for g in results[0]:
            assert torch.all(g[256:300] == 0)


def test_public_function_gradients_through_gluon(attn_switch):
    """Forward and backward of the public op with the switch on: the reference's gradients on
    a jagged batch with an empty sequence and lengths off the tiles."""
    _sm90()
    from shopml.jagged.attention import jagged_flash_attention

    attn_switch("SHOPML_ATTN_GLUON", "1")
    lengths = [0, 129, 1, 63, 700, 64, 65]
    q, k, v = _inputs(lengths, lengths, 4, 128, torch.bfloat16, seed=3)
    do = _grad_out(lengths, 4, 128, torch.bfloat16, seed=4)
    qo = _offsets(lengths)
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    jagged_flash_attention(*leaves, qo, max(lengths)).backward(do)
    scale = 128**-0.5
    n = max(lengths)
    refs32 = _reference_grads(q, k, v, do, qo, qo, n, n, scale, torch.float32)
    refslow = _reference_grads(q, k, v, do, qo, qo, n, n, scale, torch.bfloat16)
    for name, leaf, r32, rlow in zip("qkv", leaves, refs32, refslow, strict=True):
        assert_matches_reference(leaf.grad, r32, rlow, name=f"d{name}")
