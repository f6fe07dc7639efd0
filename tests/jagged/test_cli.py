"""``shopml jagged check``: it runs the kernels (directly, or re-run under the interpreter), it
fails when a kernel is wrong or did not run, and it rejects bad arguments."""

from __future__ import annotations

import subprocess

import pytest
import torch
from typer.testing import CliRunner

from shopml.cli import app
from shopml.common.devices import is_interpreter
from shopml.jagged import backend, selfcheck

needs_interpreter = pytest.mark.skipif(
    not is_interpreter(), reason="runs the kernels in-process: needs TRITON_INTERPRET=1"
)


def _check(*args):
    return CliRunner().invoke(app, ["jagged", "check", "--device", "cpu", *args])


@needs_interpreter
def test_jagged_check_runs_every_kernel_and_passes():
    result = _check()
    assert result.exit_code == 0, result.output
    assert "all 17 ops ok on cpu, Triton interpreter" in result.output
    assert "attention_triton" in result.output and "softmax" in result.output
    assert "reference" not in result.output


@pytest.fixture
def two_cases(monkeypatch):
    """Only jagged_sum and jagged_softmax (keeps the failure tests fast)."""
    cases = selfcheck._cases
    monkeypatch.setattr(
        selfcheck,
        "_cases",
        lambda *a: {k: v for k, v in cases(*a).items() if k in ("jagged_sum", "jagged_softmax")},
    )
    return monkeypatch


@needs_interpreter
def test_jagged_check_fails_on_a_wrong_kernel(two_cases):
    cases = selfcheck._cases

    def broken(*a):
        out = cases(*a)
        fn, inputs = out["jagged_sum"]
        out["jagged_sum"] = (lambda be, x: fn(be, x) * (1.01 if be == "auto" else 1.0), inputs)
        return out

    two_cases.setattr(selfcheck, "_cases", broken)
    result = _check()
    assert result.exit_code == 1
    assert "jagged_sum" in result.output and "FAIL" in result.output
    assert "self-check failed: jagged_sum" in result.output


@needs_interpreter
def test_jagged_check_fails_when_the_reference_ran_instead_of_a_kernel(two_cases):
    two_cases.setattr(selfcheck, "_used", lambda name, inputs: "ops_reference")
    result = _check()
    assert result.exit_code == 1
    assert "the kernel did not run" in result.output


def test_jagged_check_reruns_itself_under_the_interpreter_on_a_plain_cpu(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(backend, "HAS_TRITON", True)
    calls = []

    def fake_run(cmd, env, **kwargs):
        calls.append((cmd, env))
        return subprocess.CompletedProcess(cmd, 3, stdout="child output\n", stderr="")

    monkeypatch.setattr(subprocess, "run", fake_run)
    result = _check("--tol", "0.001")
    assert result.exit_code == 3  # the child's verdict
    assert "re-running under the Triton interpreter" in result.output
    assert "child output" in result.output
    ((cmd, env),) = calls
    assert cmd[1:] == ["-m", "shopml.cli", "jagged", "check", "--device", "cpu", "--tol", "0.001"]
    assert env["TRITON_INTERPRET"] == "1"


def test_jagged_check_says_it_cannot_without_triton(monkeypatch):
    monkeypatch.setattr(backend, "HAS_TRITON", False)
    result = _check()
    assert result.exit_code == 1
    assert "cannot check the kernels: triton is not installed" in result.output


def test_jagged_check_rejects_bad_device():
    result = CliRunner().invoke(app, ["jagged", "check", "--device", "tpu"])
    assert result.exit_code == 2
    assert "device" in result.output


def test_kernels_runnable_follows_the_backend_decision(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", False)
    assert not selfcheck.kernels_runnable(torch.device("cpu"))
    monkeypatch.setattr(backend, "INTERPRET", True)
    monkeypatch.setattr(backend, "HAS_TRITON", True)
    assert selfcheck.kernels_runnable(torch.device("cpu"))
