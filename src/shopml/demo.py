"""The end-to-end demo behind ``make demo``: one world, the three jobs, one report, one service.

``shopml demo --out DIR`` lays out a work directory that ``shopml serve --workdir DIR`` serves::

    DIR/world/               the generated world (catalog, images, sales, events, impressions)
    DIR/rank/                the ranking model (jagged attention backend), DIR/rank-pooling/ its
                             mean-pooling baseline, each with metrics.json
    DIR/forecast/            AR-MDN trained on all sales; DIR/backtest/ metrics.csv + fan charts
    DIR/visual/finetuned/    VisNet (EfficientNet-Lite0 trunk + shallow branches, fine-tuned)
    DIR/visual/model/        the served embedding: fine-tuned or the frozen trunk, whichever has
                             the higher validation recall@20 (held-out train street photos)
    DIR/visual/index/        FAISS index of the catalog; DIR/visual/recs.parquet recommendations
    DIR/visual/*.json        street-to-shop recall@k, fine-tuned and frozen
    DIR/report.html          every table and plot

Budgets per scale keep the small demo to about ten minutes on a 2-core CPU; each step's time is
reported.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from shopml.common.memory import release_memory


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much each part trains at one scale."""

    rank_epochs: int
    rank_max_history: int
    rank_eval_examples: int  # first test impressions scored (0: all)
    forecast_epochs: int
    forecast_steps: int
    forecast_series: int | None  # series scored in the backtest (None: all)
    visual_epochs: int
    visual_steps: int | None
    visual_image_size: int
    visual_seconds: float
    forecast_baselines: tuple[str, ...] = ("snaive", "ets", "croston", "lightgbm")
    visual_recipe: tuple[tuple[str, float], ...] = ()  # TrainConfig fields changed for this budget


# VisNet's defaults are tuned for minutes of GPU training; for a CPU budget of minutes a faster
# learning rate, a less frozen trunk and more street photos per batch measured best: validation
# recall@20 0.362 vs 0.246 with the defaults (3 seeds, small world, 150 s at 96 px on 2 CPU cores;
# benchmarks/README.md, Visual, "The demo's CPU recipe").
_SHORT_VISUAL = (("lr", 3e-3), ("trunk_lr_scale", 0.3), ("street_weight", 4.0))

# The small forecast budget: 2 epochs x 100 steps instead of 4 x 30. Each epoch ends with a
# validation pass (sampled forecasts of 1,000 held-out horizons) that costs more CPU than 30
# steps, so halving the passes pays for 80 more steps: forecast step 475 s of CPU either way,
# AR-MDN wQL 0.585 vs 0.591 (LightGBM 0.599; benchmarks/README.md, "the demo's forecast").
# fmt: off
BUDGETS = {
    "tiny": Budget(1, 32, 0, 1, 5, None, 1, 3, 64, 60.0, ("snaive",), visual_recipe=_SHORT_VISUAL),
    "small": Budget(2, 64, 20_000, 2, 100, 300, 4, None, 96, 150.0, visual_recipe=_SHORT_VISUAL),
    "medium": Budget(3, 256, 0, 15, 100, 2000, 10, None, 160, 1800.0),
    "large": Budget(3, 256, 0, 20, 200, 5000, 10, None, 160, 3600.0),
}
# fmt: on


def peak_rss_mb(reset: bool = False) -> float | None:
    """This process's peak resident memory in MB since the last reset (Linux; None elsewhere).

    ``reset=True`` starts a new peak (writing 5 to /proc/self/clear_refs resets VmHWM), so each
    step's own peak is measured, not the running maximum.
    """
    import contextlib

    with contextlib.suppress(OSError):
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


class _Steps:
    """Runs named steps, printing and recording the time and peak memory of each."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        self.console.rule(name)
        release_memory()
        peak_rss_mb(reset=True)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = time.perf_counter() - t0
        peak = peak_rss_mb()
        memory = ""
        if peak is not None:
            self.peak_mb[name] = peak
            memory = f", peak memory {peak:,.0f} MB"
        self.console.print(f"[dim]{name}: {self.seconds[name]:.1f} s{memory}[/dim]")
        return result


def run_demo(out: Path, scale: str = "small", seed: int = 0, device: str = "auto") -> Path:
    """Generate a world in ``out/world``, train and evaluate the three parts, write the report.

    Returns:
        The path of ``out/report.html``.
    """
    from shopml.common.devices import resolve_device
    from shopml.world.describe import describe_world, print_summary
    from shopml.world.generate import generate_world

    if scale not in BUDGETS:
        raise ValueError(f"scale: expected one of {list(BUDGETS)}, found {scale!r}")
    dev = str(resolve_device(device))
    budget = BUDGETS[scale]
    out = Path(out)
    console = Console()
    step = _Steps(console)
    world = out / "world"
    step(f"world: generating a {scale} world", generate_world, world, scale=scale, seed=seed)
    summary = describe_world(world)
    print_summary(summary, console=console)
    results: dict[str, Any] = {"scale": scale, "seed": seed, "device": dev, "world": summary}
    results["rank"] = step("rank: jagged attention vs mean pooling", _rank, world, out, budget, dev)
    results["forecast"] = step("forecast: AR-MDN vs baselines", _forecast, world, out, budget, dev)
    results["visual"] = step("visual: VisNet search and recommendations", _visual, world, out,
                             budget, dev)  # fmt: skip
    if dev.startswith("cuda"):
        results["speed"] = step("jagged vs padded attention speed", _speed)
    results["seconds"] = step.seconds
    results["peak_mb"] = step.peak_mb
    from shopml.common.io import write_json
    from shopml.report import headline, write_report

    write_json(out / "demo.json", results)
    report = write_report(out, results)
    console.rule("done")
    for line in headline(results):
        console.print(line, highlight=False)
    console.print(f"report: {report}")
    console.print(f"serve it:  {serve_command(out)}   (then open http://127.0.0.1:8000/)")
    return report


def serve_command(out: Path) -> str:
    """The command that serves ``out``, as this shell can run it (``shopml`` need not be on PATH)."""
    import os
    import shlex
    import shutil
    import sys

    exe = Path(sys.executable).parent / "shopml"
    if shutil.which("shopml") and Path(shutil.which("shopml")).resolve() == exe.resolve():
        program = "shopml"
    elif exe.is_file():
        try:
            program = os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)
        except ValueError:
            program = str(exe)
    else:
        program = f"{shlex.quote(sys.executable)} -m shopml.cli"
    command = f"{program} serve --workdir {shlex.quote(str(out))}"
    if os.environ.get("MAKELEVEL"):  # run by `make demo`
        command = f"make serve   (or: {command})"
    return command


def _rank(world: Path, out: Path, budget: Budget, device: str) -> dict[str, Any]:
    from shopml.rank.config import RankConfig
    from shopml.rank.train import train

    metrics = {}
    for backend, run in (("jagged", out / "rank"), ("pooling", out / "rank-pooling")):
        config = RankConfig(
            sequence_backend=backend,
            epochs=budget.rank_epochs,
            max_history=budget.rank_max_history,
            max_eval_examples=budget.rank_eval_examples,
            embed_dim=32,
            # the Triton kernels on GPU; on CPU the PyTorch reference (never the interpreter)
            attention_backend="auto" if device.startswith("cuda") else "reference",
            seed=0,
        )
        _fresh(run)
        metrics[backend] = train(world, run, config, device=device, progress=True)
        release_memory()  # the first model's data before the second trains
    return metrics


def _forecast(world: Path, out: Path, budget: Budget, device: str) -> dict[str, Any]:
    from shopml.forecast.backtest import backtest
    from shopml.forecast.config import ARMDNConfig
    from shopml.forecast.data import load_table_or_world
    from shopml.forecast.estimator import ARMDN

    df, static_df = load_table_or_world(world)
    config = ARMDNConfig(
        freq="D",
        horizon=28,
        max_epochs=budget.forecast_epochs,
        steps_per_epoch=budget.forecast_steps,
        device=device,
    )
    result = backtest(
        df,
        static_df,
        config,
        windows=1,
        baselines=list(budget.forecast_baselines),
        out_dir=out / "backtest",
        max_series=budget.forecast_series,
        fan_charts=4,
        verbose=True,
    )
    # the served model: trained on all sales with the configuration the backtest's validation
    # chose (K, head), instead of fitting every candidate again (a pool refits its candidates)
    chosen = result["train"]["armdn"]
    pooled = bool(chosen.get("ensemble", {}).get("kept"))
    final = config if pooled else config.replace(select_components=False, **chosen["config"])
    ARMDN(final).fit(df, static_df, verbose=True).save(out / "forecast")
    metrics = result["metrics"]
    return {
        "metrics": metrics.to_dict(orient="records"),
        "series": result.get("series"),
        "charts": sorted(p.name for p in (out / "backtest").glob("*.png")),
        "selected": {
            **chosen["config"],
            "pooled": pooled,
            "validation_wql": chosen.get("selection", {}),
        },
    }


VISUAL_VAL_FRACTION = 0.1  # of the products with train street photos: held out to pick the model


def _visual(world: Path, out: Path, budget: Budget, device: str) -> dict[str, Any]:
    """Fine-tune VisNet, then serve whichever embedding (fine-tuned or the frozen pretrained
    trunk) has the higher validation recall@20; index, look-alikes and test recall for both."""
    import shutil

    import numpy as np
    import torch

    from shopml.common.io import write_json
    from shopml.visual.config import TrainConfig, VisNetConfig
    from shopml.visual.data import build_training_set, read_catalog
    from shopml.visual.evaluate import street2shop
    from shopml.visual.index import build_catalog_index
    from shopml.visual.models import load_model, save_model
    from shopml.visual.recommend import recommend_all
    from shopml.visual.train import train, validation_recall

    vdir = out / "visual"
    model_config = VisNetConfig(
        trunk="efficientnet_lite0",
        image_size=budget.visual_image_size,
        embedding_dim=256,
        deep_dim=512,
        normalization="lite",
    )
    train_config = TrainConfig(
        epochs=budget.visual_epochs,
        batch_size=32,
        samples_per_product=4,
        val_fraction=VISUAL_VAL_FRACTION,
        **dict(budget.visual_recipe),
    )
    for path in (vdir / "finetuned", vdir / "model"):
        _fresh(path)
    history = train(
        world,
        vdir / "finetuned",
        model_config,
        train_config,
        device=device,
        steps_per_epoch=budget.visual_steps,
        max_seconds=budget.visual_seconds,
    )
    finetuned_model = load_model(vdir / "finetuned", device=device)
    frozen_model = load_model(f"pretrained:efficientnet_lite0@{budget.visual_image_size}", device)
    held_out = build_training_set(
        world, budget.visual_image_size, street_weight=0.0,
        val_fraction=VISUAL_VAL_FRACTION, seed=train_config.seed,
    )  # fmt: skip
    validation: dict[str, Any] = {}
    if len(held_out.val_product):
        validation = {
            "finetuned": history.get("val") or validation_recall(
                finetuned_model, held_out, torch.device(device)
            ),
            "frozen": validation_recall(frozen_model, held_out, torch.device(device)),
        }  # fmt: skip
    del held_out
    served = "finetuned"  # without validation photos, the fine-tuned model
    if validation and validation["frozen"]["recall@20"] > validation["finetuned"]["recall@20"]:
        served = "frozen"
    model = finetuned_model if served == "finetuned" else frozen_model
    if served == "finetuned":
        shutil.copytree(vdir / "finetuned" / "model", vdir / "model")
    else:
        save_model(frozen_model, vdir / "model")
    catalog = read_catalog(world)
    index, embeddings = build_catalog_index(
        model, catalog, vdir / "index", model_name=str(vdir / "model")
    )
    recs = recommend_all(
        index,
        embeddings,
        catalog["product_id"].to_numpy(),
        catalog["style_id"].to_numpy(),
        k=20,
        categories=catalog["category"].to_numpy(),  # within the query's category
    )
    recs.save(vdir / "recs.parquet")
    other = frozen_model if served == "finetuned" else finetuned_model
    recall = {served: street2shop(model, world, index=index, catalog_embeddings=embeddings)}
    recall["frozen" if served == "finetuned" else "finetuned"] = street2shop(other, world)
    write_json(vdir / "recall-finetuned.json", recall["finetuned"])
    write_json(vdir / "recall-frozen.json", recall["frozen"])
    filled = float(np.mean(recs.rec_ids >= 0))
    training = {
        "device": device,
        "image_size": budget.visual_image_size,
        "recipe": dict(budget.visual_recipe),
        "steps": int(sum(e["steps"] for e in history["epochs"])),
        "seconds": float(sum(e["seconds"] for e in history["epochs"])),
        "stopped_early": bool(any(e.get("stopped_early") for e in history["epochs"])),
    }
    return {
        "finetuned": recall["finetuned"],
        "frozen": recall["frozen"],
        "validation": validation,
        "served": served,
        "recs_filled": filled,
        "training": training,
    }


def _speed() -> list[dict[str, Any]]:
    """Jagged flash attention vs padded SDPA on this GPU (fwd+bwd, bf16), ranking-like lengths."""
    return [_speed_at(n) for n in (256, 1024)]


def _speed_at(n: int, b: int = 256, h: int = 2, d: int = 64, fill: float = 0.25) -> dict[str, Any]:
    import torch
    import triton

    from shopml.jagged.attention import jagged_flash_attention

    gen = torch.Generator().manual_seed(0)
    lengths = torch.empty(b).exponential_(1 / (fill * n), generator=gen).clamp(1, n).long()
    offsets = torch.zeros(b + 1, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    t = int(offsets[-1])
    q, k, v = (torch.randn(t, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))  # fmt: skip
    offsets = offsets.cuda()
    dense = [torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
             for _ in range(3)]  # fmt: skip
    keys = torch.arange(n, device="cuda")[None, :] < lengths.cuda()[:, None]
    attn_mask = keys[:, None, None, :]  # padded queries still see their sequence's keys

    def jagged() -> None:
        jagged_flash_attention(q, k, v, offsets, n).sum().backward()

    def padded() -> None:
        sdpa = torch.nn.functional.scaled_dot_product_attention
        sdpa(*dense, attn_mask=attn_mask).sum().backward()

    return {
        "N": n, "B": b, "mean_fill": float(lengths.float().mean() / n),
        "jagged_ms": triton.testing.do_bench(jagged), "padded_ms": triton.testing.do_bench(padded),
    }  # fmt: skip


def _fresh(path: Path) -> None:
    """Remove a previous demo run's directory so training starts from scratch."""
    import shutil

    if path.exists():
        shutil.rmtree(path)
