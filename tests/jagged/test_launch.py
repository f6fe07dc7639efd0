"""The direct-launch fast path of the Triton kernels (shopml.jagged.triton.launch)."""

from __future__ import annotations

import pytest
import torch
from cases import OPS, make_inputs

from shopml.jagged.triton import launch as launch_mod
from shopml.jagged.triton.launch import FastLauncher


class _Config:
    def __init__(self, kwargs):
        self.kwargs = kwargs


class _Compiled:
    """What a Triton launch returns: a binary with ``run``, ``function``, ``packed_metadata``."""

    def __init__(self, tag):
        self.tag, self.function, self.packed_metadata = tag, f"fn{tag}", f"meta{tag}"
        self.calls = []

    def run(self, *launch):
        self.calls.append(launch)


class _FakeAutotuner:
    """Mimics triton.autotune's object: ``fn.arg_names``, ``keys``, ``best_config``, ``[grid]``."""

    def __init__(self):
        self.arg_names = ["x_ptr", "n", "bucket", "BLOCK", "MODE"]
        self.keys = ["bucket", "MODE"]
        self.slow_launches = []
        self.best_config = None

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.best_config = _Config({"BLOCK": 32 * (1 + len(self.slow_launches))})
            compiled = _Compiled(len(self.slow_launches))
            self.slow_launches.append((grid, args, kwargs, compiled))
            return compiled

        return launch


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda d: 1234, raising=False)


def _launcher():
    kernel = _FakeAutotuner()
    fl = FastLauncher(kernel)
    fl.enabled = True  # off under the interpreter; the logic is what is tested here
    return kernel, fl


def test_second_identical_launch_goes_direct_with_the_constexpr_tail(fake_cuda):
    kernel, fl = _launcher()
    x = torch.zeros(64)
    grid = lambda meta: (4096 // meta["BLOCK"], 2)
    fl(grid, (x, 48, 256), {"MODE": 1})
    assert len(kernel.slow_launches) == 1 and fl.direct_launches == 0
    fl(grid, (x, 64, 256), {"MODE": 1})  # 64 is a multiple of 16 as 48 is: same signature
    assert len(kernel.slow_launches) == 1 and fl.direct_launches == 1
    compiled = kernel.slow_launches[0][3]
    (call,) = compiled.calls
    assert call[:6] == (128, 2, 1, 1234, "fn0", "meta0")  # grid from the tuned BLOCK=32
    assert call[9:] == (x, 64, 256, 32, 1)  # runtime args, then BLOCK and MODE in kernel order


@pytest.mark.parametrize(
    "change",
    [
        "alignment",  # a tensor not 16-byte aligned
        "int_class",  # an int that is no longer a multiple of 16
        "int_one",  # an int equal to 1 (Triton specialises it)
        "tune_key",  # another autotune bucket
        "constexpr",  # another constexpr value
        "dtype",
    ],
)
def test_any_specialisation_change_takes_the_slow_path(fake_cuda, change):
    kernel, fl = _launcher()
    x = torch.zeros(64)
    args, const = [x, 48, 256], {"MODE": 1}
    grid = lambda meta: (1,)
    fl(grid, tuple(args), const)
    if change == "alignment":
        args[0] = x[1:]
    elif change == "int_class":
        args[1] = 47
    elif change == "int_one":
        args[1] = 1
    elif change == "tune_key":
        args[2] = 512
    elif change == "constexpr":
        const = {"MODE": 2}
    else:
        args[0] = x.double()
    fl(grid, tuple(args), const)
    assert len(kernel.slow_launches) == 2 and fl.direct_launches == 0


def test_an_unfamiliar_triton_disables_the_fast_path(fake_cuda):
    kernel, fl = _launcher()
    kernel.arg_names = ["x_ptr", "n"]  # fewer names than args + constexprs: unfamiliar
    fl = FastLauncher(kernel)
    fl.enabled = True
    grid = lambda meta: (1,)
    fl(grid, (torch.zeros(4), 16, 16), {"MODE": 1})
    assert not fl.enabled
    fl(grid, (torch.zeros(4), 16, 16), {"MODE": 1})
    assert len(kernel.slow_launches) == 2 and fl.direct_launches == 0


def test_a_bound_launch_passes_its_tensors_with_the_fixed_arguments(fake_cuda):
    """Bound: the call's leading tensors (their addresses), then the fixed arguments and the
    constexpr tail, the grid found once; each new alignment pattern is first launched by the
    launcher's own path."""
    kernel, fl = _launcher()
    x, y = torch.zeros(64), torch.zeros(64)
    grid = lambda meta: (4096 // meta["BLOCK"], 2)
    fl(grid, (x, 48, 256), {"MODE": 1})  # the launcher's first launch: slow
    bound = fl.bind(grid, (x, 48, 256), {"MODE": 1}, 1)
    bound(y)  # first bound call: through the launcher (direct), remembered
    bound(x)  # then the bound path
    assert len(kernel.slow_launches) == 1 and fl.direct_launches == 2
    compiled = kernel.slow_launches[0][3]
    assert [c[:6] for c in compiled.calls] == [(128, 2, 1, 1234, "fn0", "meta0")] * 2
    # the bound path passes addresses (the binary's launcher takes an int as the pointer)
    assert compiled.calls[0][9] is y and compiled.calls[1][9] == x.data_ptr()
    assert compiled.calls[0][10:] == compiled.calls[1][10:] == (48, 256, 32, 1)
    bound(x[1:])  # not 16-byte aligned: another signature, the launcher's slow path
    assert len(kernel.slow_launches) == 2
    with launch_mod.collecting() as jobs:  # a dry run launches nothing, bound or not
        bound(x)
    assert jobs == [] and fl.direct_launches == 2 and len(compiled.calls) == 2


def _fake_binaries(monkeypatch, launchers) -> list[tuple[str, int, tuple]]:  # noqa: ANN001
    """Fakes the compiles of ``launchers`` (a signature's first launch makes a binary that
    records its launches) and turns their direct launches on: returns the list of launches,
    ``(kernel name, grid's first dimension, arguments after the launch's 9 leading ones)``."""
    runs: list[tuple[str, int, tuple]] = []

    class Binary:
        function, packed_metadata = "fn", "meta"

        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, *launch):
            runs.append((self.name, launch[0], launch[9:]))

    def first_launch(self, key, grid, args, constexprs):  # a compile, then that binary's launch
        meta = dict({"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}, **constexprs)
        tail = tuple(meta.get(n, 0) for n in self._names[len(args) :])
        self._cache[key] = (Binary(self._kernel.__name__), meta, tail)
        self._cache[key][0].run(grid(meta)[0], *(None,) * 8, *args, *tail)

    monkeypatch.setattr(FastLauncher, "_first_launch", first_launch)
    for fl in launchers:
        monkeypatch.setattr(fl, "enabled", True)
        monkeypatch.setattr(fl, "_cache", {})
    return runs


def test_the_attention_launch_plans_pass_what_the_full_path_passes(fake_cuda, monkeypatch):
    """A second call with the same settings goes through the bound launches (no argument
    assembly): every launch of it gets what the first call's launches got, the new outputs in
    their place."""
    from shopml.jagged.triton import attention_bwd, attention_common, attention_fwd

    launchers = [fl for mod in (attention_fwd, attention_bwd) for fl in vars(mod).values()]
    runs = _fake_binaries(monkeypatch, [fl for fl in launchers if isinstance(fl, FastLauncher)])
    attention_common.reread_settings()  # empty the plans
    gen = torch.Generator().manual_seed(0)
    offsets = torch.tensor([0, 5, 5, 12, 40])
    q, k, v, o, do = (torch.randn(40, 2, 16, generator=gen) for _ in range(5))
    lse = torch.randn(40, 2, generator=gen)
    settings = (None,) * 6 + (32, 32, 0.25, 1.0, False, False, False)

    def step():
        out, lse_out = attention_fwd._attn_fwd(q, k, v, offsets, offsets, *settings)
        grads = attention_bwd._attn_bwd(do, q, k, v, o, lse, offsets, offsets, *settings)
        return (out, lse_out, *grads[:3])

    calls = []
    for _ in range(3):  # full path, then the bound launches' first (remembering) and later call
        runs.clear()
        outputs = step()
        calls.append((list(runs), outputs))
    assert len(attention_fwd._PLANS) == len(attention_bwd._PLANS) == 1  # one setting each
    times = torch.arange(40)  # timestamps without a table: a per-call tensor, never bound
    runs.clear()
    attention_fwd._attn_fwd(q, k, v, offsets, offsets, *(None,) * 4, times, None, *settings[6:])
    assert any(a is times for a in runs[-1][2]) and len(attention_fwd._PLANS) == 1
    (base, base_out), *later = calls
    assert [name for name, _, _ in base] == ["_attn_fwd_kernel", "_attn_bwd_dq_kernel",
                                          "_attn_bwd_dkdv_kernel"]  # fmt: skip

    def addr(x):  # a tensor's address (the bound launches pass addresses), else the value
        return x.data_ptr() if isinstance(x, torch.Tensor) else x

    for runs_now, outputs in later:
        mine = {id(a): b for a, b in zip(base_out, outputs, strict=True)}  # this call's outputs
        assert [name for name, _, _ in runs_now] == [name for name, _, _ in base]
        for (_, _, was), (_, _, now) in zip(base, runs_now, strict=True):
            assert len(was) == len(now)
            for a, b in zip(was, now, strict=True):
                if id(a) in mine:
                    assert addr(b) == mine[id(a)].data_ptr()
                elif isinstance(a, torch.Tensor) and a.data_ptr() != addr(b):  # delta: new
                    if isinstance(b, torch.Tensor):
                        assert (b.shape, b.dtype, b.stride()) == (a.shape, a.dtype, a.stride())
                    else:
                        assert isinstance(b, int) and b != 0
                else:  # the inputs, the placeholders, the numbers
                    assert addr(b) == addr(a)
    assert all(  # the last call went through the bound launches: addresses only
        not isinstance(a, torch.Tensor) for _, _, args in calls[-1][0] for a in args
    )


@pytest.mark.parametrize(
    "config",
    [
        (64, 2, 1, False, False, True, 80),  # own 64-row tiles: a tile table a call
        (128, 3, 2, True, False, False, 168),  # two warpgroups a tile of each sample
        (64, 2, 1, False, True, True, 128),  # own tiles, persistent: the grid capped
    ],
    ids=["own_tiles", "pingpong", "persistent"],
)
def test_the_gluon_forward_passes_each_calls_tensors_and_grid_through_its_plan(
    fake_cuda, monkeypatch, config
):
    """The Gluon forward's launches, through the full path and then through the plan (settings
    seen before, another row count than the call that made it): descriptors over this call's
    tensors, its outputs, the fixed arguments and the grid of its rows."""
    pytest.importorskip("triton.experimental.gluon")
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    from shopml.jagged.triton import attention_gluon as glu

    runs = _fake_binaries(monkeypatch, (glu._FWD, glu._TILE_SAMPLES))
    monkeypatch.setattr(glu, "_PLANS", {})
    monkeypatch.setattr(glu, "_sm_count", lambda index: 3)  # 3 x 2 programs: a capped grid
    gen = torch.Generator().manual_seed(0)

    def inputs(lengths):
        offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
        qkv = [torch.randn(sum(lengths), 2, 64, generator=gen).bfloat16() for _ in range(3)]
        return (*qkv, offsets)

    def call(q, k, v, offsets):
        runs.clear()
        out, lse = glu._attn_fwd_gluon(q, k, v, offsets, offsets, 300, 300, 0.125, 1.0, False,
                                       config)  # fmt: skip
        return list(runs), (out, lse)

    def expected_grid(total):  # the kernel's tile numbering, independently of the launcher
        if config[5]:  # own tiles: slots of 64 rows, head fastest
            tiles = -(-((total // 64 + 4) * 2) // config[2])
        else:  # 64 x NUM_WG query rows of each sample and head
            tiles = -(-300 // (64 * config[2])) * 4 * 2
        return min(tiles, 3 * glu.per_sm(config[2], config[6])) if config[4] else tiles

    small, large = inputs([5, 0, 7, 28]), inputs([300, 0, 70, 262])
    made = [call(*small), call(*small), call(*large), call(*large)]  # full path, then the plan
    assert len(glu._PLANS) == 1
    names = glu._FWD._names
    for (launches, (out, lse)), (q, k, v, offsets) in zip(
        made, [small, small, large, large], strict=True
    ):
        assert [name for name, _, _ in launches] == (
            ["_tile_samples_kernel"] if config[5] else []
        ) + ["_attn_fwd_gluon_kernel"]
        _, gx, args = launches[-1]
        assert gx == expected_grid(q.shape[0])
        got = dict(zip(names, args, strict=False))
        for name, t, rows in (
            ("q_desc", q, 64),
            ("k_desc", k, config[0]),
            ("v_desc", v, config[0]),
        ):
            desc = got[name]
            assert isinstance(desc, TensorDescriptor) and desc.base is t
            assert list(desc.shape) == [t.shape[0], 128] and list(desc.block_shape) == [rows, 64]

        def addr(x):  # the bound launches pass addresses
            return x.data_ptr() if isinstance(x, torch.Tensor) else x

        assert addr(got["o_ptr"]) == out.data_ptr() and addr(got["lse_ptr"]) == lse.data_ptr()
        assert addr(got["q_offsets_ptr"]) == addr(got["k_offsets_ptr"]) == offsets.data_ptr()
        assert (got["stride_o_t"], got["stride_o_h"], got["stride_lse_t"]) == (128, 64, 2)
        assert (got["max_seqlen_q"], got["max_seqlen_k"], got["batch"], got["heads"]) == (
            300, 300, 4, 2)  # fmt: skip
        assert got["qk_scale"] == pytest.approx(0.125 * glu.LOG2E) and got["post_scale"] == 1.0
        if config[5]:  # the tile table: (offsets, table of T // 64 + B slots, B)
            _, table_gx, table_args = launches[0]
            assert table_gx == 4 and addr(table_args[0]) == offsets.data_ptr()
            assert table_args[2] == 4 and addr(got["tile_b_ptr"]) == addr(table_args[1])
    assert all(  # the last call went through the bound launches: addresses only
        not isinstance(a, torch.Tensor) for _, _, args in made[-1][0] for a in args
    )


def test_the_attention_kernels_expose_their_argument_names():
    from shopml.jagged.triton import attention_bwd, attention_fwd

    for fl in (attention_fwd._FWD, attention_bwd._DKDV, attention_bwd._DQ, attention_bwd._FUSED):
        assert fl._names[:2] == ["q_ptr", "k_ptr"] and fl._names[-1] == "BLOCK_N"
    assert attention_bwd._DELTA._names[:2] == ["o_ptr", "do_ptr"]


def test_disabled_under_the_interpreter():
    from shopml.common.devices import is_interpreter

    if not is_interpreter():
        pytest.skip("runs where CI runs: under TRITON_INTERPRET=1")
    assert launch_mod._ENABLED is False


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_gpu_bound_launches_equal_the_full_path(attn_switch, causal):
    """The bias-free Triton path: the first call assembles its arguments (and binds them), the
    second and third go through the bound launches; all three give the same bits."""
    from shopml.jagged.attention import jagged_flash_attention
    from shopml.jagged.triton import attention_bwd, attention_fwd

    attn_switch("SHOPML_ATTN_GLUON", "0")  # (also empties the plans)
    gen = torch.Generator().manual_seed(0)
    lengths = [37, 0, 1, 300, 128, 77]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda")
    base = [torch.randn(sum(lengths), 2, 64, generator=gen).cuda().bfloat16() for _ in range(4)]

    def step():
        q, k, v = (t.clone().requires_grad_() for t in base[:3])
        out = jagged_flash_attention(q, k, v, offsets, 300, causal=causal)
        out.backward(base[3])
        return [out, q.grad, k.grad, v.grad]

    first = step()
    assert len(attention_fwd._PLANS) == len(attention_bwd._PLANS) == 1
    for later in (step(), step()):
        for a, b in zip(first, later, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["split", "fused", "tma"])
def test_gpu_fast_launches_equal_the_ordinary_launches(attn_switch, variant):
    from shopml.jagged.attention import RelativeBias, jagged_flash_attention, log_bucket_boundaries
    from shopml.jagged.triton import attention_bwd, attention_fwd

    if variant == "tma" and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("the Hopper path needs sm_90 or newer")
    attn_switch("SHOPML_ATTN_BWD", "fused" if variant == "fused" else "split")
    attn_switch("SHOPML_ATTN_TMA", "1" if variant == "tma" else "0")
    gen = torch.Generator().manual_seed(0)
    lengths = [37, 0, 1, 300, 128, 77]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda")
    total = sum(lengths)
    base = [torch.randn(total, 2, 64, generator=gen).cuda().bfloat16() for _ in range(4)]
    table = torch.randn(16, 2, device="cuda")
    ts = torch.randint(0, 10_000, (total,), device="cuda").sort().values

    def step():
        q, k, v = (t.clone().requires_grad_() for t in base[:3])
        tab = table.clone().requires_grad_()
        bias = RelativeBias(tab, log_bucket_boundaries(16, 4096).cuda(), q_timestamps=ts)
        out = jagged_flash_attention(q, k, v, offsets, 300, causal=True, attn_bias=bias)
        out.backward(base[3])
        return [out, q.grad, k.grad, v.grad, tab.grad]

    if variant == "tma":
        launchers = (attention_fwd._FWD_TMA, attention_bwd._DKDV_TMA, attention_bwd._DQ_TMA)
    elif variant == "split":
        launchers = (attention_fwd._FWD, attention_bwd._DKDV, attention_bwd._DQ)
    else:
        launchers = (attention_fwd._FWD, attention_bwd._FUSED, attention_bwd._DELTA)
    before = [fl.direct_launches for fl in launchers]
    first, second = step(), step()  # the second call launches every kernel directly
    assert all(fl.enabled for fl in launchers)
    assert all(fl.direct_launches > b for fl, b in zip(launchers, before, strict=True))
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        if variant == "fused" and i == 1:  # dQ: atomic adds in another order, rounded to bf16
            torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
        else:
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_the_bracket_form_is_the_call_form(fake_cuda):
    """``launcher[grid](*args, **constexprs)``, as the jagged ops call it, launches the same."""
    kernel, fl = _launcher()
    x = torch.zeros(64)
    grid = lambda meta: (4096 // meta["BLOCK"], 2)
    fl[grid](x, 48, 256, MODE=1)
    fl(grid, (x, 64, 256), {"MODE": 1})
    assert len(kernel.slow_launches) == 1 and fl.direct_launches == 1
    assert kernel.slow_launches[0][1] == (x, 48, 256) and kernel.slow_launches[0][2] == {"MODE": 1}


def test_a_constexpr_passed_by_position_is_part_of_the_signature(fake_cuda):
    """A ``tl.constexpr`` parameter given positionally (here ``bucket``, no autotune key) selects
    another binary for another value, whatever its integer classes."""

    class _Param:
        def __init__(self, name, is_constexpr):
            self.name, self.is_constexpr = name, is_constexpr

    kernel = _FakeAutotuner()
    kernel.keys = ["MODE"]
    kernel.fn = type("JitFn", (), {})()  # what the autotuner wraps: the jit function's params
    kernel.fn.params = [_Param(n, n in ("bucket", "BLOCK", "MODE")) for n in kernel.arg_names]
    fl = FastLauncher(kernel)
    fl.enabled = True
    x = torch.zeros(64)
    grid = lambda meta: (1,)
    fl(grid, (x, 48, 256), {"MODE": 1})
    fl(grid, (x, 48, 512), {"MODE": 1})  # 512 and 256: same int classes, another constexpr
    assert len(kernel.slow_launches) == 2 and fl.direct_launches == 0
    fl(grid, (x, 48, 512), {"MODE": 1})
    assert fl.direct_launches == 1


_OP_MODULES = ["bmm", "concat", "conversions", "elementwise", "jagged2", "reductions", "softmax"]


def _op_launchers():
    import importlib

    for name in _OP_MODULES:
        mod = importlib.import_module(f"shopml.jagged.triton.{name}")
        for value in vars(mod).values():
            if isinstance(value, FastLauncher):
                yield value


def test_every_jagged_op_launches_through_a_fast_launcher():
    """No ``kernel[grid]`` launch is left in the op modules: each goes through a FastLauncher of
    an autotuned kernel (whose keys are part of the launch signature)."""
    import importlib
    import re
    from pathlib import Path

    for name in _OP_MODULES:
        mod = importlib.import_module(f"shopml.jagged.triton.{name}")
        source = Path(mod.__file__).read_text()
        assert not re.search(r"_kernel\[", source), name
        launchers = [v for v in vars(mod).values() if isinstance(v, FastLauncher)]
        assert launchers, name
        for fl in launchers:
            assert fl._tune_keys and set(fl._tune_keys) <= set(fl._names), (name, fl._names)


@pytest.mark.gpu
@pytest.mark.parametrize("test_id", sorted(OPS))
def test_gpu_jagged_op_fast_launches_equal_the_ordinary_launches(monkeypatch, test_id):
    """Each jagged op, forward and backward, through the direct launches and through Triton's
    own launch path (the fast path off): the same binaries, so equal results (to fp32 rounding:
    jagged2_mul_dense's dense gradient adds atomically, in no fixed order)."""
    from shopml.jagged import ops

    launchers = list(_op_launchers())
    lengths = [0, 1, 37, 300, 128, 77, 5]
    gen = torch.Generator().manual_seed(0)
    args, kwargs, grad_idx = make_inputs(test_id, lengths, 64, torch.float32, "cuda", gen)
    upstream = None

    def step():
        nonlocal upstream
        inputs = [a.clone().requires_grad_() if i in grad_idx else a for i, a in enumerate(args)]
        out = getattr(ops, OPS[test_id])(*inputs, **kwargs, backend="triton")
        values = out[0] if isinstance(out, tuple) else out
        if upstream is None:
            upstream = torch.randn(values.shape, generator=gen).to(values.device)
        grads = torch.autograd.grad(values, [inputs[i] for i in grad_idx], upstream)
        return [values, *grads]

    for fl in launchers:
        monkeypatch.setattr(fl, "enabled", False)
    ordinary = step()
    monkeypatch.undo()
    assert all(fl.enabled for fl in launchers)
    step()  # a first launch per signature (Triton's path), then
    before = sum(fl.direct_launches for fl in launchers)
    direct = step()  # every launch direct
    assert all(fl.enabled for fl in launchers)
    assert sum(fl.direct_launches for fl in launchers) > before
    for a, b in zip(direct, ordinary, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ host-side tensor descriptors
def _descriptor(rows=32, block=(16, 64), dtype=torch.bfloat16, offset=0, swizzle=None, **kw):
    """A Gluon ``TensorDescriptor`` over a ``rows`` x 128 tensor (CPU memory: only its host side
    is read here), tiles of ``block``, Gluon's default layout or one of ``swizzle`` bytes."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    base = torch.zeros(rows + offset, 128, dtype=dtype)[offset:]
    gdt = gl.bfloat16 if dtype == torch.bfloat16 else gl.float16
    layout = gl.NVMMASharedLayout.get_default_for(list(block), gdt)
    if swizzle is not None:
        layout = gl.NVMMASharedLayout(swizzle_byte_width=swizzle, element_bitwidth=16, rank=2)
    return TensorDescriptor(base, [rows, 128], [128, 1], list(block), layout, **kw)


def _desc_launcher():
    kernel = _FakeAutotuner()
    kernel.arg_names = ["x_desc", "n", "bucket", "BLOCK", "MODE"]
    fl = FastLauncher(kernel)
    fl.enabled = True
    return kernel, fl


def test_a_descriptor_goes_to_the_binary_as_it_is_whatever_its_tensor(fake_cuda):
    """A descriptor over another tensor (address, shape, strides: what the binary's launcher
    encodes into the TMA descriptor at each launch) launches directly, the descriptor object
    itself in its place; the tail of constexprs follows as for any kernel."""
    kernel, fl = _desc_launcher()
    grid = lambda meta: (2,)
    fl(grid, (_descriptor(), 48, 256), {"MODE": 1})
    other = _descriptor(rows=96, offset=8)
    fl(grid, (other, 64, 256), {"MODE": 1})
    assert len(kernel.slow_launches) == 1 and fl.direct_launches == 1
    (call,) = kernel.slow_launches[0][3].calls
    assert call[:6] == (2, 1, 1, 1234, "fn0", "meta0")
    assert call[9] is other and call[10:] == (64, 256, 32, 1)


def test_a_bound_launch_passes_its_descriptors_as_they_are_on_the_grid_given(fake_cuda):
    """Bound with leading descriptors (the Gluon forward's plan): a call's descriptors go to the
    binary as they are and its tensors as addresses, after them the fixed arguments and the
    tail; ``run(gx, ...)`` launches ``gx`` programs (a grid that follows the call's rows), a
    plain call the bound grid's."""
    kernel = _FakeAutotuner()
    kernel.arg_names = ["x_desc", "y_ptr", "n", "bucket", "BLOCK", "MODE"]
    fl = FastLauncher(kernel)
    fl.enabled = True
    y = torch.zeros(64)
    grid = lambda meta: (3,)
    args = (_descriptor(), y, 48, 256)
    fl(grid, args, {"MODE": 1})  # the first launch: slow
    bound = fl.bind(grid, args, {"MODE": 1}, 2, descs=1)
    other, z = _descriptor(rows=96, offset=8), torch.zeros(32)
    bound.run(7, other, z)  # first bound call: through the launcher (direct), remembered
    bound.run(5, other, y)  # then the bound path
    bound(other, z)
    assert len(kernel.slow_launches) == 1 and fl.direct_launches == 3
    calls = kernel.slow_launches[0][3].calls
    assert [c[0] for c in calls] == [7, 5, 3]
    assert all(c[9] is other for c in calls)
    assert calls[0][10] is z and calls[1][10] == y.data_ptr() and calls[2][10] == z.data_ptr()
    assert calls[0][11:] == calls[1][11:] == calls[2][11:] == (48, 256, 32, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"block": (32, 64)},  # another tile: another binary
        {"dtype": torch.float16},
        {"swizzle": 64},  # another shared-memory layout
        {"padding": "nan"},  # a setting: kept in the signature too (Triton reads it at launch)
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_descriptor_specialisation_change_takes_the_slow_path(fake_cuda, change):
    kernel, fl = _desc_launcher()
    grid = lambda meta: (1,)
    fl(grid, (_descriptor(), 48, 256), {"MODE": 1})
    fl(grid, (_descriptor(**change), 48, 256), {"MODE": 1})
    assert len(kernel.slow_launches) == 2 and fl.direct_launches == 0


def test_the_descriptor_signature_is_as_fine_as_tritons(fake_cuda):
    """Two descriptors that Triton's binder specialises apart (its own function, run on the
    host) never share a launch signature here."""
    try:
        from triton.backends.compiler import BaseBackend
        from triton.runtime.jit import native_specialize_impl
    except ImportError:
        pytest.skip("a Triton without the native binder")
    variants = [
        _descriptor(),
        _descriptor(rows=96, offset=8),
        _descriptor(block=(32, 64)),
        _descriptor(block=(64, 64)),
        _descriptor(dtype=torch.float16),
        _descriptor(swizzle=64),
        _descriptor(swizzle=32, block=(64, 32)),
        _descriptor(padding="nan"),
    ]
    _, fl = _desc_launcher()
    keys = [fl._key((d, 48, 256), {"MODE": 1}) for d in variants]
    specs = [native_specialize_impl(BaseBackend, d, False, True, True) for d in variants]
    assert len(set(specs)) >= 6  # the variants do differ for Triton
    for i in range(len(variants)):
        for j in range(i):
            if specs[i] != specs[j]:
                assert keys[i] != keys[j], (variants[i], variants[j])
    assert keys[0] == keys[1]  # another tensor alone: the same binary


def test_the_gluon_attention_kernels_launch_through_fast_launchers():
    """The Gluon forward and backward go through FastLaunchers (direct launches, and compile
    jobs in a dry run); every parameter after the runtime ones is a constexpr (the tail)."""
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb

    for fl, first, last_runtime in (
        (glu._FWD, "q_desc", "post_scale"),
        (glb._BWD, "q_desc", "log2_scale"),
    ):
        names = fl._names
        assert names[0] == first
        tail = names[names.index(last_runtime) + 1 :]
        assert tail and set(tail) <= launch_mod._constexpr_names(fl._kernel)


@pytest.mark.gpu
@pytest.mark.parametrize("dim", [64, 128])
def test_gpu_gluon_fast_launches_equal_the_ordinary_launches(attn_switch, dim):
    """The Gluon forward and backward (descriptor arguments) through their FastLaunchers'
    direct launches give what Triton's own launch path gives: bit for bit, but dQ, which the
    copy engine reduces in no fixed order (to bf16 rounding)."""
    from shopml.jagged.attention import jagged_flash_attention
    from shopml.jagged.triton import attention_gluon as glu
    from shopml.jagged.triton import attention_gluon_bwd as glb

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the Gluon kernels need sm_90")
    attn_switch("SHOPML_ATTN_GLUON", "1")
    gen = torch.Generator().manual_seed(0)
    lengths = [37, 0, 1, 300, 128, 77]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device="cuda")
    base = [torch.randn(sum(lengths), 2, dim, generator=gen).cuda().bfloat16() for _ in range(4)]

    def step():
        q, k, v = (t.clone().requires_grad_() for t in base[:3])
        out = jagged_flash_attention(q, k, v, offsets, 300)
        out.backward(base[3])
        return [out, q.grad, k.grad, v.grad]

    launchers = (glu._TILE_SAMPLES, glu._FWD, glb._BWD)
    assert all(fl.enabled for fl in launchers)
    try:
        for fl in launchers:
            fl.enabled = False
        ordinary = step()
    finally:
        for fl in launchers:
            fl.enabled = True
    step()  # a first launch per signature (Triton's path), then
    before = [fl.direct_launches for fl in launchers[1:]]
    direct = step()  # every launch direct
    assert all(fl.enabled for fl in launchers)
    assert all(fl.direct_launches > b for fl, b in zip(launchers[1:], before, strict=True))
    for i, (a, b) in enumerate(zip(direct, ordinary, strict=True)):
        tol = 2e-2 if i == 1 else 0.0
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
