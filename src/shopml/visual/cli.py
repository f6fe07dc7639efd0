"""``shopml visual``: train, index, evaluate, recommend, search. Thin: the work lives in the modules.

The part's one entry point, also under torchrun: ``python -m shopml.visual.cli train ...``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from shopml.common.cli import config_options, exit_on_value_error
from shopml.visual.config import TrainConfig, VisNetConfig

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="A run directory, a checkpoint directory, or pretrained:<trunk>[:<weights>][@<size>].",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")]


MODEL_FIELDS = ("trunk", "embedding_dim", "deep_dim", "shallow", "image_size")
TRAIN_FIELDS = (
    "epochs", "batch_size", "samples_per_product", "miner", "margin", "lr", "trunk_lr_scale",
    "street_views", "clean_views", "street_weight", "val_fraction", "ema_decay", "batch_groups",
    "merge_duplicates", "warmup_steps", "weight_decay", "augment", "seed",
)  # fmt: skip


@app.command()
@exit_on_value_error
@config_options(
    VisNetConfig,
    MODEL_FIELDS,
    into="model_config",
    help={"trunk": "vgg16, efficientnet_lite0, resnet18/34/50 (the pixel normalisation follows)."},
)
@config_options(TrainConfig, TRAIN_FIELDS, into="config")
def train(
    world: Annotated[Path, typer.Option(help="World directory (catalog.parquet, street.parquet).")],
    out: Annotated[Path, typer.Option(help="Run directory (model/, history.json).")],
    model_config: VisNetConfig,
    config: TrainConfig,
    device: DeviceOpt = "auto",
    steps_per_epoch: Annotated[int, typer.Option(help="Batches per epoch (0: auto).")] = 0,
    max_seconds: Annotated[float, typer.Option(help="Training time budget (0: none).")] = 0.0,
    weights: Annotated[
        Path | None, typer.Option(help="Trunk weights file in torchvision format.")
    ] = None,
    pretrained: Annotated[bool, typer.Option(help="Shipped EfficientNet-Lite0 weights.")] = True,
    resume: Annotated[bool, typer.Option(help="Resume from RUN/train_state.pt.")] = True,
    progress: Annotated[bool, typer.Option(help="Report progress (rank 0).")] = True,
) -> None:
    """Train VisNet with the triplet loss on a world's catalog and street photos.

    Several processes: torchrun --nproc-per-node N -m shopml.visual.cli train ...
    """
    from shopml.visual.config import default_normalization
    from shopml.visual.train import train as run_train

    model_config = dataclasses.replace(
        model_config, normalization=default_normalization(model_config.trunk)
    )
    history = run_train(
        world, out, model_config, config, device=device, pretrained=pretrained, weights=weights,
        resume=resume, progress=progress, steps_per_epoch=steps_per_epoch or None,
        max_seconds=max_seconds or None,
    )  # fmt: skip
    last = history["epochs"][-1] if history["epochs"] else {}
    typer.echo(json.dumps({"run": str(out), "epochs": len(history["epochs"]), "last": last}))


@app.command()
@exit_on_value_error
def index(
    model: ModelOpt,
    world: Annotated[Path, typer.Option(help="World or catalog directory.")],
    out: Annotated[Path, typer.Option(help="Index directory to write.")],
    factory: Annotated[
        str, typer.Option(help="FAISS factory: Flat, IVF1024,PQ32, HNSW32...")
    ] = "Flat",
    backend: Annotated[str, typer.Option(help="faiss or milvus.")] = "faiss",
    milvus_uri: Annotated[
        str, typer.Option(help="Milvus URI (default: Milvus Lite file in OUT).")
    ] = "",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    device: DeviceOpt = "auto",
) -> None:
    """Embed the catalog and build a vector index over it."""
    from shopml.common.devices import resolve_device
    from shopml.visual.data import read_catalog
    from shopml.visual.index import build_catalog_index
    from shopml.visual.models import load_model

    net = load_model(model, device=resolve_device(device))
    catalog = read_catalog(world)
    build_catalog_index(net, catalog, out, factory, backend, milvus_uri, batch_size, str(model))
    typer.echo(json.dumps({"index": str(out), "vectors": len(catalog), "dim": net.dim}))


@app.command()
@exit_on_value_error
def evaluate(
    model: ModelOpt,
    world: Annotated[Path, typer.Option(help="World directory with street.parquet.")],
    out: Annotated[Path, typer.Option(help="JSON file for the metrics.")],
    index_dir: Annotated[
        Path | None, typer.Option("--index", help="Search this index instead of exact search.")
    ] = None,
    within_category: Annotated[
        bool, typer.Option(help="Search the query's category only.")
    ] = False,
    split: Annotated[str, typer.Option(help="Street split: test, train or all.")] = "test",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    device: DeviceOpt = "auto",
) -> None:
    """Street2Shop recall@1/5/10/20 (overall, per category) and same-style precision as JSON."""
    from shopml.common.devices import resolve_device
    from shopml.common.io import write_json
    from shopml.visual.evaluate import street2shop
    from shopml.visual.index import load_index
    from shopml.visual.models import load_model

    net = load_model(model, device=resolve_device(device))
    idx = load_index(index_dir) if index_dir is not None else None
    if idx is not None and idx.dim != net.dim:
        raise ValueError(
            f"index: expected vectors of dim {net.dim}, found an index of dim {idx.dim}"
        )
    result = street2shop(
        net, world, index=idx, within_category=within_category, split=split, batch_size=batch_size
    )
    result["model"] = str(model)
    write_json(out, result)
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "per_category"}))


@app.command()
@exit_on_value_error
def recommend(
    model: ModelOpt,
    index_dir: Annotated[
        Path, typer.Option("--index", help="Index directory (shopml visual index).")
    ],
    out: Annotated[Path, typer.Option(help="Parquet file (and .npz beside it) to write.")],
    k: Annotated[int, typer.Option(help="Recommendations per product.")] = 10,
    dup_threshold: Annotated[
        float, typer.Option(help="Cosine at or above which a neighbour is a near-duplicate.")
    ] = 0.995,
    within_category: Annotated[
        bool,
        typer.Option(help="Look-alikes within the product's category (--no-within-category: any)."),
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Queries per search / images per pass.")] = 256,
    device: DeviceOpt = "auto",
) -> None:
    """Precompute top-K visually similar products for every catalog item."""
    import numpy as np

    from shopml.common.devices import resolve_device
    from shopml.visual.index import EMBEDDINGS_FILE, load_index, read_index_catalog
    from shopml.visual.models import load_model
    from shopml.visual.recommend import recommend_all

    idx = load_index(index_dir)
    catalog = read_index_catalog(index_dir)
    if k > len(catalog) - 1:
        raise ValueError(
            f"k: expected at most {len(catalog) - 1} (catalog size minus the item), found {k}"
        )
    emb_file = index_dir / EMBEDDINGS_FILE
    if emb_file.is_file():
        emb = np.load(emb_file)
    else:
        net = load_model(model, device=resolve_device(device))
        emb = net.embed(list(catalog["image"]), batch_size=batch_size)
    if emb.shape[1] != idx.dim:
        raise ValueError(f"model: expected embeddings of dim {idx.dim}, found {emb.shape[1]}")
    recs = recommend_all(
        idx,
        emb,
        catalog["product_id"].to_numpy(),
        catalog["style_id"].to_numpy() if "style_id" in catalog else None,
        k=k,
        dup_threshold=dup_threshold,
        batch_size=batch_size,
        categories=catalog["category"].to_numpy() if within_category else None,
    )
    recs.save(out)
    filled = float((recs.rec_ids >= 0).mean())
    typer.echo(
        json.dumps({"out": str(out), "products": len(recs.product_ids), "k": k, "filled": filled})
    )


@app.command()
@exit_on_value_error
def search(
    image: Annotated[Path, typer.Argument(help="A query photo (any size, PNG or JPEG).")],
    model: ModelOpt,
    index_dir: Annotated[Path, typer.Option("--index", help="Index directory.")],
    k: Annotated[int, typer.Option(help="Results to return.")] = 10,
    category: Annotated[str | None, typer.Option(help="Search this category only.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Find the catalog products that look like IMAGE; prints JSON lines (rank, product, score)."""
    from shopml.common.devices import resolve_device
    from shopml.visual.index import load_index, read_index_catalog
    from shopml.visual.models import load_model

    if k < 1:
        raise ValueError(f"k: expected a positive int, found {k}")
    net = load_model(model, device=resolve_device(device))
    idx = load_index(index_dir)
    if idx.dim != net.dim:
        raise ValueError(
            f"index: expected vectors of dim {net.dim}, found an index of dim {idx.dim}"
        )
    query = net.embed([image])
    scores, ids = idx.search(query, k, category=category)
    catalog = read_index_catalog(index_dir).set_index("product_id")
    for rank, (pid, score) in enumerate(zip(ids[0].tolist(), scores[0].tolist(), strict=True), 1):
        if pid < 0:
            break
        row = {"rank": rank, "product_id": pid, "score": round(score, 6)}
        if pid in catalog.index:
            row["category"] = str(catalog.loc[pid, "category"])
        typer.echo(json.dumps(row))


if __name__ == "__main__":  # torchrun --nproc-per-node N -m shopml.visual.cli train ...
    app()
