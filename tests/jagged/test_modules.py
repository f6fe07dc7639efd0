"""JaggedMultiheadAttention / JaggedTargetAttention: jagged vs padded on the same weights,
padded rows exactly zero, gradients, compile, save/load, overfitting a tiny batch."""

from __future__ import annotations

import io

import pytest
import torch

from shopml.jagged import JaggedTensor, checks_enabled
from shopml.jagged.modules import JaggedMultiheadAttention, JaggedTargetAttention

ATOL, RTOL = 2e-5, 1e-5


def _history(lengths, dim, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    values = torch.randn(int(lengths_t.sum()), dim, generator=gen)
    return JaggedTensor.from_lengths(values, lengths_t, max(lengths))


@pytest.mark.parametrize(
    ("causal", "buckets", "timestamps"),
    [(False, 0, False), (True, 0, False), (True, 8, False), (False, 8, True)],
)
def test_self_attention_jagged_equals_padded_on_same_weights(causal, buckets, timestamps):
    lengths = [3, 0, 17, 1]
    module = JaggedMultiheadAttention(32, 2, causal=causal, num_bias_buckets=buckets)
    if buckets:
        torch.nn.init.normal_(module.rel_bias.table)
    x = _history(lengths, 32)
    ts = torch.randint(0, 40, (x.values.shape[0],)) if timestamps else None
    values = x.values.clone().requires_grad_()
    out = module(x.with_values(values), ts)
    assert isinstance(out, JaggedTensor) and out.values.shape == (21, 32)

    padded_in = x.to_padded().requires_grad_()  # (B, N, E)
    lengths_t = x.lengths()
    ts_padded = JaggedTensor(ts, x.offsets).to_padded() if ts is not None else None
    padded = module.forward_padded(padded_in, lengths_t, ts_padded)  # (B, N, E)
    assert padded.shape == (4, 17, 32)
    valid = torch.arange(17)[None, :] < lengths_t[:, None]
    assert torch.all(padded[~valid] == 0)  # padded rows exactly 0
    torch.testing.assert_close(padded[valid], out.values, atol=ATOL, rtol=RTOL)

    # same gradients for every parameter and the input, through both paths
    grad = torch.randn_like(out.values)
    params = [p for p in module.parameters()]
    g_jag = torch.autograd.grad(out.values, [values, *params], grad)
    padded_grad = torch.zeros_like(padded)
    padded_grad[valid] = grad
    g_pad = torch.autograd.grad(padded, [padded_in, *params], padded_grad)
    torch.testing.assert_close(g_pad[0][valid], g_jag[0], atol=1e-4, rtol=1e-4)
    for a, b in zip(g_jag[1:], g_pad[1:], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        assert torch.count_nonzero(a) > 0  # every parameter receives a gradient


def test_target_attention_jagged_equals_padded_with_empty_history():
    lengths = [4, 0, 19]
    module = JaggedTargetAttention(32, 2)
    history = _history(lengths, 32, seed=1)
    query = torch.randn(3, 2, 32)
    out = module(query, history)  # (B, M, E)
    padded = module.forward_padded(query, history.to_padded(), history.lengths())
    assert out.shape == padded.shape == (3, 2, 32)
    torch.testing.assert_close(out, padded, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(out[1], module.out_proj.bias.expand(2, 32))  # empty: bias only
    out.sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name


def test_compiled_module_matches_eager_without_graph_breaks():
    module = JaggedMultiheadAttention(32, 2, causal=True, num_bias_buckets=4)
    x = _history([3, 0, 18], 32, seed=2)
    with checks_enabled(False):
        compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
        got = compiled(x).values
        want = module(x).values
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
        got.sum().backward()
    assert module.qkv.weight.grad is not None


def test_state_dict_round_trip_gives_identical_outputs():
    module = JaggedMultiheadAttention(32, 2, num_bias_buckets=4, backend="reference")
    x = _history([2, 5], 32)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    other = JaggedMultiheadAttention(32, 2, num_bias_buckets=4, backend="reference")
    other.load_state_dict(torch.load(buffer))
    assert torch.equal(module(x).values, other(x).values)


def test_tiny_batch_can_be_overfit():
    torch.manual_seed(0)
    attn = JaggedMultiheadAttention(16, 1, causal=True, num_bias_buckets=4, backend="reference")
    x = _history([5, 3, 7], 16, seed=3)
    target = torch.randn_like(x.values)
    opt = torch.optim.Adam(attn.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(attn(x).values, target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("cls", [JaggedMultiheadAttention, JaggedTargetAttention])
def test_bad_head_count_is_rejected(cls):
    with pytest.raises(ValueError, match="^num_heads: expected"):
        cls(30, 4)
