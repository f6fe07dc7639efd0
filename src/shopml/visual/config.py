"""Frozen configurations of the visual part: the model and its training run."""

from __future__ import annotations

from dataclasses import dataclass

TRUNKS = ("vgg16", "efficientnet_lite0", "resnet18", "resnet34", "resnet50")
HEADS = ("visnet", "trunk")
NORMALIZATIONS = ("imagenet", "lite", "caffe")
MINERS = ("batch_hard", "semihard", "all")
BATCH_GROUPS = ("category", "style")


@dataclass(frozen=True)
class VisNetConfig:
    """Architecture of a VisNet embedding model.

    Attributes:
        trunk: the deep trunk, one of ``TRUNKS``. ``vgg16`` is the paper's (conv1..fc7).
        head: ``"visnet"`` (deep fc + two shallow branches + projection, as in the paper) or
            ``"trunk"`` (the trunk's pooled features, L2-normalised: a frozen-feature baseline).
        embedding_dim: width of the final embedding (4096 in the paper).
        deep_dim: width of the new fc layer after the trunk ("fc8", 4096 in the paper).
        vgg_fc_dim: width of VGG's fc6/fc7 (4096 for torchvision weights; smaller only in tests).
        shallow: whether the two shallow branches are used (the paper: yes).
        shallow_channels: filters of each shallow conv (96 in the paper).
        image_size: side of the square input after preprocessing (224 in the paper).
        normalization: pixel normalisation owned by the model: ``imagenet`` (torchvision weights),
            ``lite`` ((x*255 - 127) / 128, EfficientNet-Lite's), ``caffe`` (raw 0..255, the prototxt's).
        dropout: dropout after VGG's fc6 and fc7 (0.4 in the prototxt).
        channels_last: run the convolutions in channels-last memory format.
    """

    trunk: str = "vgg16"
    head: str = "visnet"
    embedding_dim: int = 4096
    deep_dim: int = 4096
    vgg_fc_dim: int = 4096
    shallow: bool = True
    shallow_channels: int = 96
    image_size: int = 224
    normalization: str = "imagenet"
    dropout: float = 0.4
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.trunk not in TRUNKS:
            raise ValueError(f"trunk: expected one of {TRUNKS}, found {self.trunk!r}")
        if self.head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, found {self.head!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization: expected one of {NORMALIZATIONS}, found {self.normalization!r}"
            )
        for name in ("embedding_dim", "deep_dim", "vgg_fc_dim", "shallow_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, found {value!r}")
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size: expected an int >= 32, found {self.image_size!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), found {self.dropout!r}")


def default_normalization(trunk: str) -> str:
    """The pixel normalisation a trunk's pretrained weights expect."""
    return "lite" if trunk == "efficientnet_lite0" else "imagenet"


@dataclass(frozen=True)
class TrainConfig:
    """One training run of VisNet with a triplet loss.

    Attributes:
        epochs: passes over the training images.
        batch_size: images per batch (per process under torchrun).
        samples_per_product: images (views) of each product in a batch (MPerClass-style sampling).
        margin: triplet margin on squared L2 distances between unit vectors (range 0..4).
        miner: ``batch_hard``, ``semihard`` or ``all`` (every valid triplet).
        lr: AdamW learning rate of the new layers; the pretrained trunk gets ``lr * trunk_lr_scale``.
        trunk_lr_scale: learning-rate factor of a pretrained trunk (0 freezes it).
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps, then cosine decay to 0.
        street_weight: how often a street photo is drawn relative to a catalog view when a product's
            views are sampled (rounded to an integer >= 1; 0 drops the street photos).
        augment: augment training views (``shopml.visual.augment``).
        street_views: fraction of augmented catalog views made to look like street photos
            (perspective-warped, composited on clutter, occluded, relit, blurred, noised).
        clean_views: fraction of catalog views left un-augmented (the gallery's domain).
        val_fraction: share of the products with ``train`` street photos held out as validation
            queries (recall@k in the history); 0: none.
        val_every: epochs between validation passes (0: only after the last epoch).
        ema_decay: exponential moving average of the weights (0: off); the saved model is the
            average.
        batch_groups: ``category`` (two categories per batch, products at random within them) or
            ``style`` (two categories, filled with whole style groups: colour variants meet).
        merge_duplicates: train products with pixel-identical catalog images as one class (they
            cannot be told apart; as negatives of each other they only add noise).
        bf16: autocast to bfloat16 on CUDA.
        num_workers: data-loader worker processes.
        seed: random seed.
        log_every: steps between progress lines.
    """

    epochs: int = 10
    batch_size: int = 64
    samples_per_product: int = 4
    margin: float = 0.2
    miner: str = "semihard"
    lr: float = 1e-3
    trunk_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    street_weight: float = 2.0
    augment: bool = True
    street_views: float = 0.7
    clean_views: float = 0.25
    val_fraction: float = 0.0
    val_every: int = 0
    ema_decay: float = 0.0
    batch_groups: str = "style"
    merge_duplicates: bool = True
    bf16: bool = True
    num_workers: int = 0
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.miner not in MINERS:
            raise ValueError(f"miner: expected one of {MINERS}, found {self.miner!r}")
        if self.batch_groups not in BATCH_GROUPS:
            raise ValueError(
                f"batch_groups: expected one of {BATCH_GROUPS}, found {self.batch_groups!r}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, found {self.epochs!r}")
        if self.samples_per_product < 2:
            raise ValueError(
                f"samples_per_product: expected >= 2 (a positive needs two views), "
                f"found {self.samples_per_product!r}"
            )
        if self.batch_size % (2 * self.samples_per_product):
            raise ValueError(
                f"batch_size: expected a multiple of 2 x samples_per_product="
                f"{2 * self.samples_per_product}, found {self.batch_size}"
            )
        if not 0.0 <= self.street_views <= 1.0:
            raise ValueError(
                f"street_views: expected a fraction in [0, 1], found {self.street_views!r}"
            )
        if not 0.0 <= self.clean_views <= 1.0:
            raise ValueError(
                f"clean_views: expected a fraction in [0, 1], found {self.clean_views!r}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(
                f"val_fraction: expected a fraction in [0, 1), found {self.val_fraction!r}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a float in [0, 1), found {self.ema_decay!r}")
        if self.street_weight < 0:
            raise ValueError(f"street_weight: expected >= 0, found {self.street_weight!r}")
        if self.margin < 0:
            raise ValueError(f"margin: expected >= 0, found {self.margin!r}")
