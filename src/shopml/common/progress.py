"""One progress reporter for every long loop: a rich bar on a terminal, plain lines elsewhere.

When the output is not a terminal (a log file, CI, a pipe), a rich bar renders nothing until the
end, so a user watching the log sees nothing for minutes. :class:`Progress` then prints one plain
line every ``every_s`` seconds (and at the end), flushed::

    epoch 1/2  120/480 (25%)  loss 0.4213  20,311 ex/s  0:00:12

Usage::

    with Progress(total=len(batches), description="epoch 1/2", enabled=is_main) as bar:
        for i, batch in enumerate(batches):
            ...
            bar.update(i + 1, loss=loss_value, ex_s=rate)
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _format_value(name: str, value: Any) -> str:
    if isinstance(value, float):
        if name.endswith("_s") or abs(value) >= 1000:
            return f"{value:,.0f} {name.replace('_s', '/s')}"
        return f"{name} {value:.4f}"
    return f"{name} {value}"


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Report ``completed/total`` with named fields.

    Args:
        total: the number of steps (``None``: unknown).
        description: printed first on every line (e.g. ``"epoch 1/2"``).
        enabled: ``False`` reports nothing (e.g. on ranks other than 0).
        every_s: seconds between plain lines when the output is not a terminal.
        stream: where to write (default: stderr).
        rich: ``True``/``False`` forces the bar on or off; ``None``: a bar exactly when ``stream``
            is a terminal.
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        enabled: bool = True,
        every_s: float = 10.0,
        stream: TextIO | None = None,
        rich: bool | None = None,
    ) -> None:
        self.total = total
        self.description = description
        self.enabled = enabled
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stderr
        self.completed = 0
        self.fields: dict[str, Any] = {}
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._bar = None
        self._closed = False
        if not enabled:
            return
        use_rich = rich if rich is not None else _isatty(self.stream)
        if use_rich:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[text]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=total, text="")

    def update(self, completed: int | None = None, **fields: Any) -> None:
        """Set the steps done (default: one more) and any named fields (``loss=0.4``)."""
        self.completed = self.completed + 1 if completed is None else completed
        self.fields.update(fields)
        if not self.enabled or self._closed:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, text=self._field_text())
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            self._print_line()

    def close(self, message: str | None = None) -> None:
        """Stop the bar; without a terminal print the final line (and ``message``, if any)."""
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
        else:
            self._print_line()
        if message:
            print(f"{self.description}: {message}", file=self.stream, flush=True)

    def line(self) -> str:
        """The plain line for the current state."""
        if self.total:
            pct = 100.0 * self.completed / self.total
            count = f"{self.completed}/{self.total} ({pct:.0f}%)"
        else:
            count = str(self.completed)
        parts = [self.description, count]
        if self.fields:
            parts.append(self._field_text())
        parts.append(_elapsed(time.perf_counter() - self._t0))
        return "  ".join(parts)

    def _field_text(self) -> str:
        return "  ".join(_format_value(k, v) for k, v in self.fields.items())

    def _print_line(self) -> None:
        print(self.line(), file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
