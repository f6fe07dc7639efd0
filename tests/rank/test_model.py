from __future__ import annotations

import numpy as np
import pytest
import torch

from shopml.rank.config import RankConfig
from shopml.rank.model import RankingModel, length_groups, to_jagged_history, to_padded_history

BACKENDS = ["jagged", "padded", "pooling"]


def _batch_idx(ex, n=6):
    # include an empty history and a full one
    idx = np.argsort(ex.hist_len, kind="stable")
    return np.concatenate([idx[:1], idx[-2:], idx[len(idx) // 2 : len(idx) // 2 + n - 3]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_no_nan_and_every_parameter_gets_a_gradient(rank_setup, backend):
    ex, config = rank_setup(backend)
    model = RankingModel(config)
    idx = _batch_idx(ex)
    assert ex.hist_len[idx].min() == 0
    batch = ex.collate(idx, "padded" if backend == "padded" else "jagged")
    logits = model(batch.history, batch.candidates)
    assert logits.shape == (len(idx),)
    assert torch.isfinite(logits).all()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("num_layers", [1, 2])
def test_jagged_and_padded_give_the_same_outputs_and_gradients(rank_setup, num_layers):
    ex, config = rank_setup("jagged", num_layers=num_layers)
    jagged = RankingModel(config)
    padded = RankingModel(config.replace(sequence_backend="padded"))
    padded.load_state_dict(jagged.state_dict())
    idx = _batch_idx(ex, 8)
    out_j = jagged(ex.collate(idx, "jagged").history, ex.collate(idx).candidates)
    out_p = padded(ex.collate(idx, "padded").history, ex.collate(idx).candidates)
    torch.testing.assert_close(out_j, out_p, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out_j)
    out_j.backward(g)
    out_p.backward(g)
    grads_p = dict(padded.named_parameters())
    for name, p in jagged.named_parameters():
        torch.testing.assert_close(p.grad, grads_p[name].grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_batch_can_be_overfit(rank_setup, backend):
    ex, config = rank_setup(backend)
    model = RankingModel(config)
    idx = np.arange(24)
    batch = ex.collate(idx, "padded" if backend == "padded" else "jagged")
    labels = torch.as_tensor(np.arange(24) % 2, dtype=torch.float32)  # arbitrary labels
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(80):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(batch.history, batch.candidates), labels
        )
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_many_candidates_matches_single(rank_setup, backend):
    ex, config = rank_setup(backend)
    model = RankingModel(config)
    idx = _batch_idx(ex)
    batch = ex.collate(idx, "jagged")  # any layout is accepted by any backend
    single = model.score(batch.history, batch.candidates)
    rng = np.random.default_rng(0)
    other = torch.as_tensor(rng.integers(1, config.num_items, len(idx)))
    many = {
        "item": torch.stack([batch.candidates["item"], other], 1),
        "category": torch.stack([batch.candidates["category"], other % 3 + 1], 1),
        "brand": torch.stack([batch.candidates["brand"], other % 4 + 1], 1),
        "price": torch.stack([batch.candidates["price"], torch.zeros(len(idx))], 1),
    }
    scores = model.score(batch.history, many)
    assert scores.shape == (len(idx), 2)
    assert ((scores > 0) & (scores < 1)).all()
    torch.testing.assert_close(scores[:, 0], single, rtol=1e-5, atol=1e-6)


def test_history_layout_conversions_round_trip(rank_setup):
    ex, _ = rank_setup()
    idx = _batch_idx(ex)
    jag = ex.collate(idx, "jagged").history
    pad = ex.collate(idx, "padded").history
    conv = to_padded_history(jag, ex.max_history)
    for k, v in pad.features.items():
        assert torch.equal(conv.features[k], v)
    assert torch.equal(conv.times, pad.times)
    back = to_jagged_history(pad)
    assert torch.equal(back.kjt.values, jag.kjt.values)
    assert torch.equal(back.times, jag.times)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_history: expected an int >= 1, found 0"):
        RankConfig(max_history=0)
    with pytest.raises(ValueError, match="sequence_backend"):
        RankConfig(sequence_backend="dense")
    with pytest.raises(ValueError, match="num_heads"):
        RankConfig(embed_dim=10, num_heads=3)
    with pytest.raises(ValueError, match=r"activation_memory_budget: expected a float in \(0, 1\]"):
        RankConfig(activation_memory_budget=0.0)


def test_jagged_kernels_backend_matches_padded(rank_setup):
    """backend "auto": Triton kernels under TRITON_INTERPRET=1 (or on CUDA), else the reference."""
    ex, config = rank_setup("jagged", max_history=6)
    config = config.replace(attention_backend="auto")
    jagged = RankingModel(config)
    padded = RankingModel(config.replace(sequence_backend="padded"))
    padded.load_state_dict(jagged.state_dict())
    idx = _batch_idx(ex, 4)
    batch = ex.collate(idx, "jagged")
    out_j = jagged(batch.history, batch.candidates)
    out_p = padded(batch.history, batch.candidates)  # converted to padded inside
    torch.testing.assert_close(out_j, out_p, rtol=1e-4, atol=1e-5)
    out_j.sum().backward()
    out_p.sum().backward()
    grads_p = dict(padded.named_parameters())
    for name, p in jagged.named_parameters():
        torch.testing.assert_close(p.grad, grads_p[name].grad, rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True])
def test_gpu_jagged_matches_padded_fp32_and_bf16(rank_setup, compile):
    ex, config = rank_setup("jagged", max_history=64, num_layers=2)
    config = config.replace(attention_backend="auto")
    dev = torch.device("cuda")
    jagged = RankingModel(config).to(dev)
    padded = RankingModel(config.replace(sequence_backend="padded")).to(dev)
    padded.load_state_dict(jagged.state_dict())
    run_j = torch.compile(jagged) if compile else jagged
    idx = _batch_idx(ex, 16)
    jb = ex.collate(idx, "jagged").to(dev)
    pb = ex.collate(idx, "padded").to(dev)
    out_j = run_j(jb.history, jb.candidates)
    out_p = padded(pb.history, pb.candidates)
    torch.testing.assert_close(out_j, out_p, rtol=1e-2, atol=2e-3)  # tf32 dots in the kernels
    out_j.sum().backward()
    out_p.sum().backward()
    grads_p = dict(padded.named_parameters())
    for name, p in jagged.named_parameters():
        ref = grads_p[name].grad
        err = (p.grad - ref).norm() / ref.norm().clamp(min=1e-12)
        assert err < 2e-2, (name, float(err))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low_j = run_j(jb.history, jb.candidates).float()
        low_p = padded(pb.history, pb.candidates).float()
    assert torch.isfinite(low_j).all()
    assert (low_j - out_p).abs().max() <= 2 * (low_p - out_p).abs().max() + 2e-2


def test_length_groups_cover_every_sequence_within_the_budget():
    lengths = np.array([0, 5, 1, 9, 3, 3, 0, 12, 2, 7])
    groups = length_groups(lengths, 40)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))
    for g in groups:
        assert len(g) == 1 or len(g) * lengths[g].max() ** 2 <= 40
    assert [lengths[g].max() for g in groups] == sorted(lengths[g].max() for g in groups)
    assert len(length_groups(lengths, 10**6)) == 1
    assert len(length_groups(np.array([], dtype=np.int64), 40)) == 1  # one empty group


def test_grouped_cpu_attention_equals_one_call(rank_setup, monkeypatch):
    """Off CUDA, self-attention runs over groups of similar lengths, each padded to its own
    longest: same outputs and gradients as one padded call over the batch."""
    import shopml.rank.model as model_module

    ex, config = rank_setup("jagged", num_layers=2)
    model = RankingModel(config)
    batch = ex.collate(_batch_idx(ex, 10), "jagged")
    monkeypatch.setattr(model_module, "CPU_ATTENTION_PAIRS", 10**9)  # one group: one call
    whole = model(batch.history, batch.candidates)
    whole.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(model_module, "CPU_ATTENTION_PAIRS", 40)
    assert len(length_groups(batch.history.lengths.numpy(), 40)) > 2
    grouped = model(batch.history, batch.candidates)
    grouped.sum().backward()
    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("onehot_max_rows", [0, 128, 10_000])
def test_embed_equals_the_plain_lookups_and_row_0_gets_no_gradient(onehot_max_rows):
    """One lookup per table over history and candidates, small tables by a one-hot matmul: the
    same sums and gradients as nn.Embedding with padding_idx 0, whichever tables go which way."""
    from shopml.rank.batch import CANDIDATE_KEYS, HISTORY_KEYS

    config = RankConfig(num_items=300, num_categories=40, num_brands=150, num_time_buckets=12,
                        embed_dim=32, num_heads=2, num_layers=1, mlp_dims=(8,))  # fmt: skip
    torch.manual_seed(0)
    model = RankingModel(config)
    model.onehot_max_rows = onehot_max_rows
    tables = model._tables()
    ids = torch.stack([torch.randint(0, t.num_embeddings, (57,)) for t in tables])  # (K, T)
    ids[:, :5] = 0  # padding tokens
    cand = torch.stack([torch.randint(0, t.num_embeddings, (9,)) for t in tables[:3]])
    cand[:, 0] = 0
    g_tok, g_q = torch.randn(57, 32), torch.randn(9, 32)

    def grads(tokens, query):
        model.zero_grad(set_to_none=True)
        ((tokens * g_tok).sum() + (query * g_q).sum()).backward()
        return [t.weight.grad.clone() for t in tables]

    with torch.no_grad():  # forward only: gathers
        plain = model._embed(ids, cand)
    tokens, query = model._embed(ids, cand)
    torch.testing.assert_close(plain, (tokens, query))
    got = grads(tokens, query)
    ref_tokens = model._tokens(dict(zip(HISTORY_KEYS, ids, strict=True)))
    ref_query = model._query(dict(zip(CANDIDATE_KEYS, cand, strict=True)))
    want = grads(ref_tokens, ref_query)
    torch.testing.assert_close(tokens, ref_tokens)
    torch.testing.assert_close(query, ref_query)
    for name, a, b in zip(HISTORY_KEYS, got, want, strict=True):
        torch.testing.assert_close(a, b, msg=name)
        assert (a[0] == 0).all(), name  # the padding row stays 0
        assert a.abs().sum() > 0, name
