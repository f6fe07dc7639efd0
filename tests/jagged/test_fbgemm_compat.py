"""shopml.jagged.fbgemm_compat: FBGEMM sll names, arguments and semantics.

The oracle tests call ``torch.ops.fbgemm.sll_<name>`` and ``fbgemm_compat.<name>`` with the very
same arguments (forward, and backward where FBGEMM has one); they are skipped when the optional
``fbgemm-gpu-cpu`` package is absent. The other tests pin the semantics with hand-made cases.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from cases import batch

from shopml.jagged import fbgemm_compat as sll
from shopml.jagged import ops_reference as ref
from shopml.jagged.tensor import lengths_to_offsets

# Argument names of the FBGEMM schemas (fbgemm_gpu/sll/__init__.py), in order.
SCHEMAS = {
    "jagged_dense_bmm": ["x", "y", "x_offsets", "N", "allow_tf32", "use_fbgemm_kernel"],
    "jagged_jagged_bmm": ["x", "y", "x_offsets", "N", "allow_tf32", "use_fbgemm_kernel"],
    "jagged_softmax": ["x", "x_offsets", "max_seq_len", "use_fbgemm_kernel"],
    "jagged2_softmax": ["x", "offsets", "offsets_total", "max_seq_len", "transpose"],
    "jagged_jagged_bmm_jagged_out": [
        "x", "y", "x_lengths", "x_offsets", "y_lengths", "y_offsets", "z_lengths", "z_offsets",
        "max_seq_len", "allow_tf32",
    ],
    "array_jagged_bmm_jagged_out": [
        "x", "y", "x_lengths", "x_offsets", "y_lengths", "y_offsets", "z_lengths", "z_offsets",
        "max_seq_len", "allow_tf32",
    ],
    "jagged_dense_elementwise_add": ["x", "x_offsets", "y", "max_seq_len", "use_fbgemm_kernel"],
    "jagged_dense_elementwise_mul_jagged_out": ["x", "y", "x_seq_lengths", "x_offsets", "max_seq_len"],
    "jagged2_to_padded_dense": ["values", "offsets", "max_length", "padding_value"],
    "dense_jagged_cat_jagged_out": ["a", "b", "a_offsets", "max_seq_len"],
    "jagged_self_substraction_jagged_out": ["a", "offsets_a", "offsets_b", "max_seq_len"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_signature_matches_fbgemm_schema(name):
    params = list(inspect.signature(getattr(sll, name)).parameters)
    assert params == SCHEMAS[name]
    assert name in sll.__all__


def _fbgemm():
    pytest.importorskip("fbgemm_gpu")
    import fbgemm_gpu.sll  # noqa: F401  (registers the sll ops)

    return torch.ops.fbgemm


def _rand(gen, *shape):
    return torch.randn(*shape, generator=gen)


def _inputs(name, lengths, gen, d=16):
    """FBGEMM-style positional arguments, and an optional (T,) row mask to compare on."""
    off, t, n = batch(lengths, "cpu", torch.int32)
    lens = off[1:] - off[:-1]
    lens2 = lens * lens
    off2 = lengths_to_offsets(lens2)
    t2 = int(lens2.sum())
    b = len(lengths)
    cap = max(n - 3, 1)  # below the longest length: exercises truncation
    if name == "jagged_dense_bmm":
        return [_rand(gen, t, d), _rand(gen, b, d, 7), off, cap, False], None
    if name == "jagged_jagged_bmm":
        return [_rand(gen, t, d), _rand(gen, t, 7), off, cap, False], None
    if name == "jagged_softmax":
        _, pos = ref.token_index(off, t)
        return [_rand(gen, t, d), off, cap], pos < cap  # FBGEMM leaves later rows uninitialised
    if name == "jagged2_softmax":
        return [_rand(gen, t2), off, off2, n, bool(gen.initial_seed() % 2)], None
    if name == "jagged_jagged_bmm_jagged_out":
        return [
            _rand(gen, t, d),
            _rand(gen, t, d),
            lens,
            off,
            lens,
            off,
            lens2,
            off2,
            n,
            False,
        ], None
    if name == "array_jagged_bmm_jagged_out":
        return [
            _rand(gen, t2),
            _rand(gen, t, d),
            lens2,
            off2,
            lens,
            off,
            lens,
            off,
            cap,
            False,
        ], None
    if name == "jagged_dense_elementwise_add":
        return [_rand(gen, t, d), off, _rand(gen, b, cap, d), cap], None
    if name == "jagged_dense_elementwise_mul_jagged_out":
        return [_rand(gen, t2), torch.tril(_rand(gen, n + 1, n + 1)), lens, off2, n + 1], None
    if name == "jagged2_to_padded_dense":
        return [_rand(gen, t2), off2, n + 2, -3.0], None
    if name == "dense_jagged_cat_jagged_out":
        return [_rand(gen, b), _rand(gen, t), off, n], None
    if name == "jagged_self_substraction_jagged_out":
        off_a, ta, _ = batch([x + 1 for x in lengths], "cpu", torch.int32)
        return [_rand(gen, ta), off_a, off2, n], None
    raise KeyError(name)


LENGTHS = [[0, 1, 5, 12, 3], [7, 7, 7], [20, 0, 2, 9]]


@pytest.mark.parametrize("lengths", LENGTHS, ids=["edge", "equal", "long"])
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_matches_fbgemm_forward_and_backward(name, lengths):
    fb = _fbgemm()
    gen = torch.Generator().manual_seed(len(name) + sum(lengths))
    args, row_mask = _inputs(name, lengths, gen)
    grad_idx = [
        i for i, a in enumerate(args) if torch.is_tensor(a) and a.is_floating_point() and i < 2
    ]
    results = []
    for fn in (getattr(fb, f"sll_{name}"), getattr(sll, name)):
        call = [
            a.detach().clone().requires_grad_(True) if i in grad_idx else a
            for i, a in enumerate(args)
        ]
        out = fn(*call)
        values = out[0] if isinstance(out, tuple) else out
        results.append((out, values, call))
    (fb_out, fb_val, fb_call), (our_out, our_val, our_call) = results
    if isinstance(fb_out, tuple):
        torch.testing.assert_close(our_out[1].long(), fb_out[1].long())
    keep = row_mask if row_mask is not None else slice(None)
    torch.testing.assert_close(our_val[keep], fb_val[keep], atol=1e-5, rtol=1e-5)
    if not fb_val.requires_grad:
        return
    upstream = torch.randn(fb_val.shape, generator=gen)
    if row_mask is not None:
        upstream[~row_mask] = 0
    fb_inputs = [fb_call[i] for i in grad_idx]
    fb_grads = torch.autograd.grad(fb_val, fb_inputs, upstream, allow_unused=True)
    our_grads = torch.autograd.grad(our_val, [our_call[i] for i in grad_idx], upstream)
    for i, fg, og in zip(grad_idx, fb_grads, our_grads, strict=True):
        if fg is None:  # FBGEMM gives this input no gradient; ours must still exist
            assert og is not None
            continue
        if og.shape == fb_val.shape and row_mask is not None:
            og, fg = og[keep], fg[keep]
        if name == "array_jagged_bmm_jagged_out" and i == 0:
            # FBGEMM's backward gives the entries its forward ignores (outside the top-left
            # max_seq_len block) a nonzero gradient; ours is the true gradient there: 0.
            inside = _inside_cap(args)
            assert torch.all(og[~inside] == 0)
            og, fg = og[inside], fg[inside]
        msg = lambda m, i=i: f"grad of arg {i}: {m}"  # noqa: E731
        torch.testing.assert_close(og, fg, atol=1e-4, rtol=1e-4, msg=msg)


def _inside_cap(args):
    """(sum L^2,) bool: block entries inside the top-left max_seq_len block."""
    x, offsets, cap = args[0], args[5], args[8]
    _, r, c = ref.jagged2_index(offsets, x.shape[0])
    return (r < cap) & (c < cap)


# ------------------------------------------------------------------ semantics without the oracle
def test_truncation_semantics_of_bmm_and_softmax():
    off = torch.tensor([0, 1, 4], dtype=torch.int32)  # lengths 1, 3; max 2
    x = torch.arange(8.0).view(4, 2)
    y = torch.eye(2).expand(2, 2, 2).contiguous()
    out = sll.jagged_dense_bmm(x, y, off, 2, False)
    assert torch.equal(out[:3], x[:3]) and torch.equal(out[3], torch.zeros(2))
    z = sll.jagged_jagged_bmm(x, x, off, 2, False)
    torch.testing.assert_close(z[1], x[1:3].T @ x[1:3])
    p = sll.jagged_softmax(x, off, 2)
    torch.testing.assert_close(p[1:3].sum(0), torch.ones(2))
    assert torch.equal(p[3], torch.zeros(2))
    add = sll.jagged_dense_elementwise_add(x, off, torch.ones(2, 2, 2), 2)
    assert torch.equal(add[3], x[3]) and torch.equal(add[:3], x[:3] + 1)


def test_self_substraction_and_cat_small_example():
    a = torch.tensor([1.0, 10.0, 20.0, 40.0, 5.0])  # sequences [1, 10, 20, 40] and [5]
    offsets_a = torch.tensor([0, 4, 5])
    offsets_b = torch.tensor([0, 9, 9])
    out = sll.jagged_self_substraction_jagged_out(a, offsets_a, offsets_b, 8)
    expect = torch.tensor([1.0, 10.0, 20.0])[:, None] - torch.tensor([10.0, 20.0, 40.0])[None, :]
    assert torch.equal(out, expect.reshape(-1))
    c, c_off = sll.dense_jagged_cat_jagged_out(torch.tensor([-1.0, -2.0]), a, offsets_a, 8)
    assert c.tolist() == [-1.0, 1.0, 10.0, 20.0, 40.0, -2.0, 5.0]
    assert c_off.tolist() == [0, 5, 7]


def test_jagged2_block_offsets_conventions():
    lengths = torch.tensor([2, 0, 3])
    off2 = lengths_to_offsets(lengths * lengths)
    x = torch.arange(13.0)
    dense = sll.jagged2_to_padded_dense(x, off2, 3, -1.0)
    assert dense[0].tolist() == [[0.0, 1.0, -1.0], [2.0, 3.0, -1.0], [-1.0, -1.0, -1.0]]
    assert torch.equal(dense[2], x[4:].view(3, 3))
    mask = torch.triu(torch.ones(3, 3, dtype=torch.bool))
    masked = sll.jagged_dense_elementwise_mul_jagged_out(x, mask, lengths, off2, 3)
    assert masked[:4].tolist() == [0.0, 1.0, 0.0, 3.0]
    with pytest.raises(ValueError, match="offsets: expected block sizes that are perfect squares"):
        sll.jagged2_to_padded_dense(torch.zeros(5), torch.tensor([0, 2, 5]), 3)
    with pytest.raises(ValueError, match="x_offsets: expected the exclusive cumsum"):
        sll.jagged_dense_elementwise_mul_jagged_out(x, mask, torch.tensor([3, 0, 2]), off2, 3)


def test_compat_rejects_bad_arguments():
    off = torch.tensor([0, 2, 3])
    with pytest.raises(
        ValueError, match=r"x_offsets: expected offsets\[-1\] == number of value rows \(4\)"
    ):
        sll.jagged_softmax(torch.randn(4, 2), off, 2)
    with pytest.raises(ValueError, match="N: expected >= 0"):
        sll.jagged_dense_bmm(torch.randn(3, 2), torch.randn(2, 2, 2), off, -1, False)
    with pytest.raises(ValueError, match="offsets_total: expected the exclusive cumsum"):
        sll.jagged2_softmax(torch.randn(5), off, torch.tensor([0, 1, 5]), 2, False)
