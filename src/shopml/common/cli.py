"""The CLI conventions shared by every sub-command.

- :func:`exit_on_value_error`: a ``ValueError`` is a usage error (exit code 2, message on stderr).
- :func:`config_options`: a command's options for the fields of a config dataclass, with the
  dataclass's defaults, types and ``Attributes:`` docs, so that the defaults live in one place.

Example (a typer command that takes a ``Fit`` config)::

    >>> from dataclasses import dataclass
    >>> import typer
    >>> from typer.testing import CliRunner
    >>> @dataclass(frozen=True)
    ... class Fit:
    ...     '''A fit.
    ...
    ...     Attributes:
    ...         epochs: passes over the data.
    ...         lr: learning rate.
    ...     '''
    ...     epochs: int = 2
    ...     lr: float = 0.1
    >>> app = typer.Typer()
    >>> @app.command()
    ... @config_options(Fit, ["epochs", "lr"], into="fit")
    ... def train(name: str, fit: Fit) -> None:
    ...     print(name, fit)
    >>> print(CliRunner().invoke(app, ["run1", "--epochs", "5"]).output.strip())
    run1 Fit(epochs=5, lr=0.1)
    >>> "passes over the data." in CliRunner().invoke(app, ["--help"]).output
    True
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

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


def field_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a Google-style class docstring
    (continuation lines joined, reST's double backquotes dropped)."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    out: dict[str, str] = {}
    section = False
    name = None
    for line in doc.splitlines():
        if not line.strip():
            continue
        if re.fullmatch(r"\w[\w ]*:", line.strip()) and not line.startswith(" "):
            section = line.strip() == "Attributes:"
            continue
        if not section:
            continue
        item = re.match(r"^ {4}(\w+): ?(.*)$", line)
        if item:
            name = item.group(1)
            out[name] = item.group(2).strip()
        elif name is not None and line.startswith("     "):
            out[name] += " " + line.strip()
    return {k: v.replace("``", "") for k, v in out.items()}


def config_options(
    cls: type,
    fields: Iterable[str] | None = None,
    *,
    into: str,
    help: Mapping[str, str] | None = None,  # noqa: A002 - typer's word
) -> Callable[[F], F]:
    """Decorate a typer command: its parameter ``into`` (annotated ``cls``) becomes one option per
    field of the dataclass ``cls`` (``--field-name``, the field's type and default, help from the
    class docstring's ``Attributes:`` or ``help``), and the command receives ``cls(**options)``.

    Args:
        cls: a dataclass whose chosen fields are ``str``, ``int``, ``float`` or ``bool``.
        fields: the fields to expose (default: all); the others keep the dataclass default.
        into: the command's parameter that receives the built config.
        help: help texts that replace the docstring's, per field.

    Raises:
        ValueError: ``cls`` is not a dataclass, a field is unknown, or an option name is already a
            parameter of the command.
    """
    if not dataclasses.is_dataclass(cls):
        raise ValueError(f"cls: expected a dataclass, found {cls!r}")
    all_fields = {f.name: f for f in dataclasses.fields(cls)}
    names = list(all_fields) if fields is None else list(fields)
    unknown = [n for n in names if n not in all_fields]
    if unknown:
        raise ValueError(
            f"fields: expected fields of {cls.__name__} {list(all_fields)}, found {unknown}"
        )
    hints = typing.get_type_hints(cls)
    docs = {**field_docs(cls), **(help or {})}

    def decorate(fn: F) -> F:
        import typer

        sig = inspect.signature(fn, eval_str=True)
        if into not in sig.parameters:
            raise ValueError(f"into: expected a parameter of {fn.__name__}, found {into!r}")
        clash = [n for n in names if n in sig.parameters]
        if clash:
            raise ValueError(f"fields: {clash} are already parameters of {fn.__name__}")
        params = [p for p in sig.parameters.values() if p.name != into]
        for n in names:
            f = all_fields[n]
            if f.default is dataclasses.MISSING:
                raise ValueError(f"fields: {cls.__name__}.{n} has no default")
            ann = Annotated[hints[n], typer.Option(help=docs.get(n, ""))]
            params.append(
                inspect.Parameter(
                    n, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=ann
                )
            )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names if n in kwargs}
            return fn(*args, **{into: cls(**values)}, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper  # type: ignore[return-value]

    return decorate
