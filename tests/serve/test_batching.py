from __future__ import annotations

import asyncio

import pytest

from shopml.serve.batching import MicroBatcher


def test_concurrent_calls_share_batches_and_get_their_own_results():
    seen: list[int] = []

    def fn(items):
        seen.append(len(items))
        return [x * 10 for x in items]

    async def main():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=20)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [i * 10 for i in range(20)]
    assert max(seen) > 1 and max(seen) <= 8 and sum(seen) == 20


def test_errors_reach_every_caller_and_the_worker_survives():
    calls = {"n": 0}

    def fn(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("image: not decodable")
        return items

    async def main():
        batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=1)
        with pytest.raises(ValueError, match="not decodable"):
            await batcher.submit(1)
        ok = await batcher.submit(2)
        await batcher.stop()
        return ok

    assert asyncio.run(main()) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda x: x, max_batch=0)
