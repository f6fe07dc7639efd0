from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from shopml.common.checkpoint import load_checkpoint, save_checkpoint
from shopml.common.devices import has_cuda, is_interpreter, resolve_device
from shopml.common.io import atomic_path, check_columns, read_table, write_json
from shopml.common.seeding import seed_everything


def test_device_predicates_never_raise():
    assert isinstance(has_cuda(), bool)
    assert isinstance(is_interpreter(), bool)
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device"):
        resolve_device("not-a-device")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")


def test_check_columns_names_the_problem():
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    check_columns(df, {"a": "int", "b": "str"}, "t")
    with pytest.raises(ValueError, match=r"t: missing column\(s\) \['c'\]"):
        check_columns(df, {"a": "int", "c": "float"}, "t")
    with pytest.raises(ValueError, match="column 'b' should be float"):
        check_columns(df, {"b": "float"}, "t")


def test_read_table_missing_and_corrupt(tmp_path):
    with pytest.raises(ValueError, match="expected a file"):
        read_table(tmp_path / "nope.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ValueError, match="could not read"):
        read_table(bad)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    width: int = 4
    dims: tuple[int, ...] = (1, 2)


def test_checkpoint_round_trip(tmp_path):
    state = {"w": torch.randn(3, 4)}
    save_checkpoint(tmp_path / "ck", state, _Cfg(width=5), kind="toy", extra={"epoch": 2})
    loaded, meta = load_checkpoint(tmp_path / "ck", kind="toy")
    assert torch.equal(loaded["w"], state["w"])
    assert meta["config"] == {"width": 5, "dims": [1, 2]}
    assert meta["extra"] == {"epoch": 2}
    with pytest.raises(ValueError, match="expected a 'other' checkpoint"):
        load_checkpoint(tmp_path / "ck", kind="other")


def test_seed_everything_is_deterministic():
    a = seed_everything(3).random(4)
    b = seed_everything(3).random(4)
    assert (a == b).all()
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)
