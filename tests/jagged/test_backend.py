"""shopml.jagged.backend.use_triton: the one backend decision of every op, the attention and the
FBGEMM compat layer."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from shopml.jagged import attention, backend, ops
from shopml.jagged import fbgemm_compat as sll


@pytest.fixture
def plain_cpu(monkeypatch):
    """A process without the interpreter (Triton installed)."""
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(backend, "HAS_TRITON", True)


@pytest.fixture
def interpreter(monkeypatch):
    monkeypatch.setattr(backend, "INTERPRET", True)
    monkeypatch.setattr(backend, "HAS_TRITON", True)


def _cuda_tensor():
    with FakeTensorMode(allow_non_fake_inputs=True):
        return torch.empty(3, 4, device="cuda")


def test_cpu_tensor_without_interpreter_takes_the_reference(plain_cpu):
    assert not backend.use_triton("auto", torch.randn(3, 4))
    assert not backend.use_triton("reference", torch.randn(3, 4))


def test_interpreter_takes_triton_on_cpu(interpreter):
    assert backend.use_triton("auto", torch.randn(3, 4))
    assert backend.use_triton("triton", torch.randn(3, 4), torch.randn(2, 4))
    assert not backend.use_triton("reference", torch.randn(3, 4))


def test_cuda_tensor_takes_triton_without_interpreter(plain_cpu):
    x = _cuda_tensor()
    assert x.device.type == "cuda"
    assert backend.use_triton("auto", x)
    assert backend.use_triton("triton", x)


def test_integer_inputs_take_the_reference_whatever_the_backend(interpreter):
    ids = torch.arange(5)
    assert not backend.use_triton("auto", ids)
    assert not backend.use_triton("triton", ids)
    assert not backend.use_triton("auto", torch.randn(5), ids)  # one integer input is enough


def test_explicit_triton_where_it_cannot_run_is_a_clear_value_error(plain_cpu, monkeypatch):
    with pytest.raises(
        ValueError, match="backend: 'triton' needs CUDA tensors or TRITON_INTERPRET=1"
    ):
        backend.use_triton("triton", torch.randn(3, 4))
    monkeypatch.setattr(backend, "HAS_TRITON", False)
    with pytest.raises(ValueError, match="triton is not importable"):
        backend.use_triton("triton", _cuda_tensor())
    assert not backend.use_triton("auto", _cuda_tensor())  # auto falls back to the reference


def test_unknown_backend_is_a_value_error():
    with pytest.raises(
        ValueError,
        match=r"backend: expected one of \('auto', 'triton', 'reference'\), found 'cuda'",
    ):
        backend.use_triton("cuda", torch.randn(3))


def test_ops_attention_and_compat_follow_the_one_decision(plain_cpu, monkeypatch):
    """Each caller asks use_triton: make it say "triton" on a plain CPU and see them all obey."""
    asked = []

    def spy(name, *tensors):
        asked.append(name)
        return False

    monkeypatch.setattr(ops, "use_triton", spy)
    monkeypatch.setattr(attention, "use_triton", spy)
    monkeypatch.setattr(sll.attention, "use_triton", spy)
    off = torch.tensor([0, 2, 5])
    x = torch.randn(5, 4)
    q = torch.randn(5, 1, 16)
    ops.jagged_sum(x, off, backend="triton")
    attention.jagged_flash_attention(q, q, q, off, 3, backend="triton")
    sll.jagged_softmax(x, off, 3)
    sll.jagged_flash_attention_basic(q[:, 0], q[:, 0], q[:, 0], off, 3)
    assert asked == ["triton", "triton", "auto", "auto"]


def test_attention_and_ops_refuse_triton_alike_on_a_plain_cpu(plain_cpu):
    off = torch.tensor([0, 2, 5])
    q = torch.randn(5, 1, 16)
    for call in (
        lambda: attention.jagged_flash_attention(q, q, q, off, 3, backend="triton"),
        lambda: ops.jagged_softmax(q[:, 0], off, 3, backend="triton"),
    ):
        with pytest.raises(ValueError, match="backend: 'triton' needs CUDA tensors"):
            call()
