"""The benchmarks' one CSV schema, and where and how a run's rows are written.

Every timing script appends rows of :data:`FIELDS` (shared/DESIGN.md, "Benchmarks") to
``results/<suite>-<device>.csv`` (:func:`results_path`; ``<device>`` is :func:`device_slug`, e.g.
``nvidia-h200`` or ``cpu``) and takes the columns that describe the run (device, torch, triton,
git_sha, timestamp) from :func:`run_meta`. Scripts with a schema of their own (forecast accuracy,
the load test) pass their columns to :func:`append_rows`. Imports only the standard library and
torch, so it runs on the GPU machine as it is.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
FIELDS = [
    "suite", "op", "provider", "mode", "x_name", "x_value", "ms_p50", "ms_p20", "ms_p80",
    "peak_mib", "config_json", "device", "torch", "triton", "git_sha", "timestamp",
]  # fmt: skip


def device_slug(device: str | torch.device | None = None) -> str:
    """``nvidia-h200``-style name of a CUDA device (default: the current one if any), or ``cpu``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


@functools.cache
def git_sha() -> str:
    """``SHOPML_GIT_SHA`` (a copied tree has no .git), else the checkout's short commit."""
    if os.environ.get("SHOPML_GIT_SHA"):
        return os.environ["SHOPML_GIT_SHA"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def run_meta(device: str | torch.device | None = None, sha: str | None = None) -> dict[str, str]:
    """The run's columns: device slug, torch and triton versions, commit, UTC timestamp."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = ""
    return {
        "device": device_slug(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "git_sha": sha or git_sha(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def results_path(suite: str, device: str | torch.device | None = None) -> Path:
    """``benchmarks/results/<suite>-<device slug>.csv``."""
    return RESULTS / f"{suite}-{device_slug(device)}.csv"


def append_rows(
    path: str | os.PathLike,
    rows: Iterable[Mapping[str, object]],
    meta: Mapping[str, object] | None = None,
    fields: Sequence[str] = FIELDS,
) -> None:
    """Append ``rows`` to the CSV at ``path`` (header first when the file is new or empty).

    A column a row leaves out is taken from ``meta``, else left empty; a column outside ``fields``
    is an error (it would be lost silently otherwise).
    """
    rows = list(rows)
    unknown = sorted({k for r in rows for k in r} - set(fields))
    if unknown:
        raise ValueError(f"rows: columns {unknown} are not in the schema {list(fields)}")
    meta = meta or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields))
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, meta.get(k, "")) for k in fields})
