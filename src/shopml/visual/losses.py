"""The paper's triplet loss: hinge on squared L2 distances between unit embeddings.

``loss = mean over mined triplets (a, p, n) of max(0, |e_a - e_p|^2 - |e_a - e_n|^2 + margin)``.

Built on pytorch-metric-learning's ``TripletMarginLoss`` with an ``LpDistance(power=2)`` (squared
Euclidean) and a ``MeanReducer`` (every mined triplet counts, zero-loss ones too), so any of its
miners can supply the triplets. The prototxt's margin is 0.0009 on Caffe's approximately-normalised
vectors; with exact unit vectors (squared distances in 0..4) a margin near 0.2 is the usual choice.
"""

from __future__ import annotations

import torch


def squared_l2_distance():
    """pytorch-metric-learning distance: squared Euclidean between L2-normalised embeddings."""
    from pytorch_metric_learning.distances import LpDistance

    return LpDistance(normalize_embeddings=True, p=2, power=2)


class TripletLoss(torch.nn.Module):
    """Triplet hinge on squared L2 with a margin, over triplets from a miner (or all of them).

    Args:
        margin: the hinge margin on squared distances.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        from pytorch_metric_learning.losses import TripletMarginLoss
        from pytorch_metric_learning.reducers import MeanReducer

        if margin < 0:
            raise ValueError(f"margin: expected >= 0, found {margin!r}")
        self.margin = margin
        self.loss = TripletMarginLoss(
            margin=margin, distance=squared_l2_distance(), reducer=MeanReducer()
        )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Args:
        embeddings: (n, d) float tensor (normalised again inside, as the distance demands).
        labels: (n,) int64 product labels.
        indices_tuple: (anchors, positives, negatives), each (t,) int64; None uses all triplets.

        Returns:
            scalar loss (0 when there is no triplet).
        """
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"embeddings/labels: expected (n, d) and (n,), found {tuple(embeddings.shape)} "
                f"and {tuple(labels.shape)}"
            )
        return self.loss(embeddings.float(), labels, indices_tuple)


def triplet_loss_reference(
    embeddings: torch.Tensor,
    triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    margin: float,
) -> torch.Tensor:
    """A plain loop over triplets: the executable definition the tests compare against."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=1)
    total = torch.zeros((), dtype=torch.float64)
    anchors, positives, negatives = triplets
    for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist(), strict=True):
        d_ap = ((e[a] - e[p]) ** 2).sum()
        d_an = ((e[a] - e[n]) ** 2).sum()
        total = total + torch.clamp(d_ap - d_an + margin, min=0.0)
    return total / max(len(anchors), 1)
