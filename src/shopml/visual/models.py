"""VisNet: a deep trunk plus two shallow multi-scale branches, projected to one unit-norm embedding.

Architecture (from the prototxt released with the paper, ``models/visnet/train.prototxt``)::

    image (3, S, S) --> trunk (VGG-16 conv1..fc7) --> fc8 (deep_dim) --> L2 normalise ----------+
          |--> max-pool 4/4 --> conv 96@8x8 s4 p4 --> ReLU --> LRN(5) --> max-pool 7 s4 p3 --+   |
          |--> max-pool 8/8 --> conv 96@8x8 s4 p4 --> ReLU --> LRN(5) --> max-pool 3 s2 p1 --+   |
                                    flatten both, concatenate, L2 normalise (2 x 96x5x5 at 224) -+
                                    concat (4800 + 4096) --> linear (embedding_dim) --> L2 normalise

The Caffe "LRN with a huge window" normalisation is an exact ``F.normalize`` here. Pooling uses
Caffe's ceil mode, so the branch outputs are 96x5x5 each at 224 px, as in the paper. The pixel
preprocessing is owned by the model (``embed`` takes raw images of any size and mode).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shopml.visual.config import VisNetConfig, default_normalization
from shopml.visual.images import normalize_pixels, to_uint8_batch
from shopml.visual.trunks import (
    build_trunk,
    efficientnet_lite0_weights_path,
    load_trunk_weights,
    read_state_dict,
)

CHECKPOINT_KIND = "visual.visnet"


class ShallowBranch(nn.Module):
    """Max-pool the input by ``factor``, then conv 8x8 stride 4, ReLU, LRN(5), max-pool (ceil mode)."""

    def __init__(self, factor: int, channels: int = 96) -> None:
        super().__init__()
        if factor not in (4, 8):
            raise ValueError(f"factor: expected 4 or 8, found {factor!r}")
        self.factor = factor
        self.conv = nn.Conv2d(3, channels, kernel_size=8, stride=4, padding=4)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
        # prototxt: pool 7 stride 4 pad 3 after the 4x branch, pool 3 stride 2 pad 1 after the 8x one
        k, s, p = (7, 4, 3) if factor == 4 else (3, 2, 1)
        self.pool = nn.MaxPool2d(k, s, p, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, self.factor, self.factor)  # (n, 3, S/f, S/f)
        x = self.lrn(F.relu(self.conv(x)))  # (n, C, S/4f + 1, S/4f + 1)
        return self.pool(x)  # (n, C, 5, 5) at S = 224


class VisNet(nn.Module):
    """The VisNet embedding network; see the module docstring for the diagram.

    Args:
        config: the architecture (trunk, widths, image size, pixel normalisation).
    """

    def __init__(self, config: VisNetConfig) -> None:
        super().__init__()
        self.config = config
        self.trunk = build_trunk(config.trunk, config.vgg_fc_dim, config.dropout)
        if config.head == "visnet":
            self.fc8 = nn.Linear(self.trunk.out_dim, config.deep_dim)
            nn.init.normal_(self.fc8.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc8.bias)
            proj_in = config.deep_dim
            if config.shallow:
                self.shallow4 = ShallowBranch(4, config.shallow_channels)
                self.shallow8 = ShallowBranch(8, config.shallow_channels)
                proj_in += self.shallow_dim()
            self.proj = nn.Linear(proj_in, config.embedding_dim)
            nn.init.normal_(self.proj.weight, 0.0, 0.005)
            nn.init.zeros_(self.proj.bias)
        if config.channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def dim(self) -> int:
        """Width of the embedding."""
        return self.config.embedding_dim if self.config.head == "visnet" else self.trunk.out_dim

    def shallow_dim(self) -> int:
        """Flattened width of the two shallow branches at this image size (4800 at 224 px)."""
        s = self.config.image_size
        with torch.no_grad():
            x = torch.zeros(1, 3, s, s)
            return int(self.shallow4(x).numel() + self.shallow8(x).numel())

    def shallow_features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened, concatenated, L2-normalised shallow features; (n, shallow_dim)."""
        a = torch.flatten(self.shallow4(x), 1)  # (n, C*h4*w4)
        b = torch.flatten(self.shallow8(x), 1)  # (n, C*h8*w8)
        return F.normalize(torch.cat([a, b], dim=1).float(), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a normalised batch.

        Args:
            x: (n, 3, S, S) float tensor, already normalised (see ``normalize``), on the model's device.

        Returns:
            (n, dim) float32 unit vectors.
        """
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.trunk(x)  # (n, trunk_dim)
        if self.config.head == "trunk":
            return F.normalize(feats.float(), dim=1)
        deep = F.normalize(self.fc8(feats).float(), dim=1)  # (n, deep_dim)
        if self.config.shallow:
            deep = torch.cat([self.shallow_features(x).to(deep.dtype), deep], dim=1)
            deep = deep.to(x.dtype) if x.dtype != torch.float32 else deep
        return F.normalize(self.proj(deep).float(), dim=1)  # (n, embedding_dim)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (n, 3, S, S) -> float32 with the pixel normalisation this trunk expects."""
        return normalize_pixels(x, self.config.normalization)

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor:
        """Raw images (paths, bytes, PIL, arrays; any size and mode) -> (n, 3, S, S) uint8 on CPU."""
        return to_uint8_batch(images, self.config.image_size)

    @torch.inference_mode()
    def embed(
        self,
        images: Sequence[Any] | torch.Tensor,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        bf16: bool = True,
    ) -> np.ndarray:
        """Embed raw images; returns (n, dim) float32 unit vectors (numpy, CPU).

        Args:
            images: a sequence of image paths / bytes / PIL images / uint8 arrays of any size and
                mode, or a (n, 3, S, S) uint8 tensor already resized to ``image_size``.
            batch_size: images per forward pass.
            device: where to run; default: the model's device.
            bf16: autocast to bfloat16 when running on CUDA.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, found {batch_size!r}")
        dev = torch.device(device) if device is not None else next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = np.empty((len(images), self.dim), dtype=np.float32)
        try:
            for start in range(0, len(images), batch_size):
                chunk = images[start : start + batch_size]
                x = chunk if isinstance(chunk, torch.Tensor) else self.preprocess(chunk)
                x = self.normalize(x.to(dev, non_blocking=True))
                with torch.autocast("cuda", torch.bfloat16, enabled=bf16 and dev.type == "cuda"):
                    out[start : start + len(chunk)] = self(x).float().cpu().numpy()
        finally:
            self.train(was_training)
        return out


def build_model(
    config: VisNetConfig, pretrained: bool = False, weights: str | os.PathLike | None = None
) -> VisNet:
    """Build a VisNet; ``pretrained`` loads the shipped EfficientNet-Lite0 ImageNet weights,
    ``weights`` loads a trunk weights file in its source format (torchvision for VGG-16 / ResNet)."""
    model = VisNet(config)
    if weights is not None:
        load_trunk_weights(model.trunk, config.trunk, read_state_dict(weights))
    elif pretrained:
        if config.trunk != "efficientnet_lite0":
            raise ValueError(
                f"pretrained: only efficientnet_lite0 ships weights offline; for {config.trunk} "
                f"pass a torchvision weights file (pretrained:{config.trunk}:PATH), found none"
            )
        load_trunk_weights(
            model.trunk, config.trunk, read_state_dict(efficientnet_lite0_weights_path())
        )
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def save_model(model: VisNet, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Save a VisNet checkpoint directory (safetensors weights + config JSON)."""
    from shopml.common.checkpoint import save_checkpoint

    return save_checkpoint(path, model.state_dict(), model.config, CHECKPOINT_KIND, extra=extra)


def load_model(spec: str | os.PathLike, device: str | torch.device = "cpu") -> VisNet:
    """Load a model from a checkpoint directory, a run directory (its ``model/``), or a spec
    ``pretrained:<trunk>[:<weights file>][@<image size>]`` (an untrained frozen-trunk embedder).

    Raises:
        ValueError: when the spec or checkpoint is not usable, naming what was found.
    """
    from shopml.common.checkpoint import config_from_dict, load_checkpoint

    text = str(spec)
    if text.startswith("pretrained:"):
        body = text[len("pretrained:") :]
        size = 224
        if "@" in body:
            body, size_text = body.rsplit("@", 1)
            if not size_text.isdigit():
                raise ValueError(f"model: expected pretrained:<trunk>[@size], found {text!r}")
            size = int(size_text)
        trunk, _, weights = body.partition(":")
        config = VisNetConfig(
            trunk=trunk, head="trunk", image_size=size, normalization=default_normalization(trunk)
        )
        model = build_model(config, pretrained=not weights, weights=weights or None)
        return model.to(device).eval()
    path = Path(text)
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model: expected a checkpoint directory (config.json + model.safetensors), a run "
            f"directory or pretrained:<trunk>, found {text!r}"
        )
    state, meta = load_checkpoint(path, CHECKPOINT_KIND)
    config = config_from_dict(VisNetConfig, meta["config"])
    model = VisNet(dataclasses.replace(config))
    model.load_state_dict(state)
    return model.to(device).eval()
