"""``report.html`` of a demo run: a headline first, then one curated section per part.

Plain HTML with the plots embedded as PNG data, so the report can be mailed or opened offline.
Tables show a few columns with units and thousands separators, each column explained under the
table; wherever a baseline beats the paper's model the report says so. :func:`headline` is also
what the demo prints at the end.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from shopml.common.io import write_text

CSS = """
body{font:15px/1.45 system-ui,sans-serif;color:#1d2330;max-width:1000px;margin:2rem auto;padding:0 1rem}
h1{margin-bottom:.2rem} h2{margin-top:2.2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0} td,th{border:1px solid #dde;padding:.25rem .6rem;text-align:right}
th{background:#f3f5f8} td:first-child,th:first-child{text-align:left}
.muted{color:#667} img{max-width:100%;border:1px solid #eee;border-radius:4px;margin:.3rem 0}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:.6rem}
.headline{background:#f3f7fd;border:1px solid #cfe0f5;border-radius:6px;padding:.6rem 1rem}
.headline li{margin:.25rem 0} .note{border-left:3px solid #e0a000;padding-left:.6rem}
dl.cols{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;font-size:13px;color:#445}
dl.cols dt{font-weight:600} dl.cols dd{margin:0}
"""

MODEL_NAMES = {
    "armdn": "AR-MDN", "snaive": "seasonal naive", "ets": "AutoETS", "croston": "Croston",
    "tsb": "TSB", "lightgbm": "LightGBM", "armdn_1gauss": "AR-MDN, 1 Gaussian",
    "armdn_no_assoc": "AR-MDN, no association MLP",
    "jagged": "jagged attention", "pooling": "mean pooling",
    "finetuned": "VisNet fine-tuned", "frozen": "frozen pretrained trunk",
}  # fmt: skip

RANK_COLUMNS = {
    "auc": ("AUC", "{:.3f}", "area under the ROC curve of click vs no click; 0.5 is chance, higher "
            "is better"),
    "logloss": ("log loss", "{:.4f}", "mean negative log-likelihood of the clicks; lower is better"),
    "normalized_entropy": ("NE", "{:.3f}", "log loss / the entropy of the click rate; below 1 "
                           "beats predicting the click rate for everyone"),
    "examples": ("test impressions", "{:,.0f}", "held-out impressions scored"),
    "train_examples_per_s": ("train speed", "{:,.0f} ex/s", "training impressions a second"),
}  # fmt: skip

FORECAST_COLUMNS = {
    "wql": ("wQL", "{:.3f}", "weighted quantile loss over the 10%..90% quantiles; lower is "
            "better"),
    "crps": ("CRPS", "{:.3f}", "continuous ranked probability score per unit sold; lower is "
             "better"),
    "wmape": ("wMAPE", "{:.1%}", "absolute error of the median over units sold; lower is better"),
    "mase": ("MASE", "{:.2f}", "error of the median / the in-sample error of a seasonal naive "
             "forecast; below 1 beats it"),
    "coverage_80": ("80% coverage", "{:.1%}", "share of actual days inside the 10%..90% band; "
                    "80% is calibrated"),
    "seconds": ("time", "{:,.0f} s", "fit + forecast; the statsforecast models (seasonal naive, "
                "AutoETS, Croston) run as one job and share one time"),
}  # fmt: skip
LOWER_IS_BETTER = ("wql", "crps", "wmape", "mase")


def _name(key: str) -> str:
    return MODEL_NAMES.get(key, key)


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return spec.format(value)


def _table(rows: list[dict[str, Any]], columns: dict[str, tuple[str, str, str]], first: str) -> str:
    """HTML table: ``first`` column as is, then ``columns`` (key -> label, format, explanation)
    that every row has (a column missing or NaN in any row is left out); the explanations below."""
    keep = [
        key for key in columns
        if all(isinstance(r.get(key), int | float) and not math.isnan(r[key]) for r in rows)
    ]  # fmt: skip
    head = "".join(f"<th>{html.escape(columns[k][0])}</th>" for k in keep)
    body = "".join(
        f"<tr><td>{html.escape(str(r[first]))}</td>"
        + "".join(f"<td>{_fmt(r[k], columns[k][1])}</td>" for k in keep)
        + "</tr>"
        for r in rows
    )
    notes = "".join(
        f"<dt>{html.escape(columns[k][0])}</dt><dd>{html.escape(columns[k][2])}</dd>" for k in keep
    )
    return f"<table><tr><th>{first}</th>{head}</tr>{body}</table><dl class=cols>{notes}</dl>"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return _img(buf.getvalue())


def _img(data: bytes) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" alt="">'


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


# ---------------------------------------------------------------------------------------- headline
def _rank_line(rank: dict[str, Any]) -> str | None:
    if not {"jagged", "pooling"} <= set(rank):
        return None
    j, p = rank["jagged"]["auc"], rank["pooling"]["auc"]
    win, lose = ("jagged", "pooling") if j >= p else ("pooling", "jagged")
    return (
        f"Ranking: {_name(win)} wins, test AUC {rank[win]['auc']:.3f} vs {rank[lose]['auc']:.3f} "
        f"for {_name(lose)} ({abs(j - p):+.3f}) on {rank[win]['examples']:,} held-out impressions."
    )


def _forecast_line(forecast: dict[str, Any]) -> str | None:
    rows = {r["model"]: r for r in forecast["metrics"]}
    if "armdn" not in rows or len(rows) < 2:
        return None
    best = min((m for m in rows if m != "armdn" and not m.startswith("armdn")),
               key=lambda m: rows[m]["wql"], default=None)  # fmt: skip
    if best is None:
        return None
    a, b = rows["armdn"]["wql"], rows[best]["wql"]
    where = f"on {forecast.get('series'):,} series x 28 days" if forecast.get("series") else ""
    if a <= b:
        return (f"Forecasting: AR-MDN wins, wQL {a:.3f} vs {b:.3f} for the best baseline "
                f"({_name(best)}), {1 - a / b:.0%} lower, {where}.")  # fmt: skip
    return (f"Forecasting: the baseline {_name(best)} beats AR-MDN, wQL {b:.3f} vs {a:.3f} "
            f"({a / b - 1:.0%} higher for AR-MDN), {where}.")  # fmt: skip


def _visual_line(visual: dict[str, Any]) -> str | None:
    served = visual.get("served", "finetuned")
    other = "frozen" if served == "finetuned" else "finetuned"
    if "recall@20" not in visual.get(served, {}):
        return None
    test = (f"test recall@20 {visual[served]['recall@20']:.3f} vs {visual[other]['recall@20']:.3f} "
            f"on {visual[served].get('queries', 0):,} street photos")  # fmt: skip
    which = {"finetuned": "the fine-tuned VisNet", "frozen": "the frozen pretrained trunk"}
    val = visual.get("validation") or {}
    if val:
        return (
            f"Visual search: serves {which[served]} (validation recall@20 "
            f"{val[served]['recall@20']:.3f} vs {val[other]['recall@20']:.3f} for {which[other]}); "
            f"{test}."
        )
    return f"Visual search: serves {which[served]}; {test} for {which[other]}."


def headline(results: dict[str, Any]) -> list[str]:
    """One line per part: what won, by how much, on what; then the run's time and memory."""
    lines = [
        line
        for line in (
            _rank_line(results.get("rank", {})),
            _forecast_line(results["forecast"]) if "forecast" in results else None,
            _visual_line(results["visual"]) if "visual" in results else None,
        )
        if line
    ]
    seconds = results.get("seconds") or {}
    if seconds:
        peak = max((results.get("peak_mb") or {}).values(), default=None)
        memory = f", peak memory {peak / 1024:.2f} GB" if peak else ""
        lines.append(f"The demo took {_minutes(sum(seconds.values()))} (m:ss){memory}.")
    return lines


# ---------------------------------------------------------------------------------------- sections
def _rank_section(rank: dict[str, Any]) -> str:
    rows = [{"model": _name(name), **m} for name, m in rank.items()]
    note = ""
    if {"jagged", "pooling"} <= set(rank) and rank["pooling"]["auc"] > rank["jagged"]["auc"]:
        note = ("<p class=note>The mean-pooling baseline beats jagged attention here. At this "
                "demo's budget (a few epochs on a CPU) the attention encoder is undertrained; "
                "benchmarks/README.md has the longer runs.</p>")  # fmt: skip
    return (
        "<h2>Ranking: hold-out click prediction</h2><p>The same model with a jagged attention "
        "history encoder and target attention, against mean pooling of the history, on impressions "
        "after the training period.</p>" + _table(rows, RANK_COLUMNS, "model") + note
    )


def _forecast_section(out: Path, forecast: dict[str, Any]) -> str:
    rows = [{**r, "model": _name(r["model"])} for r in forecast["metrics"]]
    by_key = {r["model"]: r for r in forecast["metrics"]}
    notes = []
    if "armdn" in by_key:
        for key in LOWER_IS_BETTER:
            winners = [m for m, r in by_key.items() if not m.startswith("armdn")
                       and r[key] < by_key["armdn"][key]]  # fmt: skip
            if winners:
                best = min(winners, key=lambda m: by_key[m][key])
                label, spec, _ = FORECAST_COLUMNS[key]
                notes.append(
                    f"{_name(best)} beats AR-MDN on {label} ({_fmt(by_key[best][key], spec)} vs "
                    f"{_fmt(by_key['armdn'][key], spec)})"
                )
    note = ""
    if notes:
        note = ("<p class=note>Where a baseline wins: " + "; ".join(notes) + ". AR-MDN is trained "
                "for a few epochs of CPU time here; the gap says how far this budget is from "
                "its converged quality, not that the baseline is the better model.</p>")  # fmt: skip
    charts = "".join(
        _img((out / "backtest" / name).read_bytes()) for name in forecast["charts"][:4]
    )
    series = forecast.get("series")
    return (
        "<h2>Demand forecasting: AR-MDN against baselines</h2><p>One rolling-origin window of "
        f"28 days{f' over {series:,} series' if series else ''}: every model forecasts the same "
        f"days from the same history.{_selected_note(forecast.get('selected'))}</p>"
        + _table(rows, FORECAST_COLUMNS, "model") + note
        + f"<div class=grid>{charts}</div>"
    )  # fmt: skip


def _selected_note(selected: dict[str, Any] | None) -> str:
    """Which AR-MDN candidate validation chose (``demo._forecast``'s ``selected``)."""
    if not selected:
        return ""
    head = ("a zero-inflated negative binomial count head" if selected["output"] == "negbin"
            else f"a mixture of {selected['num_components']} Gaussian(s)")  # fmt: skip
    if selected.get("pooled"):
        head = "the pool of the mixture candidates"
    scores = ", ".join(f"{k} {v:.3f}" for k, v in selected.get("validation_wql", {}).items())
    return f" AR-MDN's output, chosen on validation wQL ({scores}): {head}." if scores else ""


def _recall_plot(visual: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in (1, 5, 10, 20) if f"recall@{k}" in visual["finetuned"]]
    fig, ax = plt.subplots(figsize=(6, 3))
    for offset, name in ((-0.2, "finetuned"), (0.2, "frozen")):
        ax.bar([i + offset for i in range(len(ks))], [visual[name][f"recall@{k}"] for k in ks],
               width=0.4, label=_name(name))  # fmt: skip
    ax.set_xticks(range(len(ks)), [f"recall@{k}" for k in ks])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of street photos")
    ax.legend()
    ax.set_title("street-to-shop recall@k (test photos)")
    image = _png(fig)
    plt.close(fig)
    return image


RECALL_COLUMNS = {
    f"recall@{k}": (f"recall@{k}", "{:.3f}", f"share of street photos whose product is among the "
                    f"first {k} results") for k in (1, 5, 10, 20)
}  # fmt: skip


def _visual_section(visual: dict[str, Any]) -> str:
    served = visual.get("served", "finetuned")
    rows = [{"model": _name(m) + (" (served)" if m == served else ""), **visual[m]}
            for m in ("finetuned", "frozen")]  # fmt: skip
    val = visual.get("validation") or {}
    validation = ""
    if val:
        val_rows = [{"model": _name(m), **val[m]} for m in ("finetuned", "frozen")]
        validation = (
            "<h3>Validation (held-out street photos of training products): picks the served "
            "model</h3>" + _table(val_rows, RECALL_COLUMNS, "model")
        )
    note = ""
    if visual["frozen"].get("recall@20", 0) > visual["finetuned"].get("recall@20", 0):
        note = ("<p class=note>The frozen pretrained trunk beats the fine-tuned model on the test "
                "photos: this demo fine-tunes for minutes on a CPU (above).</p>")  # fmt: skip
    return (
        "<h2>Visual search: street photo to catalog product</h2><p>VisNet with an "
        "EfficientNet-Lite0 trunk and the two shallow branches, fine-tuned with a triplet loss, "
        "against the frozen ImageNet trunk. The service and its look-alikes use whichever scores "
        "higher on validation.</p>"
        + _visual_budget(visual.get("training"))
        + validation
        + "<h3>Test</h3>" + _table(rows, RECALL_COLUMNS, "model") + note
        + _recall_plot(visual)
        + f"<p class=muted>Look-alike lists filled: {visual['recs_filled']:.1%} of 20 slots "
        "(within the product's category, at most one product per style).</p>"
    )  # fmt: skip


def _visual_budget(training: dict[str, Any] | None) -> str:
    if not training:
        return ""
    recipe = training.get("recipe") or {}
    recipe_text = "; " + ", ".join(f"{k} {v:g}" for k, v in recipe.items()) if recipe else ""
    stopped = ", stopped by the time budget" if training.get("stopped_early") else ""
    return (
        f"<p class=muted>Fine-tuned here for {training['steps']:,} steps "
        f"({training['seconds']:.0f} s at {training['image_size']} px on {training['device']}"
        f"{recipe_text}){stopped}. VisNet's benchmarked quality takes minutes of GPU training "
        "(benchmarks/README.md, Visual); a CPU demo budget is far short of it.</p>"
    )


def _steps_section(results: dict[str, Any]) -> str:
    peak = results.get("peak_mb") or {}
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_minutes(sec)}</td>"
        f"<td>{_fmt(peak.get(name), '{:,.0f} MB')}</td></tr>"
        for name, sec in results["seconds"].items()
    )
    return (
        "<h2>Time and memory per step</h2><table><tr><th>step</th><th>time (m:ss)</th>"
        f"<th>peak memory</th></tr>{rows}</table><dl class=cols><dt>peak memory</dt><dd>the "
        "largest resident memory of the demo process during the step</dd></dl>"
    )


def write_report(out: Path, results: dict[str, Any]) -> Path:
    """Write ``out/report.html`` from the demo's ``results``; returns its path."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in headline(results))
    parts = [
        f"<h1>shopml demo</h1><p class=muted>scale {html.escape(results['scale'])}, seed "
        f"{results['seed']}, device {html.escape(results['device'])}</p>"
        f"<div class=headline><ul>{items}</ul></div>"
    ]
    counts = results["world"].get("counts", {})
    if counts:
        cells = "".join(f"<tr><td>{html.escape(k.replace('_', ' '))}</td><td>{v:,}</td></tr>"
                        for k, v in counts.items())  # fmt: skip
        parts.append(f"<h2>World</h2><table><tr><th>what</th><th>count</th></tr>{cells}</table>")
    parts.append(_rank_section(results["rank"]))
    parts.append(_forecast_section(out, results["forecast"]))
    parts.append(_visual_section(results["visual"]))
    if "speed" in results:
        speed_cols = {
            "N": ("N", "{:,.0f}", "longest history"), "B": ("B", "{:,.0f}", "sequences"),
            "mean_fill": ("fill", "{:.0%}", "mean length / N"),
            "jagged_ms": ("jagged", "{:.3f} ms", "jagged flash attention, forward + backward"),
            "padded_ms": ("padded", "{:.3f} ms", "padded SDPA with a mask, forward + backward"),
        }  # fmt: skip
        rows = [{"case": f"N={r['N']}", **r} for r in results["speed"]]
        parts.append("<h2>Jagged vs padded attention (this GPU, bf16)</h2>"
                     + _table(rows, speed_cols, "case"))  # fmt: skip
    parts.append(_steps_section(results))
    body = "\n".join(parts)
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>shopml demo</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")  # fmt: skip
    return write_text(out / "report.html", page)
