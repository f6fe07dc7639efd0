"""``shopml jagged warmup``: argument parsing and errors (the GPU run is in the gpu tests)."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from shopml.cli import app
from shopml.common.devices import has_cuda
from shopml.jagged.triton.warmup import _batch, parse_causal, parse_dtype, parse_ints


def test_parse_ints_sorts_dedups_and_names_the_option_on_errors():
    assert parse_ints("128, 64,64", "--head-dims", 16, 256) == [64, 128]
    with pytest.raises(ValueError, match="--head-dims: expected comma-separated integers"):
        parse_ints("64,abc", "--head-dims", 16, 256)
    with pytest.raises(ValueError, match=r"--head-dims: expected integers in \[16, 256\], found 8"):
        parse_ints("8", "--head-dims", 16, 256)
    with pytest.raises(ValueError, match="found ''"):
        parse_ints("", "--max-seqlens", 1, 10)


def test_parse_dtype_and_causal():
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype("float32") is torch.float32
    with pytest.raises(ValueError, match="--dtype: expected one of"):
        parse_dtype("int8")
    assert parse_causal("both") == (False, True)
    with pytest.raises(ValueError, match="--causal: expected one of"):
        parse_causal("maybe")


@pytest.mark.parametrize("n", [1, 7, 256, 1000])
def test_warmup_batch_has_the_requested_longest_sequence(n):
    lengths = _batch(n, 4096)
    assert max(lengths) == n and min(lengths) >= 1


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--head-dims", "64,x"], "--head-dims"),
        (["--head-dims", "512"], "--head-dims"),
        (["--dtype", "int8"], "--dtype"),
        (["--max-seqlens", "0"], "--max-seqlens"),
        (["--causal", "sometimes"], "--causal"),
        (["--device", "cpu"], "CUDA device"),
    ],
)
def test_warmup_rejects_bad_arguments(argv, needle):
    result = CliRunner().invoke(app, ["jagged", "warmup", *argv], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert needle in result.output


@pytest.mark.gpu
def test_gpu_warmup_then_the_same_shape_is_already_chosen(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPML_CACHE_DIR", str(tmp_path))
    from shopml.jagged.triton.warmup import warmup_attention

    assert has_cuda()
    rows = warmup_attention([64], torch.bfloat16, [300], causal=(False,))
    assert len(rows) == 1 and rows[0]["seconds"] > 0
    again = warmup_attention([64], torch.bfloat16, [500], causal=(False,))  # same bucket
    assert again[0]["sources"] == []
