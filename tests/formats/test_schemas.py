"""The schemas are the format: docs/data.md documents exactly their columns, the generator writes
exactly their columns with the documented dtypes."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from shopml.formats.schemas import CATALOG, TABLES, Column, Table

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def documented_tables() -> dict[str, list[tuple[str, str, bool]]]:
    """``{file: [(column, dtype, required)]}`` from the column tables under each ``## <file>``
    heading of docs/data.md; a column whose meaning starts with ``*(`` ... ``extra)*`` is optional."""
    out: dict[str, list[tuple[str, str, bool]]] = {}
    current = None
    for line in DOCS.read_text().splitlines():
        heading = re.match(r"^#+ (\S+\.parquet)\b", line)
        if heading:
            current = heading.group(1)
            out[current] = []
            continue
        if line.startswith("#"):
            current = None
            continue
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        if current is None or len(cells) != 3 or cells[0] in ("column", "") or cells[0][0] == "-":
            continue
        extra = re.match(r"\*\([^)]*extra\)\*", cells[2]) is not None
        out[current].append((cells[0], cells[1], not extra))
    return out


def test_docs_document_every_schema_column_and_nothing_else():
    docs = documented_tables()
    assert sorted(docs) == sorted(t.file for t in TABLES), "a documented file without a schema"
    for table in TABLES:
        want = [(c.name, c.dtype, c.required) for c in table.columns]
        assert docs[table.file] == want, table.file


def test_the_generator_writes_exactly_the_schema(tiny_world):
    for table in TABLES:
        df = pd.read_parquet(tiny_world / table.file)
        assert list(df.columns) == list(table.names), table.file
        for col in table.columns:
            found = str(df[col.name].dtype)
            if col.dtype == "str":
                assert pd.api.types.is_string_dtype(df[col.name]) or found == "object", col
            else:
                assert found == col.dtype, (table.file, col.name, found)


def test_kinds_and_bad_names():
    assert CATALOG.kinds()["price"] == "float"
    assert tuple(CATALOG.kinds()) == CATALOG.required
    with pytest.raises(
        ValueError, match=r"columns: expected columns of catalog.parquet .* \['cost'\]"
    ):
        CATALOG.kinds(["product_id", "cost"])
    with pytest.raises(ValueError, match="kind: expected one of"):
        Table("t", "t.parquet", (Column("a", "decimal", "object"),))
