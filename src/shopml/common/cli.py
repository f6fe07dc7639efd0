"""The CLI convention shared by every sub-command: a ``ValueError`` is a usage error."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def exit_on_value_error(fn: F) -> F:
    """Turn a ``ValueError`` into exit code 2 with its message on stderr (nothing half-written:
    the commands write their outputs atomically)."""
    import typer

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc

    return wrapper  # type: ignore[return-value]
