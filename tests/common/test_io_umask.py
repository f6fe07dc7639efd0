"""Atomic writes give files the mode a plain open() would: 0666 less the user's umask."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from shopml.common.io import atomic_path, current_umask, write_json, write_parquet, write_text


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        paths = [
            write_text(tmp_path / "a.txt", "x"),
            write_json(tmp_path / "b.json", {"a": 1}),
            write_parquet(tmp_path / "c.parquet", pd.DataFrame({"a": [1]})),
        ]
        with atomic_path(tmp_path / "d.bin") as tmp:
            tmp.write_bytes(b"x")
        paths.append(tmp_path / "d.bin")
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
