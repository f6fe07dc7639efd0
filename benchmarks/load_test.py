"""Load test of ``shopml serve`` on this machine: a load generator in a separate process.

    python benchmarks/load_test.py --workdir demo-out [--duration 60] [--workers 2]

1. ``GET /v1/products/{id}/similar`` with Debian's ``wrk`` (random product ids through a Lua script),
   ``--connections`` open connections for ``--duration`` seconds: requests/s, latency percentiles,
   non-2xx answers and socket errors, as wrk measures them.
2. ``POST /v1/visual/search`` with an async client (httpx) keeping ``--search-concurrency`` uploads
   of street photos in flight: uploads/s, latency percentiles, errors and the mean encoder batch.

Rows go to ``benchmarks/results/load-<device>.csv``; a Markdown table is printed last. Only loopback
addresses are used; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _results import append_rows, git_sha

LOAD_FIELDS = [  # this script's own schema: a service, not a kernel
    "endpoint", "workers", "concurrency", "duration_s", "requests", "rps", "p50_ms", "p90_ms",
    "p99_ms", "errors", "mean_batch", "device", "git_sha", "timestamp",
]  # fmt: skip

LUA = """
local ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/v1/products/" .. ids[math.random(#ids)] .. "/similar?k=10")
end
"""
# Paced load: each connection waits this long after each answer, so that ``connections`` connections
# offer about ``rate`` requests a second (the achieved rate is measured and reported, not assumed).
PACE = """
delay = function()
  return %d
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, port: int, workers: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "shopml.cli", "serve", "--workdir", str(workdir), "--port",
           str(port), "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).json()
            if ready["ready"]:
                return proc
            missing = ready["missing"]
        except (httpx.HTTPError, ValueError, KeyError):
            missing = None
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"server not ready after 180 s (missing: {missing})")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(
    port: int, ids: list[int], connections: int, duration: int, seed: int, rate: int = 0
) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        id_file = Path(tmp) / "ids.txt"
        id_file.write_text("\n".join(map(str, ids)) + "\n")
        script = Path(tmp) / "similar.lua"
        lua = LUA % (id_file, seed)
        if rate > 0:
            lua += PACE % max(0, round(connections * 1000 / rate) - 1)
        script.write_text(lua)
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
               f"http://127.0.0.1:{port}"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(pct["50"]),
        "p90_ms": _ms(pct["90"]),
        "p99_ms": _ms(pct["99"]),
        "errors": errors,
        "mean_batch": "",
        "raw": out,
    }


async def _search_load(port: int, photos: list[bytes], concurrency: int, duration: float) -> dict:
    import httpx

    latencies: list[float] = []
    batches: list[int] = []
    errors = 0
    stop = time.perf_counter() + duration

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        j = i
        while time.perf_counter() < stop:
            data = photos[j % len(photos)]
            j += concurrency
            t0 = time.perf_counter()
            try:
                r = await client.post(
                    "/v1/visual/search", files={"image": ("q.png", data, "image/png")},
                    data={"k": "10"},
                )  # fmt: skip
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1e3)
            if r.status_code != 200:
                errors += 1
            else:
                batches.append(r.json()["batch_size"])

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
    ) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i, client) for i in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies)
    return {
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
        "mean_batch": float(np.mean(batches)) if batches else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="a `shopml demo` output directory")
    ap.add_argument("--duration", type=int, default=60, help="seconds per endpoint (similar)")
    ap.add_argument("--search-duration", type=int, default=20, help="seconds for visual search")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--connections", type=int, default=40, help="wrk connections (similar)")
    ap.add_argument(
        "--rate",
        type=int,
        default=2000,
        help="offered requests/s for similar (0: as fast as possible)",
    )
    ap.add_argument("--search-concurrency", type=int, default=16, help="uploads in flight")
    ap.add_argument("--device", default="cpu-2core", help="label of this machine in the CSV")
    ap.add_argument("--out", type=Path, default=None, help="CSV to append to")
    args = ap.parse_args()

    world = args.workdir / "world"
    ids = pd.read_parquet(world / "catalog.parquet", columns=["product_id"])["product_id"].tolist()
    street = pd.read_parquet(world / "street.parquet")
    photos = [(world / p).read_bytes() for p in street["image"].iloc[:64]]
    port = free_port()
    server = start_server(args.workdir, port, args.workers)
    rows = []
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    common = {"workers": args.workers, "device": args.device, "git_sha": git_sha(),
              "timestamp": stamp}  # fmt: skip
    try:
        for rate in dict.fromkeys([args.rate, 0]):
            sim = run_wrk(port, ids, args.connections, args.duration, seed=0, rate=rate)
            sim.pop("raw")
            label = f"offered {rate}/s" if rate else "max throughput"
            rows.append({"endpoint": f"GET /v1/products/{{id}}/similar ({label})",
                         "concurrency": args.connections, "duration_s": args.duration, **sim,
                         **common})  # fmt: skip
        search = asyncio.run(
            _search_load(port, photos, args.search_concurrency, args.search_duration)
        )
        rows.append({"endpoint": "POST /v1/visual/search", "concurrency": args.search_concurrency,
                     "duration_s": args.search_duration, **search, **common})  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = args.out or Path(__file__).parent / "results" / f"load-{args.device}.csv"
    append_rows(out, rows, fields=LOAD_FIELDS)
    print(json.dumps(rows, indent=1, default=str), file=sys.stderr)
    print("\n| endpoint | workers | concurrency | s | requests/s | p50 ms | p90 ms | p99 ms | "
          "errors | mean batch |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        print(f"| {r['endpoint']} | {r['workers']} | {r['concurrency']} | {r['duration_s']} | "
              f"{r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['errors']} | {r['mean_batch'] or '-'} |")  # fmt: skip
    print(f"\nmachine: {os.cpu_count()} cores; server and load generator on the same machine")


if __name__ == "__main__":
    main()
