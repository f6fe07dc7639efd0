"""Training lowers the triplet loss and raises street-to-shop recall; resume continues the run."""

from __future__ import annotations

import json

import torch

from shopml.visual.config import TrainConfig, VisNetConfig
from shopml.visual.data import build_training_set
from shopml.visual.evaluate import street2shop
from shopml.visual.losses import TripletLoss
from shopml.visual.models import build_model, load_model
from shopml.visual.train import train

MODEL = VisNetConfig(
    trunk="efficientnet_lite0", normalization="lite", image_size=64, embedding_dim=64, deep_dim=128
)
RUN = TrainConfig(
    epochs=4, batch_size=24, samples_per_product=3, lr=1e-3, trunk_lr_scale=0.5, warmup_steps=2
)


def _plain_loss(model, data) -> float:
    """Triplet loss over every valid triplet of the un-augmented training images."""
    model.eval()
    with torch.no_grad():
        emb = model(model.normalize(data.images))
    return float(TripletLoss(RUN.margin)(emb, torch.from_numpy(data.product)))


def test_training_lowers_loss_raises_recall_and_resumes(visual_world, tmp_path):
    data = build_training_set(visual_world, MODEL.image_size)
    torch.manual_seed(RUN.seed)
    before = build_model(MODEL, pretrained=True)
    loss_before = _plain_loss(before, data)
    recall_before = street2shop(before, visual_world, split="all")["recall@1"]

    history = train(visual_world, tmp_path / "run", MODEL, RUN, device="cpu", progress=False,
                    steps_per_epoch=5)  # fmt: skip
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3, 4]
    after = load_model(tmp_path / "run")
    assert _plain_loss(after, data) < 0.8 * loss_before
    recall_after = street2shop(after, visual_world, split="all")["recall@1"]
    assert recall_after >= recall_before + 0.1, (recall_before, recall_after)
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(saved["epochs"]) == 4 and set(saved["epochs"][0]["negatives"]) == {
        "same_style",
        "same_category",
        "other_category",
    }

    # resume: one more epoch continues from the saved state, earlier epochs untouched
    more = train(visual_world, tmp_path / "run", MODEL, RUN.__class__(**{**RUN.__dict__, "epochs": 5}),
                 device="cpu", progress=False, steps_per_epoch=5)  # fmt: skip
    assert [e["epoch"] for e in more["epochs"]] == [1, 2, 3, 4, 5]
    assert more["epochs"][:4] == history["epochs"]
    resumed = load_model(tmp_path / "run")
    assert not torch.equal(resumed.proj.weight, after.proj.weight)
