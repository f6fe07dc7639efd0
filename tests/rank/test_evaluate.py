from __future__ import annotations

import numpy as np
import pytest

from shopml.rank.evaluate import binary_metrics, roc_auc


def test_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + labels, 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    expected = (diff > 0).mean() + 0.5 * (diff == 0).mean()
    assert roc_auc(labels, scores) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(roc_auc(np.ones(5), np.arange(5)))


def test_binary_metrics():
    labels = np.array([0, 0, 1, 1])
    m = binary_metrics(labels, np.full(4, 0.5))
    assert m["auc"] == 0.5 and m["normalized_entropy"] == pytest.approx(1.0)
    good = binary_metrics(labels, np.array([0.1, 0.2, 0.8, 0.9]))
    assert good["auc"] == 1.0 and good["normalized_entropy"] < 0.5 and good["examples"] == 4
    with pytest.raises(ValueError, match="labels"):
        binary_metrics(np.zeros(0), np.zeros(0))
