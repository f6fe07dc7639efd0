"""The relative bias's attention kernels on the ranking model's own inputs (issue 13).

Captures the first self-attention call of one graph training step (bench_rank's batch: B
examples, N=1024, mean fill 0.2, the model's 16 time buckets): its strided q/k/v views, event
times and the bucket's dummy sequences; then times the three kernels (device us a call, profiler,
mean of 10 forward+backward calls, two rounds) on those inputs, on contiguous copies, with the
dummy tokens' times spread, without the dummies, and on attention_bias.py's synthetic case.
GPU only:

    PYTHONPATH=src python3 benchmarks/rank_attention_inputs.py 256
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import attention_bias as ab  # noqa: E402
import bench_rank as br  # noqa: E402

import shopml.jagged.attention as ja  # noqa: E402
from shopml.rank.buckets import pack  # noqa: E402
from shopml.rank.config import RankConfig  # noqa: E402
from shopml.rank.graphs import GraphTrainStep, make_optimizer  # noqa: E402
from shopml.rank.model import RankingModel  # noqa: E402

captured = []
real = ja._triton_attention()


def spy(q, k, v, offsets, max_seqlen, *a, **kw):
    if isinstance(kw.get("attn_bias"), ja.RelativeBias) and not captured:
        captured.append((q, k, v, offsets, max_seqlen, a, kw))
    return real(q, k, v, offsets, max_seqlen, *a, **kw)


ja._TRITON_ATTENTION = spy
b, n = int(sys.argv[1]) if len(sys.argv) > 1 else 256, 1024
rng = np.random.default_rng(0)
lengths = br.heavy_tailed_lengths(rng, b, n, 0.2)
ex = br.synthetic_examples(rng, lengths, n, 100_000)
batch = ex.collate(np.arange(b), "jagged")
config = RankConfig(num_items=100_000, num_categories=65, num_brands=513, max_history=n,
                    embed_dim=128, num_heads=2, num_layers=2, num_bias_buckets=16,
                    mlp_dims=(256, 128), sequence_backend="jagged")  # fmt: skip
dev = torch.device("cuda")
model = RankingModel(config).to(dev)
opt = make_optimizer(model, 1e-3, 1e-4, dev)
packed = pack(batch, n, pin_memory=True)
step = GraphTrainStep(model, opt, grad_clip=1.0, autocast=True, compile=False)
step(packed, 1.0 / b)
q, k, v, offsets, max_seqlen, a, kw = captured[0]
bias = kw["attn_bias"]
print(
    "captured:",
    q.shape,
    q.stride(),
    q.dtype,
    "offsets",
    offsets.shape,
    "max_seqlen",
    max_seqlen,
    "kw",
    {x: type(y).__name__ for x, y in kw.items()},
    "extra args",
    a,
)
print("bias consecutive", bias.consecutive, "bounds", bias.boundaries.tolist())
qt = bias.q_timestamps
off = offsets.cpu().numpy()
print(
    "times dtype",
    qt.dtype,
    "first seq times",
    qt[off[0] : off[0] + 5].tolist(),
    "last offsets",
    off[-6:].tolist(),
    "tail times",
    qt[-5:].tolist(),
)


class Captured:
    def __init__(self, contiguous=False, spread_dummies=False, drop_dummies=False):
        buf = torch.stack([q, k, v], 1).detach().clone().requires_grad_()
        self.buf = buf
        qq, kk, vv = buf.unbind(1)
        if contiguous:
            qq, kk, vv = (x.detach().contiguous().requires_grad_() for x in (qq, kk, vv))
        self.qkv = (qq, kk, vv)
        self.offsets = offsets.clone()
        t = bias.q_timestamps.clone()
        real_end = int(off[b])
        if spread_dummies:
            t[real_end:] = torch.arange(t.numel() - real_end, device=t.device) * 8 + 10**6
        if drop_dummies:
            self.offsets[b + 1 :] = real_end
        table = bias.table.detach().clone().requires_grad_()
        self.bias = dataclasses.replace(bias, table=table, q_timestamps=t, k_timestamps=t)
        self.grad = torch.randn_like(q)

    def step(self, mode):
        qq, kk, vv = self.qkv
        out = real(qq, kk, vv, self.offsets, max_seqlen, *a, **{**kw, "attn_bias": self.bias})
        out.backward(self.grad)


def show(name, make):
    try:
        ms = ab.kernel_ms(make(), "bias", 10)
    except Exception as exc:  # noqa: BLE001
        print(name, "failed", type(exc).__name__, str(exc)[:300], flush=True)
        return
    print(
        f"B={b} {name:28s} " + " ".join(f"{kk} {vv * 1e3:6.1f}us" for kk, vv in ms.items()),
        f"sum {sum(ms.values()) * 1e3:6.1f}us",
        flush=True,
    )


for _round in range(2):
    show("model inputs", lambda: Captured())
    show("contiguous q/k/v", lambda: Captured(contiguous=True))
    show("dummy times spread", lambda: Captured(spread_dummies=True))
    show("no dummies", lambda: Captured(drop_dummies=True))
    show("microbench Case", lambda: ab.Case(b, n, 0.2, "cuda"))
for name, launcher in ab.launchers().items():
    for compiled, meta, _ in launcher._cache.values():
        keep = {
            x: meta.get(x)
            for x in (
                "BLOCK_M",
                "BLOCK_N",
                "TMA",
                "BIAS_MODE",
                "CONSECUTIVE",
                "num_warps",
                "num_stages",
            )
        }
        print(name, keep, "regs", getattr(compiled, "n_regs", None))
