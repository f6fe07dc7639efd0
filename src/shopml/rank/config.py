"""Configuration of the ranking model, its features and its training run.

One frozen dataclass holds everything a run needs to be rebuilt: the feature sizes (vocabularies are
filled in from the data at training time), the architecture, and the optimisation settings. It is
saved inside every checkpoint (``shopml.common.checkpoint``), so a saved run loads without the code's
defaults having to match.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shopml.formats.schemas import ACTIONS, SPLITS  # noqa: F401 - re-exported for rank

SEQUENCE_BACKENDS = ("jagged", "padded", "pooling")


@dataclass(frozen=True)
class RankConfig:
    """Ranking model, features and training settings.

    Attributes:
        num_items / num_categories / num_brands: vocabulary sizes *including* index 0, which is
            padding / unknown. Filled in from the catalog by :func:`shopml.rank.data.build_vocab`.
        max_history: most recent events kept per impression (>= 1).
        num_time_buckets: log2-spaced buckets of "time since the event" (seconds before the
            impression), a history feature.
        embed_dim: width E of every embedding and of the sequence encoder.
        num_heads: attention heads (``embed_dim`` must be divisible by it).
        num_layers: jagged self-attention blocks in the history encoder (0 allowed).
        num_bias_buckets: buckets of the learnable relative-time attention bias (0 disables it).
        ffn_mult: hidden width of each encoder block's feed-forward = ``ffn_mult * embed_dim``.
        num_cross_layers: DCN-v2 cross layers in the interaction block.
        cross_rank: rank of each cross layer's weight (0 = full rank).
        mlp_dims: hidden widths of the top MLP.
        dropout: dropout in the encoder and the top MLP.
        sequence_backend: "jagged" (KeyedJaggedTensor + jagged attention), "padded" (the same
            model on padded tensors with SDPA and masks) or "pooling" (mean pooling, no attention).
        attention_backend: backend of the jagged attention modules ("auto", "triton", "reference").
        epochs, batch_size, lr, weight_decay, grad_clip, seed: optimisation settings (AdamW).
        activation_memory_budget: in (0, 1]; with the compiled graph step (the default on a GPU),
            the share of the backward's activations AOTAutograd may save (1: its default; lower
            recomputes cheap ops in the backward instead: on an H200 at B=256, N=1024, 0.5 took
            the step's peak memory from 669 to 500 MiB at 14% more step time,
            benchmarks/README.md).
        num_workers: data-loader worker processes (0 = load in the training process).
        max_train_examples / max_eval_examples: train on the most recent N train impressions and
            evaluate on the first N test impressions (0 = all); a time budget for CPU runs.
    """

    num_items: int = 1
    num_categories: int = 1
    num_brands: int = 1
    max_history: int = 256
    num_time_buckets: int = 24
    embed_dim: int = 64
    num_heads: int = 2
    num_layers: int = 1
    num_bias_buckets: int = 16
    ffn_mult: int = 2
    num_cross_layers: int = 2
    cross_rank: int = 0
    mlp_dims: tuple[int, ...] = (128, 64)
    dropout: float = 0.0
    sequence_backend: str = "jagged"
    attention_backend: str = "auto"
    epochs: int = 2
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    activation_memory_budget: float = 1.0
    seed: int = 0
    num_workers: int = 0
    max_train_examples: int = 0
    max_eval_examples: int = 0

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ValueError(f"{name}: expected {expected}, found {getattr(self, name)!r}")

        for name in ("num_items", "num_categories", "num_brands"):
            need(
                isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                name,
                "an int >= 1",
            )
        need(
            isinstance(self.max_history, int) and self.max_history >= 1,
            "max_history",
            "an int >= 1",
        )
        need(self.num_time_buckets >= 1, "num_time_buckets", "an int >= 1")
        need(self.embed_dim >= 1, "embed_dim", "an int >= 1")
        need(
            self.num_heads >= 1 and self.embed_dim % self.num_heads == 0,
            "num_heads",
            f"an int >= 1 dividing embed_dim={self.embed_dim}",
        )
        if self.sequence_backend != "pooling":
            head_dim = self.embed_dim // self.num_heads
            need(
                16 <= head_dim <= 256,
                "embed_dim",
                f"embed_dim / num_heads in [16, 256] for attention (found head dim {head_dim})",
            )
        need(self.num_layers >= 0, "num_layers", "an int >= 0")
        need(self.max_train_examples >= 0, "max_train_examples", "an int >= 0")
        need(self.max_eval_examples >= 0, "max_eval_examples", "an int >= 0")
        need(self.num_bias_buckets >= 0, "num_bias_buckets", "an int >= 0")
        need(self.ffn_mult >= 1, "ffn_mult", "an int >= 1")
        need(self.num_cross_layers >= 0, "num_cross_layers", "an int >= 0")
        need(self.cross_rank >= 0, "cross_rank", "an int >= 0")
        need(all(int(d) >= 1 for d in self.mlp_dims), "mlp_dims", "positive widths")
        need(0.0 <= self.dropout < 1.0, "dropout", "a float in [0, 1)")
        need(
            self.sequence_backend in SEQUENCE_BACKENDS,
            "sequence_backend",
            f"one of {SEQUENCE_BACKENDS}",
        )
        need(
            self.attention_backend in ("auto", "triton", "reference"),
            "attention_backend",
            "'auto', 'triton' or 'reference'",
        )
        need(self.epochs >= 1, "epochs", "an int >= 1")
        need(self.batch_size >= 1, "batch_size", "an int >= 1")
        need(self.lr > 0, "lr", "a float > 0")
        need(self.weight_decay >= 0, "weight_decay", "a float >= 0")
        need(self.grad_clip >= 0, "grad_clip", "a float >= 0 (0 disables clipping)")
        need(
            0 < self.activation_memory_budget <= 1,
            "activation_memory_budget",
            "a float in (0, 1] (1: save what AOTAutograd chooses)",
        )
        need(self.seed >= 0, "seed", "an int >= 0")
        need(self.num_workers >= 0, "num_workers", "an int >= 0")
        object.__setattr__(self, "mlp_dims", tuple(int(d) for d in self.mlp_dims))

    def replace(self, **changes: object) -> RankConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)
