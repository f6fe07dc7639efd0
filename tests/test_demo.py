"""The demo end to end at tiny scale: every part runs and the report holds each section."""

from __future__ import annotations

import json
import stat

import pandas as pd
from typer.testing import CliRunner

from shopml.cli import app
from shopml.common.io import current_umask


def test_demo_tiny_writes_report_and_servable_workdir(tmp_path, monkeypatch):
    # the demo's jagged ops run their CPU reference here, not the (slow) Triton interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--scale", "tiny", "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "shopml serve --workdir" in result.output or "-m shopml.cli serve" in result.output
    for text in ("products", "zero share", "history length"):  # the world's summary
        assert text in result.output, text
    report = (out / "report.html").read_text()
    for section in ("Ranking", "Demand forecasting", "Visual search", "Time and memory per step"):
        assert section in report
    results = json.loads((out / "demo.json").read_text())
    assert set(results["rank"]) == {"jagged", "pooling"}
    assert 0.0 <= results["rank"]["jagged"]["auc"] <= 1.0
    assert {m["model"] for m in results["forecast"]["metrics"]} >= {"armdn", "snaive"}
    # the served model is refitted with the configuration the backtest's validation chose
    selected = results["forecast"]["selected"]
    served = json.loads((out / "forecast" / "config.json").read_text())["config"]
    assert selected["output"] in ("mixture", "negbin") and "chosen on validation wQL" in report
    if selected["pooled"]:  # a kept pool of mixtures refits its candidates
        assert served["select_components"]
    else:
        chosen = (selected["output"], selected["num_components"], False)
        assert (served["output"], served["num_components"], served["select_components"]) == chosen
    assert 0.0 <= results["visual"]["finetuned"]["recall@20"] <= 1.0
    training = results["visual"]["training"]
    assert training["steps"] >= 1 and training["image_size"] == 64
    assert training["recipe"] == {"lr": 3e-3, "trunk_lr_scale": 0.3, "street_weight": 4.0}
    assert "lr 0.003, trunk_lr_scale 0.3, street_weight 4)" in report
    assert f"Fine-tuned here for {training['steps']:,} steps" in report
    validation = results["visual"]["validation"]
    best = max(validation, key=lambda m: validation[m]["recall@20"])
    assert results["visual"]["served"] in (best, "finetuned")  # ties go to the fine-tuned model
    if validation["frozen"]["recall@20"] > validation["finetuned"]["recall@20"]:
        assert results["visual"]["served"] == "frozen"
    _check_lookalikes(out)
    assert set(results["peak_mb"]) == set(results["seconds"])
    mode = stat.S_IMODE((out / "report.html").stat().st_mode)
    assert mode == 0o666 & ~current_umask(), oct(mode)  # readable by others under umask 022
    for path in ("world/catalog.parquet", "rank/checkpoint", "forecast/config.json",
                 "visual/model", "visual/index", "visual/recs.npz"):  # fmt: skip
        assert (out / path).exists(), path


def _check_lookalikes(out):
    """Within the item's category, at most one product per style, never the item's style."""
    catalog = pd.read_parquet(out / "world" / "catalog.parquet").set_index("product_id")
    recs = pd.read_parquet(out / "visual" / "recs.parquet")
    recs = recs.join(catalog[["category", "style_id"]], on="rec_id")
    for pid, rows in recs.groupby("product_id"):
        assert (rows["category"] == catalog.at[pid, "category"]).all(), pid
        assert rows["style_id"].is_unique and catalog.at[pid, "style_id"] not in set(
            rows["style_id"]
        ), pid


def test_demo_rejects_unknown_scale(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--scale", "huge", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "scale" in result.output


def test_printed_serve_command_runs_without_shopml_on_path(monkeypatch, tmp_path):
    import os
    import shlex
    import subprocess

    from shopml.demo import serve_command

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no venv on PATH, as after `make demo`
    monkeypatch.delenv("MAKELEVEL", raising=False)
    command = shlex.split(serve_command(tmp_path / "demo-out"))
    assert command[-3:] == ["serve", "--workdir", str(tmp_path / "demo-out")]
    program = command[:-3]
    assert os.access(program[0], os.X_OK), program
    help_run = subprocess.run([*program, "serve", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--workdir" in help_run.stdout, help_run.stderr
    monkeypatch.setenv("MAKELEVEL", "1")
    assert serve_command(tmp_path).startswith("make serve")


def _results(lightgbm_wql: float) -> dict:
    recall = {"recall@1": 0.1, "recall@5": 0.2, "recall@10": 0.3, "recall@20": 0.4, "queries": 1234}
    base = {"coverage_50": 0.5, "coverage_80": 0.8, "coverage_95": float("nan"), "crps": 1.0,
            "crps_grid": 1.0, "mase": 1.0, "wmape": 1.0, "seconds": 12.0}  # fmt: skip
    return {
        "scale": "small", "seed": 0, "device": "cpu",
        "world": {"counts": {"products": 2000, "sales_rows": 1234567}},
        "rank": {
            name: {"auc": auc, "logloss": 0.3, "normalized_entropy": 0.9, "examples": 20000,
                   "train_examples": 136370, "max_history": 64, "epochs": 2, "ctr": 0.08,
                   "train_examples_per_s": 1500.0, "device": "cpu", "history": {"x": 1}}
            for name, auc in (("jagged", 0.71), ("pooling", 0.69))
        },
        "forecast": {"series": 300, "charts": [], "metrics": [
            {**base, "model": "armdn", "wql": 0.80, "coverage_95": 0.93},
            {**base, "model": "snaive", "wql": 1.1},
            {**base, "model": "lightgbm", "wql": lightgbm_wql, "wmape": 0.5},
        ]},
        "visual": {"finetuned": recall, "frozen": {**recall, "recall@20": 0.3},
                   "validation": {"finetuned": recall, "frozen": {**recall, "recall@20": 0.35}},
                   "served": "finetuned", "recs_filled": 1.0},
        "seconds": {"world": 30.0, "rank": 200.0}, "peak_mb": {"world": 900.0, "rank": 2100.5},
    }  # fmt: skip


def test_report_leads_with_a_headline_and_curated_tables(tmp_path):
    from shopml.report import headline, write_report

    results = _results(lightgbm_wql=0.9)
    lines = headline(results)
    assert lines[0].startswith("Ranking: jagged attention wins, test AUC 0.710 vs 0.690")
    assert "on 20,000 held-out impressions" in lines[0]
    assert lines[1].startswith("Forecasting: AR-MDN wins, wQL 0.800 vs 0.900 for the best baseline")
    assert "serves the fine-tuned VisNet (validation recall@20 0.400 vs 0.350" in lines[2]
    assert lines[3] == "The demo took 3:50 (m:ss), peak memory 2.05 GB."
    page = write_report(tmp_path, results).read_text()
    assert page.index("class=headline") < page.index("<h2>")  # the headline comes first
    assert "nan" not in page.lower()  # no NaN column (coverage_95 exists for AR-MDN only)
    assert "1,234,567" in page and "20,000" in page and "2,100 MB" in page  # separators, units
    ranking = page[page.index("<h2>Ranking") : page.index("<h2>Demand")]
    assert ranking.count("<th>") == 6  # model + 5 explained columns, not 15
    assert "<dt>AUC</dt>" in ranking
    assert "LightGBM beats AR-MDN on wMAPE (50.0% vs 100.0%)" in page  # a comment where it wins
    assert "share one time" in page  # the shared statsforecast seconds explained
    lost = headline(_results(lightgbm_wql=0.7))[1]
    assert lost.startswith("Forecasting: the baseline LightGBM beats AR-MDN, wQL 0.700 vs 0.800")
