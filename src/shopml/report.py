"""``report.html`` of a demo run: the metric tables and plots of every part, in one file.

Plain HTML with the plots embedded as PNG data, so the report can be mailed or opened offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import pandas as pd

from shopml.common.io import write_text

CSS = """
body{font:15px/1.45 system-ui,sans-serif;color:#1d2330;max-width:1000px;margin:2rem auto;padding:0 1rem}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #dde;padding:.25rem .6rem;text-align:right}
th{background:#f3f5f8} td:first-child,th:first-child{text-align:left}
.muted{color:#667} img{max-width:100%;border:1px solid #eee;border-radius:4px;margin:.3rem 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:.6rem}
"""


RANK_COLUMNS = (
    "auc", "logloss", "normalized_entropy", "examples", "train_examples", "max_history", "epochs",
    "train_examples_per_s",
)  # fmt: skip


def _table(rows: list[dict[str, Any]] | pd.DataFrame, floatfmt: str = "{:.4f}") -> str:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    return frame.to_html(index=False, float_format=floatfmt.format, border=0, escape=True)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return _img(buf.getvalue())


def _img(data: bytes) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _visual_budget(training: dict[str, Any] | None) -> str:
    if not training:
        return ""
    recipe = training.get("recipe") or {}
    recipe_text = "; " + ", ".join(f"{k} {v:g}" for k, v in recipe.items()) if recipe else ""
    return (
        f"<p class=muted>Fine-tuned here for {training['steps']:,} steps "
        f"({training['seconds']:.0f} s at {training['image_size']} px on {training['device']}"
        f"{recipe_text}). VisNet's benchmarked quality takes minutes of GPU training "
        "(benchmarks/README.md, Visual); a CPU demo budget is far short of it.</p>"
    )


def _recall_plot(visual: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in (1, 5, 10, 20) if f"recall@{k}" in visual["finetuned"]]
    fig, ax = plt.subplots(figsize=(6, 3))
    for offset, name in ((-0.2, "finetuned"), (0.2, "frozen")):
        ax.bar([i + offset for i in range(len(ks))], [visual[name][f"recall@{k}"] for k in ks],
               width=0.4, label=name)  # fmt: skip
    ax.set_xticks(range(len(ks)), [f"recall@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("street-to-shop recall@k")
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def write_report(out: Path, results: dict[str, Any]) -> Path:
    """Write ``out/report.html`` from the demo's ``results``; returns its path."""
    parts = [f"<h1>shopml demo</h1><p class=muted>scale {html.escape(results['scale'])}, seed "
             f"{results['seed']}, device {html.escape(results['device'])}</p>"]  # fmt: skip
    world = results["world"]
    counts = world.get("counts", {})
    if counts:
        parts.append("<h2>World</h2>" + _table([{"file": k, "rows": v} for k, v in counts.items()]))

    rank = results["rank"]
    parts.append(
        "<h2>Ranking: hold-out click prediction</h2><p>The same model with a jagged attention "
        "history encoder and target attention, against mean pooling of the history.</p>"
        + _table(
            [
                {"backend": name, **{k: v for k, v in m.items() if not isinstance(v, dict)}}
                for name, m in rank.items()
            ]
        )  # fmt: skip
    )

    forecast = results["forecast"]
    charts = "".join(
        _img((out / "backtest" / name).read_bytes()) for name in forecast["charts"][:4]
    )
    parts.append(
        "<h2>Demand forecasting: AR-MDN against baselines</h2><p>One rolling-origin window of "
        f"28 days over {forecast.get('series')} series; lower wQL, CRPS, wMAPE and MASE are "
        "better; coverage_80 should be near 0.8.</p>"
        + _table(pd.DataFrame(forecast["metrics"]))
        + f"<div class=grid>{charts}</div>"
    )

    visual = results["visual"]
    ks = [c for c in visual["finetuned"] if c.startswith("recall@")]
    rows = [{"model": name, **{k: visual[name][k] for k in ks}} for name in ("finetuned", "frozen")]
    parts.append(
        "<h2>Visual search: street photo to catalog product</h2><p>VisNet with an "
        "EfficientNet-Lite0 trunk and the two shallow branches, fine-tuned with a triplet loss, "
        "against the frozen ImageNet trunk.</p>"
        + _visual_budget(visual.get("training"))
        + _table(rows)
        + _recall_plot(visual)
        + f"<p class=muted>recommendation slots filled: {visual['recs_filled']:.3f}</p>"
    )

    if "speed" in results:
        parts.append(
            "<h2>Jagged vs padded attention (this GPU, bf16, forward+backward)</h2>"
            + _table(results["speed"], "{:.3f}")
        )
    parts.append(
        "<h2>Time per step</h2>"
        + _table([{"step": k, "seconds": v} for k, v in results["seconds"].items()], "{:.1f}")
    )
    body = "\n".join(parts)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>shopml demo</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")  # fmt: skip
    return write_text(out / "report.html", page)
