"""Metrics, batch prediction, and loading a trained run.

Metrics of binary click prediction:

- ``auc``: ROC AUC with tied scores counted as half (Mann-Whitney U with mid-ranks);
- ``logloss``: mean binary cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7]);
- ``normalized_entropy``: logloss divided by the entropy of the label base rate (He et al., 2014,
  "Practical Lessons from Predicting Clicks on Ads at Facebook"); < 1 means better than predicting
  the average click rate;
- ``examples``: number of scored impressions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopml.common.checkpoint import config_from_dict, load_checkpoint
from shopml.common.io import write_json
from shopml.rank.buckets import pack
from shopml.rank.config import RankConfig
from shopml.rank.data import RankExamples, log_fill
from shopml.rank.graphs import GraphInference
from shopml.rank.loader import BatchLoader, history_layout
from shopml.rank.tables import RankTables
from shopml.rank.vocab import RankVocab

CHECKPOINT_KIND = "shopml.rank"
EPS = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via mid-ranks; NaN if only one class is present."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # mid-rank of each group of tied scores (1-based ranks)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    mid = (starts + ends + 1) / 2.0
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat(mid, ends - starts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """``auc``, ``logloss``, ``normalized_entropy``, ``examples`` and the base ``ctr``."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probs = np.clip(np.asarray(probs, dtype=np.float64).ravel(), EPS, 1 - EPS)
    if labels.size == 0:
        raise ValueError("labels: expected at least one example, found none")
    if labels.shape != probs.shape:
        raise ValueError(f"probs: expected shape {labels.shape} like labels, found {probs.shape}")
    logloss = float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))
    p = float(np.clip(labels.mean(), EPS, 1 - EPS))
    base = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return {
        "auc": roc_auc(labels, probs),
        "logloss": logloss,
        "normalized_entropy": logloss / base,
        "examples": int(labels.size),
        "ctr": float(labels.mean()),
    }


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    examples: RankExamples,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    autocast: bool = False,
    *,
    graphs: bool | None = None,
) -> np.ndarray:
    """Click probabilities ``(n,)`` float64 of every example, in order.

    On CUDA the "jagged" and "pooling" models run from CUDA graphs (one per shape bucket,
    :class:`~shopml.rank.graphs.GraphInference`, kept on the model for later calls); ``graphs``
    forces that on (CUDA only) or off. The service's ranker calls this function.
    """
    was_training = model.training
    model.eval()
    layout = history_layout(model.config.sequence_backend)
    device = torch.device(device)
    if graphs is None:
        graphs = device.type == "cuda" and layout == "jagged"
    out = []
    from shopml.jagged.checks import checks_enabled

    try:
        runner = graph_inference(model, autocast) if graphs else None
        loader = BatchLoader(
            examples, batch_size, layout, pin_memory=device.type == "cuda" and runner is None
        )
        with checks_enabled(False):  # offsets were checked when the batches were collated
            for batch in loader:
                if runner is not None:
                    packed = pack(batch, model.config.max_history, pin_memory=device.type == "cuda")
                    logits = runner(packed)
                else:
                    batch = batch.to(device, non_blocking=True)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = model(batch.history, batch.candidates)
                out.append(torch.sigmoid(logits.float()))
    finally:
        model.train(was_training)
    return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)


def graph_inference(model: torch.nn.Module, autocast: bool) -> GraphInference:
    """The model's :class:`~shopml.rank.graphs.GraphInference` (created at the first call)."""
    runner = model.__dict__.get("_graph_inference")
    if runner is None or runner.autocast != autocast:
        runner = GraphInference(model, autocast=autocast)
        model.__dict__["_graph_inference"] = runner
    return runner


def evaluate_model(
    model: torch.nn.Module,
    examples: RankExamples,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    autocast: bool = False,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``examples`` plus their history-length statistics."""
    probs = predict(model, examples, batch_size, device, autocast)
    metrics: dict[str, Any] = binary_metrics(examples.labels, probs)
    metrics["history"] = log_fill(examples)
    return metrics


def load_run(
    run_dir: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, RankVocab, dict[str, Any]]:
    """Load the model of a training run directory (``RUN/checkpoint``).

    Returns:
        ``(model, vocab, meta)``; the model is in eval mode on ``device``.
    """
    from shopml.rank.model import RankingModel

    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint"
    if not ckpt.is_dir():
        raise ValueError(
            f"model: expected a run directory with checkpoint/ inside, found {run_dir}"
        )
    state, meta = load_checkpoint(ckpt, CHECKPOINT_KIND, map_location="cpu")
    config = config_from_dict(RankConfig, meta["config"])
    model = RankingModel(config)
    model.load_state_dict(state)
    model.to(device).eval()
    vocab = RankVocab.from_dict(meta["extra"]["vocab"])
    return model, vocab, meta


def evaluate_run(
    run_dir: str | os.PathLike[str],
    world_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    split: str = "test",
    device: str = "auto",
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Evaluate a trained run on ``split`` of a world; write the metrics JSON to ``out`` if given."""
    from shopml.common.devices import resolve_device

    dev = resolve_device(device)
    model, vocab, _ = load_run(run_dir, dev)
    config: RankConfig = model.config
    tables = RankTables.from_world(world_dir)
    examples = RankExamples.build(tables, vocab, split, config.max_history, config.num_time_buckets)
    metrics = evaluate_model(model, examples, batch_size, dev, autocast=dev.type == "cuda")
    metrics["split"] = split
    metrics["sequence_backend"] = config.sequence_backend
    if out is not None:
        write_json(out, metrics)
    return metrics
