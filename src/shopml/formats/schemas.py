"""The columns of every table of a world directory: one place, read by every part (docs/data.md).

A :class:`Table` names its file and lists its :class:`Column` s in the documented order. A column is
*required* when the format needs it; the others are written by the generator and passed through
when present (a user's own data may lack them). ``kind`` is what a reader accepts (any integer
dtype for ``"int"``, any numeric dtype for ``"float"``, object or string dtype for ``"str"``, any
``datetime64`` for ``"date"``); ``dtype`` is what the generator writes. tests/formats checks
docs/data.md against these tables.

>>> CATALOG.file
'catalog.parquet'
>>> CATALOG.kinds(["product_id", "price"])
{'product_id': 'int', 'price': 'float'}
>>> "seller_id" in CATALOG.required
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("int", "float", "str", "date")
ACTIONS = ("view", "click", "cart", "purchase")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Column:
    """One column: ``name``, accepted ``kind``, the ``dtype`` the generator writes, ``required``."""

    name: str
    kind: str
    dtype: str
    required: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, found {self.kind!r}")


@dataclass(frozen=True)
class Table:
    """A table of a world directory.

    Attributes:
        name: short name (``"catalog"``), used by readers in their messages with ``file``.
        file: path relative to the world directory (``"catalog.parquet"``).
        columns: the documented columns, required ones first.
    """

    name: str
    file: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Every documented column name."""
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        """The columns the format needs."""
        return tuple(c.name for c in self.columns if c.required)

    def kinds(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """``{column: kind}`` for ``names`` (default: the required columns), the form
        :func:`shopml.common.io.check_columns` takes.

        Raises:
            ValueError: a name is not a column of this table.
        """
        by_name = {c.name: c.kind for c in self.columns}
        names = self.required if names is None else tuple(names)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(
                f"columns: expected columns of {self.file} {list(by_name)}, found {unknown}"
            )
        return {n: by_name[n] for n in names}


def _cols(*spec: tuple[str, str, str] | tuple[str, str, str, bool]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in spec)


CATALOG = Table(
    "catalog",
    "catalog.parquet",
    _cols(
        ("product_id", "int", "int64"),
        ("title", "str", "str"),
        ("category", "str", "str"),
        ("brand", "str", "str"),
        ("price", "float", "float64"),
        ("style_id", "int", "int64"),
        ("color", "str", "str"),
        ("pattern", "str", "str"),
        ("image", "str", "str"),
        ("launch_date", "date", "datetime64[ns]"),
        ("delist_date", "date", "datetime64[ns]"),
        ("seller_id", "int", "int64", False),
        ("variant", "int", "int8", False),
        ("accent_color", "str", "str", False),
        ("pattern_scale", "int", "int8", False),
    ),
)
STREET = Table(
    "street",
    "street.parquet",
    _cols(
        ("query_id", "int", "int64"),
        ("product_id", "int", "int64"),
        ("image", "str", "str"),
        ("split", "str", "str"),
    ),
)
SALES = Table(
    "sales",
    "sales.parquet",
    _cols(
        ("unique_id", "int", "int64"),
        ("ds", "date", "datetime64[ns]"),
        ("y", "float", "float64"),
        ("price", "float", "float64"),
        ("discount", "float", "float64"),
        ("promo", "int", "int8"),
    ),
)
CALENDAR = Table(
    "calendar",
    "calendar.parquet",
    _cols(
        ("ds", "date", "datetime64[ns]"),
        ("event", "str", "str"),
        ("is_festival", "int", "int8"),
        ("is_holiday", "int", "int8"),
        ("days_to_event", "int", "int32"),
        ("days_since_event", "int", "int32"),
        ("dow", "int", "int8", False),
    ),
)
USERS = Table(
    "users",
    "users.parquet",
    _cols(
        ("user_id", "int", "int64"),
        ("signup_ts", "date", "datetime64[ns]", False),
        ("region", "str", "str", False),
        ("segment", "str", "str", False),
        ("home_category", "str", "str", False),
    ),
)
EVENTS = Table(
    "events",
    "events.parquet",
    _cols(
        ("user_id", "int", "int64"),
        ("product_id", "int", "int64"),
        ("ts", "date", "datetime64[ns]"),
        ("action", "str", "str"),
    ),
)
IMPRESSIONS = Table(
    "impressions",
    "impressions.parquet",
    _cols(
        ("user_id", "int", "int64"),
        ("product_id", "int", "int64"),
        ("ts", "date", "datetime64[ns]"),
        ("position", "int", "int16"),
        ("label", "int", "int8"),
        ("split", "str", "str"),
    ),
)
SALES_TRUTH = Table(
    "sales truth",
    "truth/sales_mean.parquet",
    _cols(
        ("unique_id", "int", "int64"),
        ("ds", "date", "datetime64[ns]"),
        ("mean", "float", "float64"),
        ("regime", "int", "int8"),
        ("mean_base", "float", "float64", False),
        ("p_regime", "float", "float64", False),
    ),
)

TABLES: tuple[Table, ...] = (
    CATALOG,
    STREET,
    SALES,
    CALENDAR,
    USERS,
    EVENTS,
    IMPRESSIONS,
    SALES_TRUTH,
)
