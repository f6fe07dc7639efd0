"""The benchmark scripts: their shared results module, that each one starts, one CPU smoke run.

The scripts themselves are timed on the GPU machine (benchmarks/README.md); here CI only makes
sure none of them is broken before a device run is spent on it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _results  # noqa: E402

SCRIPTS = [
    "bench_attention.py", "bench_jagged_ops.py", "bench_rank.py", "bench_visual.py",
    "bench_forecast.py", "load_test.py", "attention_host.py", "bench_scaling.py",
    "attention_cold.py",
    "forecast_quick.py",
]  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=BENCH.parent, capture_output=True, text=True, timeout=300
    )


def test_append_rows_writes_one_header_and_fills_the_run_columns(tmp_path):
    path = tmp_path / "sub" / "suite-cpu.csv"
    meta = _results.run_meta("cpu", sha="abc123")
    assert meta["device"] == "cpu" and meta["git_sha"] == "abc123" and meta["torch"]
    _results.append_rows(path, [{"suite": "s", "op": "a", "ms_p50": 1.5}], meta)
    _results.append_rows(path, [{"suite": "s", "op": "b", "device": "other"}], meta)
    rows = list(csv.DictReader(path.open()))
    assert path.read_text().count("suite,op,provider") == 1
    assert [r["op"] for r in rows] == ["a", "b"]
    assert rows[0]["ms_p50"] == "1.5" and rows[0]["provider"] == ""
    assert rows[0]["device"] == "cpu" and rows[1]["device"] == "other"  # a row's value wins
    assert rows[0]["git_sha"] == "abc123"


def test_append_rows_rejects_a_column_outside_the_schema(tmp_path):
    path = tmp_path / "x.csv"
    with pytest.raises(ValueError, match="ms_median"):
        _results.append_rows(path, [{"suite": "s", "ms_median": 1.0}])
    assert not path.exists()  # nothing half-written


def test_results_path_names_the_suite_and_the_device():
    assert _results.results_path("rank", "cpu") == BENCH / "results" / "rank-cpu.csv"
    assert _results.device_slug("cpu") == "cpu"


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_script_starts(script):
    done = _run(str(BENCH / script), "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_rank_benchmark_smoke_run_on_cpu_appends_schema_rows(tmp_path):
    out = tmp_path / "rank.csv"
    done = _run(
        str(BENCH / "bench_rank.py"), "--device", "cpu", "--max-history", "16",
        "--batch-size", "8", "--providers", "jagged", "pooling", "pooling+graphs", "--embed-dim", "32",
        "--num-items", "1000", "--out", str(out), "--git-sha", "test",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(out.open()))
    assert rows and list(rows[0]) == _results.FIELDS
    assert {r["provider"] for r in rows} >= {"jagged", "pooling"}
    assert all(r["device"] == "cpu" and r["git_sha"] == "test" for r in rows)


def test_attention_report_summarises_a_results_file(tmp_path):
    """--report: tables of the providers present, geomeans over all cases and the issue grid."""
    path = tmp_path / "attention.csv"
    rows = []
    cases = [("a", "grid", 1.0, 2.0), ("b", "grid", 2.0, 1.0), ("c", "ads", 1.0, 4.0)]
    for x, tag, shopml, varlen in cases:
        cfg = {"B": 2, "N": 8, "H": 1, "D": 16, "causal": False, "tag": tag, "mean_fill": 0.5,
               "p50": 4, "p99": 8, "flops_fwd": 1000.0}  # fmt: skip
        for prov, ms in (("shopml", shopml), ("varlen", varlen)):
            rows.append({"suite": "attention", "provider": prov, "mode": "fwd+bwd", "x_value": x,
                         "ms_p50": ms, "peak_mib": 10.0, "config_json": json.dumps(cfg)})  # fmt: skip
            rows.append({"suite": "attention", "provider": prov, "mode": "fwd+bwd:graph",
                         "x_value": x, "ms_p50": ms / 2, "config_json": json.dumps(cfg)})  # fmt: skip
    _results.append_rows(path, rows, _results.run_meta("cpu", sha="t"))
    done = _run(str(BENCH / "bench_attention.py"), "--report", str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| shopml | TFLOP/s | varlen |" in done.stdout  # absent providers get no column
    assert (
        "all cases: varlen: geomean x1.587 (min x0.50, n=3, 2 faster, 1 below x0.9)" in done.stdout
    )
    assert "issue grid only: varlen: geomean x1.000 (min x0.50, n=2, 1 faster" in done.stdout
    assert "| a | - | - | 0.500 | 1.000 | x2.00 |" in done.stdout  # the CUDA-graph table
    assert "graph fwd+bwd: varlen / shopml geomean x1.587 (min x0.50, n=3, 1 below" in done.stdout


def test_attention_report_of_one_run_leaves_other_runs_out(tmp_path, capsys):
    import bench_attention

    path = tmp_path / "attention.csv"
    cfg = {"B": 2, "N": 8, "H": 1, "D": 16, "causal": False, "tag": "grid", "mean_fill": 0.5,
           "p50": 4, "p99": 8, "flops_fwd": 1000.0}  # fmt: skip
    for stamp, varlen in (("2026-01-01T00:00:00+00:00", 3.0), ("2026-01-02T00:00:00+00:00", 2.0)):
        rows = [
            {"provider": p, "mode": "fwd+bwd", "x_value": "a", "ms_p50": ms,
             "config_json": json.dumps(cfg), "timestamp": stamp}
            for p, ms in (("shopml", 1.0), ("varlen", varlen))
        ]  # fmt: skip
        _results.append_rows(path, rows, _results.run_meta("cpu", sha="t"))
    bench_attention.report(str(path), timestamp="2026-01-02T00:00:00+00:00")
    out = capsys.readouterr().out
    assert "varlen: geomean x2.000 (min x2.00, n=1" in out
    assert "x3.00" not in out


def test_attention_rounds_alternate_providers_and_report_the_median_round(tmp_path, monkeypatch):
    """--rounds: providers timed in turn each round, each round starting one provider later;
    p50/p20/p80 the median over the rounds; a provider that fails in any round is reported as
    failed, not as a partial median."""
    import types

    import bench_attention

    calls = []
    p50s = {"shopml": iter([3.0, 1.0, 2.0]), "varlen": iter([5.0, 9.0, 4.0])}

    def fake_time_provider(prov, case, modes, quick, graph=False):
        calls.append(prov)
        if prov == "dense" and calls.count("dense") == 2:
            raise RuntimeError("second round fails")
        p50 = next(p50s[prov]) if prov in p50s else 1.0
        return {"fwd+bwd": (p50, p50 - 0.5, p50 + 0.5)}, 10.0 * len(calls)

    monkeypatch.setattr(bench_attention, "time_provider", fake_time_provider)
    cfg = {"B": 2, "N": 8, "fill": 0.5, "H": 1, "D": 16, "causal": False}
    case = types.SimpleNamespace(cfg=cfg, stats={"T": 8}, flops_fwd=1e6)
    out = tmp_path / "a.csv"
    meta = _results.run_meta("cpu", sha="t")
    got = bench_attention.run_case(
        case, ["shopml", "varlen", "dense"], ["fwd+bwd"], out, meta, True, rounds=3
    )
    # each round starts one provider later; the failed provider is not timed again
    assert calls == ["shopml", "varlen", "dense", "varlen", "dense", "shopml", "shopml", "varlen"]
    assert got["shopml"]["fwd+bwd"] == 2.0 and got["varlen"]["fwd+bwd"] == 5.0
    assert "second round fails" in got["dense"]["error"]
    rows = {r["provider"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"shopml", "varlen"}
    assert (rows["shopml"]["ms_p50"], rows["shopml"]["ms_p20"]) == ("2.0000", "1.5000")
    assert json.loads(rows["varlen"]["config_json"])["rounds"] == 3
    assert float(rows["varlen"]["peak_mib"]) == 80.0  # the largest peak of its rounds (8th call)


def test_attention_rejects_a_round_count_below_one():
    done = _run(str(BENCH / "bench_attention.py"), "--rounds", "0")
    assert done.returncode == 2 and "--rounds: expected a count >= 1, found 0" in done.stderr


def test_scaling_benchmark_smoke_run_with_two_gloo_processes(tmp_path):
    """bench_scaling.py under torchrun: 2 CPU processes (gloo) per model, the slowest rank's time."""
    import os

    out = tmp_path / "scaling.csv"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # reference ops on CPU
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_scaling.py"), "--device", "cpu", "--procs", "2",
         "--steps", "2", "--warmup", "1", "--batch-size", "8", "--max-history", "16",
         "--num-items", "1000", "--embed-dim", "32", "--image-size", "32", "--out", str(out),
         "--git-sha", "test"],
        cwd=BENCH.parent, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["provider"], r["x_value"]) for r in rows] == [("rank", "2"), ("visual", "2")]
    for r in rows:
        cfg = json.loads(r["config_json"])
        assert r["suite"] == "scaling" and float(r["ms_p50"]) > 0
        assert cfg["global_batch"] == 16 and cfg["examples_per_s"] > 0
    assert "| rank | 2 | 8 |" in done.stdout and "| visual | 2 | 8 |" in done.stdout


def test_attention_gpu_script_names_an_unknown_part(tmp_path):
    """benchmarks/run_attention_gpu.sh: a part it does not know stops it with the list of parts
    (before any GPU work), and it writes into $OUT."""
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(BENCH / "run_attention_gpu.sh"), "gridd"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "unknown part: gridd" in done.stderr
    listed = done.stderr.split("(", 1)[1]
    parts = ("tests", "grid", "graph", "short", "steps", "providers", "cold")
    assert all(f"{part}," in listed or f"{part})" in listed for part in parts)
    assert (tmp_path / "out").is_dir()


def test_attention_only_picks_cases_by_name_at_their_grid_positions():
    """--only: the named cases, each at its position in the whole grid (its lengths are drawn
    from it), as --skip keeps them; an unknown name is an error that names it."""
    import bench_attention

    names = [bench_attention.label(c) for c in bench_attention.grid("full")]
    assert names[1] == "B256-N256-f0.1-H2-D128" and names[-1] == "B512-N4096-f0.5-H4-D128-causal"
    picked = bench_attention.select("full", only=f"{names[7]},{names[5]}")
    assert [(i, bench_attention.label(c)) for i, c in picked] == [(5, names[5]), (7, names[7])]
    assert bench_attention.select("full", skip=5, limit=1) == picked[:1]
    assert [i for i, _ in bench_attention.select("full", skip=100)] == [100, 101]
    with pytest.raises(ValueError, match=r"--only: no case \['B1-N1'\] in --grid full"):
        bench_attention.select("full", only="B1-N1")


def test_attention_host_harness_split_reads_gaps_device_time_and_host_waits():
    """attention_host.py --parts harness: from profiler events of flush + call rounds, the GPU's
    idle gap before each call's first kernel, the call's kernel time, and the host's waits."""
    import types

    import attention_host
    import torch

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    def ev(name, start, end, dev=cuda):
        rng = types.SimpleNamespace(start=start, end=end)
        return types.SimpleNamespace(name=name, time_range=rng, device_type=dev)

    events = [
        ev("void at::native::vectorized_elementwise_kernel<FillFunctor>", 0, 60),
        ev("_attn_fwd_gluon_kernel", 70, 100),  # gap 10, 30 us
        ev("void at::native::vectorized_elementwise_kernel<FillFunctor>", 200, 260),
        ev("_tile_samples_kernel", 290, 295),  # gap 30
        ev("_attn_fwd_gluon_kernel", 300, 330),  # 5 + 30 us
        ev("cudaStreamSynchronize", 120, 121, cpu),
        ev("cuLaunchKernelEx", 121, 122, cpu),
    ]
    got = attention_host._harness_split(events, iters=2)
    assert got == ("gap 20.0 us, device 32.5 us a call; host waits a call: "
                   "cudaStreamSynchronize x0.5")  # fmt: skip
