"""The Gluon forward prototype (attention_gluon.py, FA3's pipeline) against the reference and
the Triton forward. Needs an sm_90 GPU (the kernel is written for Hopper's wgmma and TMA), except
the 64-row tile numbering of OWN_TILES (a Triton kernel: also in the CPU interpreter)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from tolerances import assert_matches_reference

from shopml.common.devices import has_cuda, is_interpreter
from shopml.jagged import attention_reference as ref
from shopml.jagged.triton.attention_fwd import _attn_fwd


def _sm90() -> None:
    """Skip unless an sm_90 GPU is here (checked at run time, never at import)."""
    if not has_cuda() or torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("needs an sm_90 GPU")


def _offsets(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda")


def _inputs(lengths_q, lengths_k, heads, dim, dtype, seed=0):  # noqa: ANN001, ANN202
    gen = torch.Generator().manual_seed(seed)
    mk = lambda t: torch.randn(t, heads, dim, generator=gen).to("cuda", dtype)  # noqa: E731
    return mk(sum(lengths_q)), mk(sum(lengths_k)), mk(sum(lengths_k))


def _assert_lse(fast: torch.Tensor, reference: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(fast), torch.isinf(reference))
    finite = ~torch.isinf(reference)
    torch.testing.assert_close(fast[finite], reference[finite].float(), atol=2e-3, rtol=2e-3)


def _count_gluon_launches(monkeypatch) -> dict[str, int]:  # noqa: ANN001
    """Counts the Gluon forward's and backward's launches (``{"fwd": n, "bwd": n}``), not the
    calls of the first call's dry run (``launch.collecting``: recording compiles)."""
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb
    from shopml.jagged.triton.launch import dry_run

    calls = {"fwd": 0, "bwd": 0}
    for mod, name, key in ((glu, "_attn_fwd_gluon", "fwd"), (glb, "_attn_bwd_gluon", "bwd")):
        original = getattr(mod, name)

        def counted(*args, _original=original, _key=key):  # noqa: ANN002, ANN202
            calls[_key] += not dry_run()
            return _original(*args)

        monkeypatch.setattr(mod, name, counted)
    return calls


def _public_gradients_match_reference(lengths_q, lengths_k, dim, seed, causal=False):  # noqa: ANN001
    """The public op's forward+backward (bf16, 2 heads) against the fp32 reference's
    gradients."""
    from shopml.jagged.attention import jagged_flash_attention

    q, k, v = _inputs(lengths_q, lengths_k, 2, dim, torch.bfloat16, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    do = torch.randn(sum(lengths_q), 2, dim, generator=gen).to("cuda", torch.bfloat16)
    qo, ko = _offsets(lengths_q), _offsets(lengths_k)
    kw = dict(k_offsets=ko, max_seqlen_k=max(lengths_k), causal=causal)
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    jagged_flash_attention(*leaves, qo, max(lengths_q), **kw).backward(do)
    ref_leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref.jagged_flash_attention(*ref_leaves, qo, max(lengths_q), scale=dim**-0.5,
                               **kw).backward(do.float())  # fmt: skip
    for leaf, r in zip(leaves, ref_leaves, strict=True):
        torch.testing.assert_close(leaf.grad.float(), r.grad, atol=3e-2, rtol=3e-2)


# (id, query lengths, key lengths or None for self-attention): empty and length-1 sequences,
# lengths at and around the 64-row / 128-key tiles, one long sequence among short ones, cross
# attention with sequences that have queries but no keys
CASES = [
    ("empty_and_len1", [0, 1, 3, 0, 1, 0, 2], None),
    ("all_equal", [256] * 6, None),
    ("not_block_multiple", [33, 17, 1, 129, 255, 63, 64, 65, 127, 128], None),
    ("one_long", [2, 1500, 1, 3, 17, 5], None),
    ("cross", [3, 0, 200, 90, 7], [400, 5, 0, 130, 1]),
    # more 64-row tiles than the SMs hold programs: persistent programs walk several (run
    # under the persistent configurations only, see _walks_tiles)
    ("many_tiles", [(37 * i) % 301 for i in range(320)], None),
]


# launcher configurations (BLOCK_N, STAGES, NUM_WG, PINGPONG, PERSISTENT, OWN_TILES, maxnreg)
# beside the default, and their head dims (own tiles: a K/V ring a warpgroup, so the larger ones
# fit shared memory at D=64 only)
CONFIGS = {
    "default": (None, (64, 128)),  # CONFIGS (long sequences)
    "persistent": ((128, 2, 2, True, True, False, 168), (64, 128)),
    "no_pingpong": ((128, 2, 2, False, False, False, 168), (64, 128)),
    "one_warpgroup": ((128, 2, 1, False, False, False, 128), (64, 128)),
    "bn64": ((64, 3, 2, True, False, False, 168), (64, 128)),
    "three_warpgroups": ((64, 3, 3, False, False, False, 128), (64, 128)),
    "own_one_bn64_r80": ((64, 2, 1, False, False, True, 80), (64,)),  # SHORT_CONFIGS[64]
    "own_pingpong": ((64, 2, 2, True, False, True, 168), (64, 128)),
    "own_pingpong_bn128": ((128, 2, 2, True, False, True, 168), (64,)),
    "own_three": ((64, 3, 3, False, False, True, 128), (64,)),
    "own_one": ((128, 2, 1, False, False, True, 128), (64,)),
    "own_one_bn64": ((64, 3, 1, False, False, True, 128), (64, 128)),  # SHORT_CONFIGS[128]
    # persistent walks of the 64-row numbering: two and three programs an SM
    "own_one_persistent": ((64, 2, 1, False, True, True, 128), (64, 128)),
    "own_one_persistent_r80": ((64, 2, 1, False, True, True, 80), (64,)),
}


def _walks_tiles(case: str, config: str) -> None:
    """Skips the many-tile cases (320 sequences) but under persistent configurations: the
    others launch a program a tile, which the shorter cases already cover."""
    walks = CONFIGS[config][0] is not None and CONFIGS[config][0][4]
    if case.endswith("many_tiles") and not walks:
        pytest.skip("many tiles: persistent configurations only")


# (configuration, dtype, head dim): the default in both dtypes, the others in bfloat16
CONFIG_CASES = [
    (name, dtype, dim)
    for name, (_, dims) in CONFIGS.items()
    for dtype in ((torch.bfloat16, torch.float16) if name == "default" else (torch.bfloat16,))
    for dim in dims
]


@pytest.mark.gpu
@pytest.mark.parametrize(("case", "lengths_q", "lengths_k"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize(
    ("config", "dtype", "dim"), CONFIG_CASES,
    ids=[f"{c}-{str(t)[6:]}-d{d}" for c, t, d in CONFIG_CASES],
)  # fmt: skip
def test_gluon_forward_matches_reference(
    case, lengths_q, lengths_k, dim, dtype, config, attn_switch
):
    _sm90()
    _walks_tiles(case, config)
    attn_switch("SHOPML_ATTN_GLUON", "0")  # _attn_fwd below: the Triton forward
    from shopml.jagged.triton import attention_gluon as glu

    lengths_k = lengths_k or lengths_q
    heads = 3
    q, k, v = _inputs(lengths_q, lengths_k, heads, dim, dtype)
    qo, ko = _offsets(lengths_q), _offsets(lengths_k)
    mq, mk = max(lengths_q), max(lengths_k)
    scale = 1.0 / math.sqrt(dim)
    assert glu.gluon_ok(q, k, v, scale)
    out, lse = glu._attn_fwd_gluon(q, k, v, qo, ko, mq, mk, scale, 1.0, config=CONFIGS[config][0])
    kw = dict(k_offsets=ko, max_seqlen_k=mk, scale=scale, return_lse=True)
    ref32, lse32 = ref.jagged_flash_attention(q.float(), k.float(), v.float(), qo, mq, **kw)
    reflow, _ = ref.jagged_flash_attention(q, k, v, qo, mq, math_dtype=dtype, **kw)
    assert_matches_reference(out, ref32, reflow)
    _assert_lse(lse, lse32)
    # the Triton forward on the same inputs: the same contract
    out_t, lse_t = _attn_fwd(q, k, v, qo, ko, *[None] * 6, mq, mk, scale, 1.0, False, False, False)
    torch.testing.assert_close(out.float(), out_t.float(), atol=2e-2, rtol=2e-2)
    _assert_lse(lse, lse_t)


# causal (id, query lengths, key lengths or None for self-attention): lengths around the 64-row
# and 64/128-key tiles, where the diagonal cuts blocks; cross attention with more keys than
# queries, and with more queries than keys (the first Lq - Lk rows see no key: whole tiles of
# them and tiles cut by that boundary), an empty key sequence among them
CAUSAL_CASES = [
    ("self", [0, 1, 3, 63, 64, 65, 127, 128, 129, 200, 300], None),
    ("self_one_long", [2, 1500, 1, 17], None),
    ("more_keys", [3, 100, 64, 130, 1], [400, 260, 200, 131, 64]),
    ("more_queries", [300, 200, 65, 5, 130, 2, 190], [10, 70, 0, 1, 129, 3, 64]),
    ("self_many_tiles", [(37 * i) % 301 for i in range(320)], None),
]
# (configuration, head dim): every tiling in bfloat16 (the warpgroups sharing a tile, with and
# without ping-pong and persistence, 64- and 128-key blocks; warpgroups of their own tiles)
CAUSAL_CONFIG_CASES = [(name, dim) for name, (_, dims) in CONFIGS.items() for dim in dims]


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("case", "lengths_q", "lengths_k"), CAUSAL_CASES, ids=[c[0] for c in CAUSAL_CASES]
)
@pytest.mark.parametrize(
    ("config", "dim"), CAUSAL_CONFIG_CASES, ids=[f"{c}-d{d}" for c, d in CAUSAL_CONFIG_CASES]
)
def test_gluon_causal_forward_matches_reference(
    case, lengths_q, lengths_k, dim, config, attn_switch
):
    """The causal mask (key j visible from query i iff j <= i + Lk - Lq): output and lse as
    the reference's and the Triton forward's; rows that see no key output exactly 0 with lse
    -inf."""
    _sm90()
    _walks_tiles(case, config)
    attn_switch("SHOPML_ATTN_GLUON", "0")  # _attn_fwd below: the Triton forward
    from shopml.jagged.triton import attention_gluon as glu

    lengths_k = lengths_k or lengths_q
    dtype, heads = torch.bfloat16, 3
    q, k, v = _inputs(lengths_q, lengths_k, heads, dim, dtype, seed=2)
    qo, ko = _offsets(lengths_q), _offsets(lengths_k)
    mq, mk = max(lengths_q), max(lengths_k)
    scale = 1.0 / math.sqrt(dim)
    assert glu.gluon_ok(q, k, v, scale)
    out, lse = glu._attn_fwd_gluon(q, k, v, qo, ko, mq, mk, scale, 1.0,
                                   config=CONFIGS[config][0], causal=True)  # fmt: skip
    kw = dict(k_offsets=ko, max_seqlen_k=mk, scale=scale, causal=True, return_lse=True)
    ref32, lse32 = ref.jagged_flash_attention(q.float(), k.float(), v.float(), qo, mq, **kw)
    reflow, _ = ref.jagged_flash_attention(q, k, v, qo, mq, math_dtype=dtype, **kw)
    assert_matches_reference(out, ref32, reflow)
    _assert_lse(lse, lse32)
    blind = torch.isneginf(lse32)  # rows that see no key
    if case == "more_queries":
        assert blind.any()
    assert torch.all(out[blind] == 0)
    out_t, lse_t = _attn_fwd(q, k, v, qo, ko, *[None] * 6, mq, mk, scale, 1.0, True, False, False)
    torch.testing.assert_close(out.float(), out_t.float(), atol=2e-2, rtol=2e-2)
    _assert_lse(lse, lse_t)


@pytest.mark.gpu
def test_causal_gradients_through_both_gluon_kernels(monkeypatch, attn_switch):
    """``SHOPML_ATTN_GLUON=1``, causal: the forward and the backward run through the Gluon
    kernels; the gradients match the reference's, cross attention with rows that see no key
    included."""
    _sm90()
    calls = _count_gluon_launches(monkeypatch)
    attn_switch("SHOPML_ATTN_GLUON", "1")
    _public_gradients_match_reference([300, 70, 1, 129], [200, 130, 0, 129], 128, seed=7,
                                      causal=True)  # fmt: skip
    assert calls == {"fwd": 1, "bwd": 1}


@pytest.mark.gpu
def test_switch_routes_the_forward_and_keeps_the_contract(monkeypatch, attn_switch):
    """``SHOPML_ATTN_GLUON=1``: the bias-free forward, causal or not, goes through the Gluon
    kernel, post_scale, zero_init and a max_seqlen below the longest sequence (rows past it
    untouched) included."""
    _sm90()
    from shopml.jagged.triton import attention_gluon as glu

    calls = []
    original = glu._attn_fwd_gluon

    def counted(*args):  # noqa: ANN002, ANN202
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(glu, "_attn_fwd_gluon", counted)
    lengths = [300, 0, 70, 1]
    q, k, v = _inputs(lengths, lengths, 2, 64, torch.bfloat16, seed=1)
    qo = _offsets(lengths)
    scale, post = 0.125, 0.5
    for causal in (False, True):
        results = []
        for value in ("1", "0"):
            attn_switch("SHOPML_ATTN_GLUON", value)
            results.append(_attn_fwd(q, k, v, qo, qo, *[None] * 6, 256, 256, scale, post,
                                     causal, False, True))  # fmt: skip
        assert len(calls) == 1 + causal
        (out_g, lse_g), (out_t, lse_t) = results
        torch.testing.assert_close(out_g.float(), out_t.float(), atol=2e-2, rtol=2e-2)
        _assert_lse(lse_g, lse_t)
        assert torch.all(out_g[256:300] == 0) and torch.all(torch.isneginf(lse_g[256:300]))


@pytest.mark.parametrize(
    ("lengths", "lead", "tail", "max_seqlen"),
    [
        ([0, 1, 3, 0, 1, 0, 2, 129, 64], 0, 0, 129),
        ([64, 128, 63, 65, 1, 0, 300], 5, 70, 300),  # rows before and after the samples
        ([300, 17, 250], 0, 0, 200),  # max_seqlen below the longest: its rows past it skipped
        ([0, 0], 0, 3, 0),
    ],
)
def test_own_tiles_numbering_covers_every_row_block_once(lengths, lead, tail, max_seqlen):
    """OWN_TILES' 64-row tile numbering: slot ``q_offsets[b] // 64 + b + g`` of the table from
    ``_tile_samples`` names sample b, and ``_own_tile``'s rule (the g-th block is live when
    ``0 <= 64 g < min(length, max_seqlen)``) finds every 64-row block of every sample in exactly
    one slot. The table kernel runs on the GPU or in the CPU interpreter."""
    if not has_cuda() and not is_interpreter():
        pytest.skip("needs a GPU or TRITON_INTERPRET=1")
    from shopml.jagged.triton import attention_gluon as glu

    dev = "cuda" if has_cuda() and not is_interpreter() else "cpu"
    offsets = torch.tensor([lead, *(lead + torch.tensor(lengths).cumsum(0)).tolist()], device=dev)
    total = lead + sum(lengths) + tail
    table = glu._tile_samples(offsets, total).tolist()
    assert len(table) == total // 64 + len(lengths)
    off = offsets.tolist()
    found = []
    # the kernel's numbering ends at offsets[B] // 64 + B (= T // 64 + B when the offsets end at
    # T, as the public op checks): rows after the last sample have no slot
    for slot, b in enumerate(table[: off[-1] // 64 + len(lengths)]):
        assert 0 <= b < len(lengths)
        m_start = (slot - off[b] // 64 - b) * 64
        if 0 <= m_start < min(lengths[b], max_seqlen):
            found.append((b, m_start))
    expected = [(b, m) for b, n in enumerate(lengths) for m in range(0, min(n, max_seqlen), 64)]
    assert sorted(found) == expected


class _FakeCuda:
    """What ``gluon_ok`` reads of a packed bf16 ``(T, H, D)`` CUDA tensor, on the CPU."""

    is_cuda = True
    dtype = torch.bfloat16
    device = SimpleNamespace(index=0)

    def __init__(self, *shape: int) -> None:
        self.shape = shape

    def stride(self, dim: int) -> int:
        return (self.shape[1] * self.shape[2], self.shape[2], 1)[dim]

    def element_size(self) -> int:
        return 2

    def data_ptr(self) -> int:
        return 1 << 20


def test_auto_routing_takes_the_measured_faster_kernels(monkeypatch, attn_switch):
    """``SHOPML_ATTN_GLUON=auto`` (the default): the Gluon forward from 2^24 query values for
    sequences longer than 256 rows (own 64-row tiles for short mean lengths, whole tiles of a
    sample for long ones; at D=128 also shorter ones from 3 x 2^23 values), the Gluon backward
    at D=128 from a mean of 64 rows (sequences of at most 256 rows from 2^25 values) and at
    D=64 from a mean of 512 rows (longer sequences only); ``1`` takes them everywhere they can
    run; nothing Gluon off sm_90 or with a bias. Causal calls: the same rules."""
    from shopml.jagged.triton import attention_common
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb
    from shopml.jagged.triton.attention_common import _gluon_mode

    def q(total: int, dim: int) -> torch.Tensor:
        return torch.empty(total, 2, dim, device="meta")

    assert glu.auto_config(q(1024 * 110, 64), 1024, 256) is None  # Triton: less host work
    assert glu.auto_config(q(1024 * 110, 64), 1024, 256, forced=True) == glu.SHORT_CONFIGS[64]
    assert glu.auto_config(q(256 * 400, 64), 256, 4096) is None  # under 2^24 values
    assert glu.auto_config(q(256 * 400, 64), 256, 4096, forced=True) == glu.SHORT_CONFIGS[64]
    assert glu.auto_config(q(1024 * 256, 64), 1024, 1024) == glu.SHORT_CONFIGS[64]
    assert glu.auto_config(q(256 * 2600, 64), 256, 4096) == glu.CONFIGS[64]
    assert glu.auto_config(q(1024 * 256, 128), 1024, 1024) == glu.SHORT_CONFIGS[128]
    assert glu.auto_config(q(256 * 2600, 128), 256, 4096) == glu.CONFIGS[128]
    for d in (64, 128):  # own tiles when short, whole tiles of a sample when long
        assert glu.SHORT_CONFIGS[d][5] and not glu.CONFIGS[d][5]
    # sequences of at most 256 rows: Gluon at D=128 from 3 x 2^23 values (never at D=64)
    assert glu.auto_config(q(1024 * 160, 128), 1024, 256) == glu.SHORT_CONFIGS[128]
    assert glu.auto_config(q(1024 * 90, 128), 1024, 256) is None  # under 3 x 2^23 values
    assert glu.auto_config(q(1024 * 90, 128), 1024, 257) == glu.SHORT_CONFIGS[128]
    assert glu.auto_config(q(1024 * 60, 128), 1024, 1024) is None  # under 2^24 values
    assert glu.auto_config(q(1024 * 256, 64), 1024, 256) is None
    # (the persistent own-tile walk is a configuration, never the automatic choice)
    assert not any(c[4] for c in (*glu.CONFIGS.values(), *glu.SHORT_CONFIGS.values()))
    # (causal calls: the same choice, from the same function)
    big = 2**24 // 256  # rows of 2^24 values at H=2, D=128
    assert glb.auto_config(q(2 * big, 64), 16, 4096) == glb.CONFIGS[64]  # D=64: a mean of 512
    assert glb.auto_config(q(2 * big, 64), 2 * big // 512 + 1, 4096) is None  # a mean under 512
    assert glb.auto_config(q(2 * big - 1, 64), 16, 4096) is None  # under 2^24 values
    assert glb.auto_config(q(1000, 64), 16, 4096, forced=True) == glb.CONFIGS[64]
    assert glb.auto_config(q(big, 128), 16, 256) is None  # at most 256 rows: 2^25 values
    assert glb.auto_config(q(big, 128), 16, 257) == glb.CONFIGS[128]
    assert glb.auto_config(q(2 * big, 128), 16, 256) == glb.CONFIGS[128]
    assert glb.auto_config(q(2 * big - 1, 128), 16, 256) is None
    assert glb.auto_config(q(4 * big, 64), 16, 256) is None  # never at D=64
    assert glb.auto_config(q(big - 1, 128), 16, 4096) is None  # under 2^24 values
    assert glb.auto_config(q(big, 128), big // 64, 4096) == glb.CONFIGS[128]  # a mean of 64
    assert glb.auto_config(q(big, 128), big // 63, 4096) is None  # a mean under 64 rows
    # (causal calls: the same choice, from the same function)
    # the switch: off wherever the kernels cannot run, before any device query
    cpu = torch.empty(4, 2, 64, dtype=torch.bfloat16)
    assert _gluon_mode(cpu, False) == "0"
    # on an sm_90 GPU (the device check stubbed) with nothing set: auto
    monkeypatch.setattr(attention_common, "_sm90_exactly", lambda index: True)
    monkeypatch.delenv("SHOPML_ATTN_GLUON", raising=False)
    attn_switch("SHOPML_ATTN_ORDER", "0")  # (rereads the switches)
    gpu = SimpleNamespace(
        is_cuda=True, dtype=torch.bfloat16, shape=(4, 2, 64), device=SimpleNamespace(index=0)
    )
    assert _gluon_mode(gpu, False) == "auto"  # (causal or not: the call's mask is not asked)
    assert _gluon_mode(gpu, True) == "0"
    attn_switch("SHOPML_ATTN_GLUON", "1")
    assert _gluon_mode(gpu, False) == "1"
    # the kernels' own checks on such a device: both take causal calls (auto_config decides)
    monkeypatch.setattr(glu, "_sm90_exactly", lambda index: True)
    t = _FakeCuda(1000, 2, 64)
    assert glu.gluon_ok(t, t, t, 0.125)
    assert glb.gluon_bwd_ok(t, t, t, t, 0.125)
    assert not glb.gluon_bwd_ok(t, t, t, t, -0.125)  # (the forward's checks still apply)
    attn_switch("SHOPML_ATTN_GLUON", "yes")
    with pytest.raises(ValueError, match="SHOPML_ATTN_GLUON"):
        _gluon_mode(cpu, False)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("dim", "lengths", "causal", "fwd_calls", "bwd_calls"),
    [
        (128, [700, 300, 0, 5], False, 1, 1),
        (64, [700, 300, 0, 5], False, 1, 0),
        (128, [256, 200, 1], False, 0, 0),
        (128, [700, 300, 0, 5], True, 1, 1),  # causal: the same rule
    ],
    ids=["d128", "d64", "short", "causal-d128"],
)
def test_auto_routing_on_the_gpu(
    monkeypatch, attn_switch, dim, lengths, causal, fwd_calls, bwd_calls
):
    """The default switch on an sm_90 GPU: the Gluon kernels run where ``auto_config`` says and
    the public op's gradients match the reference's."""
    _sm90()
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb

    calls = _count_gluon_launches(monkeypatch)
    for mod in (glu, glb):  # the size floors: covered on the CPU, small inputs here
        monkeypatch.setattr(mod, "MIN_ELEMENTS", 0)
    monkeypatch.delenv("SHOPML_ATTN_GLUON", raising=False)  # the default
    attn_switch("SHOPML_ATTN_ORDER", "0")  # (rereads the switches)
    _public_gradients_match_reference(lengths, lengths, dim, seed=5, causal=causal)
    assert calls == {"fwd": fwd_calls, "bwd": bwd_calls}


def test_gluon_launchers_record_their_compiles_in_a_dry_run(monkeypatch):
    """Inside ``launch.collecting`` (the first call's dry run that gathers compile jobs) the
    Gluon launchers launch nothing (the own-tile numbering would be left unwritten and the
    forward would read sample ids from garbage) and record a compile job each, beside those of
    the tile numbering and the backward's delta kernel, for ``precompile`` to compile at once.
    A job binds the kernel's parameters in order: the runtime arguments (a descriptor of each
    operand's tile wherever the kernel takes one), then every constexpr and the launch options."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb
    from shopml.jagged.triton.attention_bwd_dq import _DELTA
    from shopml.jagged.triton.launch import FastLauncher, collecting, dry_run

    def no_launch(*args):  # noqa: ANN002, ANN202
        raise AssertionError("a kernel launched in a dry run")

    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
    monkeypatch.setattr(FastLauncher, "_launch", no_launch)
    monkeypatch.setattr(FastLauncher, "_first_launch", no_launch)
    for fl in (glu._TILE_SAMPLES, glu._FWD, _DELTA, glb._BWD):  # no signature seen before
        monkeypatch.setattr(fl, "_cache", {})
    q = torch.randn(300, 2, 64, dtype=torch.bfloat16)
    offsets = torch.tensor([0, 100, 300])
    lse = torch.zeros(300, 2)
    assert not dry_run()
    with collecting() as jobs:
        assert dry_run()
        out, lse_out = glu._attn_fwd_gluon(q, q, q, offsets, offsets, 200, 200, 0.125, 1.0,
                                           config=glu.SHORT_CONFIGS[64])  # fmt: skip
        dq, dk, dv = glb._attn_bwd_gluon(q, q, q, q, q, lse, offsets, offsets, 200, 200, 0.125)
    assert not dry_run()
    assert out.shape == q.shape and lse_out.shape == (300, 2)
    assert dq.shape == dk.shape == dv.shape == q.shape
    kernels = [glu._tile_samples_kernel, glu._attn_fwd_gluon_kernel, _DELTA._kernel,
               glb._attn_bwd_gluon_kernel]  # fmt: skip
    assert [job.kernel for job in jobs] == kernels
    # (forward: own 64-row tiles, 64-key blocks; backward: 64-row query blocks, dQ's columns
    # split between its two warpgroups)
    tiles = {
        glu._attn_fwd_gluon_kernel: {"q_desc": [64, 64], "k_desc": [64, 64], "v_desc": [64, 64]},
        glb._attn_bwd_gluon_kernel: {"q_desc": [64, 64], "k_desc": [64, 64], "v_desc": [64, 64],
                                     "do_desc": [64, 64], "dq_desc": [64, 32]},
    }  # fmt: skip
    maxnreg = {glu._attn_fwd_gluon_kernel: 80, glb._attn_bwd_gluon_kernel: 168}
    for job in jobs[1::2]:
        names = job.kernel.arg_names
        descs = {
            n: a for n, a in zip(names, job.args, strict=False) if isinstance(a, TensorDescriptor)
        }
        assert {n: d.block_shape for n, d in descs.items()} == tiles[job.kernel]
        assert all(d.base is q or n == "dq_desc" for n, d in descs.items())
        assert set(job.kwargs) == {*names[len(job.args) :], "num_warps", "maxnreg"}
        assert job.kwargs["num_warps"] == 4 and job.kwargs["maxnreg"] == maxnreg[job.kernel]
    with collecting() as again:  # the same signatures, not launched yet: recorded again
        glu._attn_fwd_gluon(q, q, q, offsets, offsets, 200, 200, 0.125, 1.0,
                            config=glu.SHORT_CONFIGS[64])  # fmt: skip
    assert [job.ident for job in again] == [job.ident for job in jobs[:2]]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(
    "config",
    [(64, 2, 1, False, 128, True), (64, 2, 1, False, 80, True), (64, 2, 1, False, 128, False)],
    ids=["tma_one_warpgroup_r128", "tma_one_warpgroup_r80", "atomic_1wg_r128"],
)
def test_the_gluon_backward_refuses_its_occupancy_configurations(config, causal):
    """The backward's configurations of 2-3 programs an SM (maxnreg under 168) passed the small
    reference checks but gave non-finite dQ with many programs (H200, session 15): refused with a
    message naming maxnreg, before any launch; and query blocks under wgmma's 64 rows."""
    from shopml.jagged.triton import attention_gluon_bwd as glb

    t = torch.zeros(170, 2, 64, dtype=torch.bfloat16)
    qo = torch.tensor([0, 100, 170])
    with pytest.raises(ValueError, match=f"maxnreg={config[4]}"):
        glb._attn_bwd_gluon(t, t, t, t, t, torch.zeros(170, 2), qo, qo, 100, 100, 0.125,
                            config=config, causal=causal)  # fmt: skip
    with pytest.raises(ValueError, match="BLOCK_M=32"):
        glb._attn_bwd_gluon(t, t, t, t, t, torch.zeros(170, 2), qo, qo, 100, 100, 0.125,
                            config=(32, 2, 1, False, 168, True), causal=causal)  # fmt: skip


def test_the_persistent_own_tile_walk_takes_one_warpgroup():
    """Own tiles walked persistently: one consumer warpgroup a program (its loader serves one
    stream of tiles); more is refused with a message naming it, before any launch."""
    from shopml.jagged.triton import attention_gluon as glu

    t = torch.zeros(170, 2, 64, dtype=torch.bfloat16)
    qo = torch.tensor([0, 100, 170])
    with pytest.raises(ValueError, match="one consumer warpgroup, got 2"):
        glu._attn_fwd_gluon(t, t, t, qo, qo, 100, 100, 0.125, 1.0,
                            config=(64, 2, 2, True, True, True, 168))  # fmt: skip
    assert glu.per_sm(1, 128) == 2 and glu.per_sm(1, 80) == 3 and glu.per_sm(2, 168) == 1


def test_a_descriptor_is_what_a_checked_one_would_be():
    """_desc builds a TensorDescriptor's checks once per (dtype, H, D, row stride, tile); later
    descriptors take those fields with their own tensor, rows and address: the same as a
    descriptor built (and checked) anew."""
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from shopml.jagged.triton import attention_gluon as glu

    first, later = (torch.randn(n, 2, 64, dtype=torch.bfloat16) for n in (40, 72))
    glu._desc(first, 64)
    got = glu._desc(later, 64)
    built = TensorDescriptor(later, [72, 128], [128, 1], [64, 64],
                             glu.shared_layout(64, 64, torch.bfloat16))  # fmt: skip
    assert type(got) is TensorDescriptor and got.base is later
    assert vars(got).keys() == vars(built).keys()
    for name, value in vars(built).items():
        if name != "base":
            assert getattr(got, name) == value, name
    # the backward's fp32 dQ accumulator (H x (T + 64) rows of D) in tiles of half its columns
    acc_first, acc = torch.zeros(2 * (40 + 64), 64), torch.zeros(2 * (72 + 64), 64)
    glu._checked_desc(acc_first, [acc_first.shape[0], 64], 64, 64, 32)
    got = glu._checked_desc(acc, [acc.shape[0], 64], 64, 64, 32)
    built = TensorDescriptor(acc, [acc.shape[0], 64], [64, 1], [64, 32],
                             glu.shared_layout(64, 32, torch.float32))  # fmt: skip
    assert {n: v for n, v in vars(got).items() if n != "base"} == {
        n: v for n, v in vars(built).items() if n != "base"
    } and got.base is acc
    with pytest.raises(AssertionError, match="aligned"):  # a new class of call is checked
        glu._desc(torch.randn(40, 2, 65, dtype=torch.bfloat16)[:, :, :64], 64)
