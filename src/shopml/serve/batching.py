"""Micro-batching for the image encoder: concurrent requests share one forward pass.

Each request awaits :meth:`MicroBatcher.submit`; a single worker task collects up to ``max_batch``
items or waits at most ``max_wait_ms`` after the first one, runs ``fn(items)`` once in a thread (so the
event loop keeps serving), and hands every caller its own result or its own exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any


class MicroBatcher:
    """Batch concurrent calls of ``fn(list_of_items) -> list_of_results``."""

    def __init__(
        self,
        fn: Callable[[list[Any]], Sequence[Any]],
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, found {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: expected >= 0, found {max_wait_ms}")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0

    async def start(self) -> None:
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def submit(self, item: Any) -> Any:
        await self.start()
        assert self._queue is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            items = [item for item, _ in batch]
            try:
                results = await asyncio.to_thread(self.fn, items)
                if len(results) != len(items):
                    raise RuntimeError(f"batch function returned {len(results)} for {len(items)}")
            except Exception as exc:  # every waiting caller gets the error, the worker lives on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches_run += 1
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
