"""One place to seed every random number generator."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a fresh NumPy ``Generator``."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, found {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
