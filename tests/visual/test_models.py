"""VisNet: shapes, unit norms, shallow-branch sizes, gradients, weight loading, preprocessing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shopml.visual.config import VisNetConfig
from shopml.visual.models import ShallowBranch, VisNet, build_model, load_model, save_model

SMALL = dict(image_size=64, embedding_dim=32, deep_dim=48, vgg_fc_dim=64)


def _batch(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8)


@pytest.mark.parametrize(
    "trunk", ["vgg16", "efficientnet_lite0", "resnet18", "resnet34", "resnet50"]
)
@pytest.mark.parametrize("head", ["visnet", "trunk"])
def test_every_trunk_gives_unit_vectors(trunk, head):
    model = VisNet(VisNetConfig(trunk=trunk, head=head, **SMALL))
    emb = model.embed(_batch(3))
    expected = {"vgg16": 64, "efficientnet_lite0": 1280, "resnet18": 512, "resnet34": 512}
    dim = 32 if head == "visnet" else expected.get(trunk, 2048)
    assert emb.shape == (3, dim) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert model.dim == dim


def _caffe_side(size: int, factor: int) -> int:
    """Caffe's arithmetic: conv floor((i + 2p - k) / s) + 1; pooling ceil(...) + 1, clipped."""
    side = (size // factor + 2 * 4 - 8) // 4 + 1
    k, s, p = (7, 4, 3) if factor == 4 else (3, 2, 1)
    out = -(-(side + 2 * p - k) // s) + 1
    return out - 1 if (out - 1) * s >= side + p else out


@pytest.mark.parametrize(("size", "side4", "side8"), [(224, 5, 5), (64, 2, 2), (96, 3, 3)])
def test_shallow_branch_sizes(size, side4, side8):
    assert (_caffe_side(size, 4), _caffe_side(size, 8)) == (side4, side8)
    x = torch.randn(2, 3, size, size)
    assert ShallowBranch(4)(x).shape == (2, 96, side4, side4)
    assert ShallowBranch(8)(x).shape == (2, 96, side8, side8)


def test_paper_architecture_sizes_on_meta_device():
    with torch.device("meta"):
        model = VisNet(VisNetConfig())
    assert model.shallow_dim() == 4800  # 2 x 96 x 5 x 5, as in the prototxt
    assert model.proj.in_features == 4800 + 4096 and model.proj.out_features == 4096
    assert model.trunk.fc6.in_features == 512 * 7 * 7 and model.fc8.out_features == 4096
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 187.5e6) < 0.2e6  # research note: ~187.5 M parameters


@pytest.mark.parametrize("trunk", ["vgg16", "efficientnet_lite0"])
def test_every_parameter_gets_a_gradient(trunk):
    model = VisNet(VisNetConfig(trunk=trunk, dropout=0.0, **SMALL)).train()
    x = model.normalize(_batch(4))
    emb = model(x)
    (emb * torch.randn_like(emb)).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_save_load_gives_identical_outputs(tmp_path):
    model = VisNet(VisNetConfig(trunk="resnet18", **SMALL)).eval()
    x = _batch(2)
    save_model(model, tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")
    np.testing.assert_array_equal(model.embed(x), again.embed(x))
    assert again.config == model.config


def test_torchvision_vgg16_weights_load(tmp_path):
    from torchvision.models import vgg

    features = vgg.make_layers(vgg.cfgs["D"])  # torchvision's vgg16().features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    # the classifier of a torchvision-format file, at the test's reduced fc width
    state["classifier.0.weight"] = torch.randn(64, 25088)
    state["classifier.0.bias"] = torch.randn(64)
    state["classifier.3.weight"] = torch.randn(64, 64)
    state["classifier.3.bias"] = torch.randn(64)
    state["classifier.6.weight"] = torch.randn(1000, 64)
    state["classifier.6.bias"] = torch.randn(1000)
    torch.save(state, tmp_path / "vgg16.pth")
    model = build_model(VisNetConfig(trunk="vgg16", **SMALL), weights=tmp_path / "vgg16.pth")
    torch.testing.assert_close(model.trunk.features[28].weight, features[28].weight)
    torch.testing.assert_close(model.trunk.fc6.weight, state["classifier.0.weight"])
    del state["classifier.3.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing"):
        build_model(VisNetConfig(trunk="vgg16", **SMALL), weights=tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="shape"):
        build_model(VisNetConfig(trunk="vgg16", image_size=64), weights=tmp_path / "vgg16.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        build_model(VisNetConfig(trunk="vgg16", **SMALL), weights=tmp_path / "corrupt.pth")


def test_torchvision_resnet_weights_give_torchvision_features(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None).eval()
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    model = build_model(
        VisNetConfig(trunk="resnet18", head="trunk", image_size=64), weights=tmp_path / "r18.pth"
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    tv.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(model.trunk(x), tv(x))


def test_efficientnet_lite0_shipped_weights_classify_a_photo():
    photo = Path(__import__("matplotlib").__file__).parent / "mpl-data/sample_data/grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib's sample photo is not installed")
    from shopml.visual.trunks import efficientnet_lite0_weights_path, read_state_dict

    model = load_model("pretrained:efficientnet_lite0")
    state = read_state_dict(efficientnet_lite0_weights_path())
    with torch.no_grad():
        feats = model.trunk(model.normalize(model.preprocess([photo])))
    logits = feats @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(logits.argmax()) == 652  # ImageNet class 652: military uniform


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_embed_takes_raw_images_of_any_size_and_mode(tmp_path):
    model = VisNet(VisNetConfig(trunk="efficientnet_lite0", **SMALL))
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    grey = rgb.convert("L")
    rgb.save(tmp_path / "a.jpg", quality=95)
    grey.save(tmp_path / "g.png")
    inputs = [
        tmp_path / "a.jpg",
        str(tmp_path / "g.png"),
        _png(rgba),
        rgb.convert("P"),
        rgb.convert("CMYK"),
        np.asarray(rgb.resize((300, 120))),
        np.asarray(grey),
        rgb,
    ]
    emb = model.embed(inputs, batch_size=3)
    assert emb.shape == (len(inputs), 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # transparency is composited onto white: a fully transparent image equals a white one
    clear = Image.new("RGBA", (40, 40), (10, 200, 30, 0))
    white = Image.new("RGB", (40, 40), (255, 255, 255))
    np.testing.assert_allclose(model.embed([clear]), model.embed([white]), atol=1e-6)


def test_embed_rejects_bad_images(tmp_path):
    model = VisNet(VisNetConfig(trunk="efficientnet_lite0", **SMALL))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="could not decode"):
        model.embed([tmp_path / "broken.png"])
    with pytest.raises(ValueError, match="found none"):
        model.embed([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="uint8"):
        model.embed([np.zeros((8, 8, 3), dtype=np.float32)])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="trunk"):
        VisNetConfig(trunk="alexnet")
    with pytest.raises(ValueError, match="image_size"):
        VisNetConfig(image_size=8)
    with pytest.raises(ValueError, match="pretrained"):
        build_model(VisNetConfig(trunk="resnet18", **SMALL), pretrained=True)
