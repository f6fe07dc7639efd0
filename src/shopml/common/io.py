"""Atomic writes and table schema checks.

Every file shopml writes goes to a temporary file in the same directory and is renamed into place, so
a crash or a bad input never leaves a half-written file behind. The file gets the mode a plain
``open(path, "w")`` would give it (0666 less the process umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a table is read: JSON writers need not pay 0.3 s
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief window, single-threaded callers)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_parquet(path: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_table(path: str | os.PathLike[str], name: str | None = None) -> pd.DataFrame:
    """Read a parquet or CSV table; ``ValueError`` naming the file when it is missing or unreadable."""
    path = Path(path)
    import pandas as pd

    label = name or path.name
    if not path.is_file():
        raise ValueError(f"{label}: expected a file at {path}, found none")
    try:
        if path.suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise ValueError(f"{label}: could not read {path} as a table ({exc})") from exc


def check_columns(df: pd.DataFrame, schema: Mapping[str, str], name: str) -> None:
    """Check that ``df`` has every column of ``schema`` with a compatible kind.

    ``schema`` maps column -> kind, one of ``"int"``, ``"float"`` (ints accepted), ``"str"``,
    ``"bool"`` (0/1 ints accepted), ``"date"``.

    Raises:
        ValueError: naming the table, the column, the expected kind and the dtype found.
    """
    import pandas as pd

    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {missing}; expected {list(schema)}, found {list(df.columns)}"
        )
    for col, kind in schema.items():
        dtype = df[col].dtype
        ok = {
            "int": pd.api.types.is_integer_dtype(dtype),
            "float": pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype),
            "str": pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype),
            "bool": pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype),
            "date": pd.api.types.is_datetime64_any_dtype(dtype),
        }.get(kind)
        if ok is None:
            raise KeyError(f"unknown column kind {kind!r}")
        if not ok:
            raise ValueError(f"{name}: column {col!r} should be {kind}, found dtype {dtype}")
