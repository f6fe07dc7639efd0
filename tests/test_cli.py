"""The top-level `shopml` command: help and version (the demo: tests/test_demo.py)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopml import __version__
from shopml.cli import app

runner = CliRunner()


def test_help_lists_the_world():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    assert "world" in res.output and "demo" in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"shopml {__version__}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path, *args: str, env: dict[str, str] | None = None):
    """Start `shopml serve` on an empty work directory; (process, port, lines read so far)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "shopml.cli", "serve", "--workdir", str(tmp_path),
           "--port", str(port), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    return proc, port, lines


def _wait_for(lines, needle: str, timeout: float = 60.0) -> list[str]:
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        if needle in seen[-1]:
            return seen
    raise AssertionError(f"{needle!r} not logged; got {seen}")


def _stop(proc) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_logs_its_address_and_each_request(tmp_path):
    proc, port, lines = _serve(tmp_path)
    try:
        seen = _wait_for(lines, f"Uvicorn running on http://127.0.0.1:{port}")
        assert any(f"at http://127.0.0.1:{port}/ (API docs" in line for line in seen), seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
        _wait_for(lines, '"GET /health HTTP/1.1" 200')
    finally:
        _stop(proc)


def test_serve_log_level_from_the_environment(tmp_path):
    proc, port, lines = _serve(tmp_path, env={"SHOPML_LOG_LEVEL": "warning"})
    try:
        seen = _wait_for(lines, "artefact catalog unavailable")  # a warning still shows
        for _ in range(100):  # the port opens without an info line
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
        time.sleep(0.5)
        while not lines.empty():
            seen.append(lines.get())
        assert not any("Uvicorn running" in x or "GET /health" in x for x in seen), seen
    finally:
        _stop(proc)


def test_serve_rejects_a_bad_log_level(tmp_path):
    res = runner.invoke(app, ["serve", "--workdir", str(tmp_path), "--log-level", "loud"])
    assert res.exit_code != 0 and "log_level" in res.output


ROOT = Path(__file__).resolve().parents[1]


def test_docs_link_only_inside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), (page.name, target)
        assert "../shared" not in text, page.name


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_runs_the_venv_shopml():
    dry = subprocess.run(["make", "-n", "-W", "pyproject.toml", "serve", "OUT=somewhere"],
                         cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert ".venv/bin/shopml serve --workdir somewhere --port 8000" in dry.stdout
