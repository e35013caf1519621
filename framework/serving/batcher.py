"""Concurrent requests scored together: while the source scores one batch, requests queue; the
next batch takes all that waited (up to `max_batch_pairs`), after at most `max_wait_s` for more.
One thread scores, so a model is never run by two requests at once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass
class _Request:
    prompts: list
    responses: list
    future: asyncio.Future


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    pairs: int = 0
    largest_batch: int = 0  # pairs


class Batcher:
    def __init__(self, score: Callable[[Sequence, Sequence[str]], list[float]], *,
                 max_batch_pairs: int = 64, max_wait_s: float = 0.002):
        self.score, self.max_batch_pairs, self.max_wait_s = score, max_batch_pairs, max_wait_s
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.stats = BatchStats()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-scoring")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        while not self.queue.empty():  # requests that never ran: answered, not dropped
            self.queue.get_nowait().future.set_exception(RuntimeError("the server is stopping"))
        self.executor.shutdown(wait=True)

    async def submit(self, prompts: list, responses: list[str]) -> list[float]:
        if not prompts:
            return []
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Request(prompts, responses, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            pairs = len(batch[0].prompts)
            deadline = loop.time() + self.max_wait_s
            while pairs < self.max_batch_pairs:
                try:
                    if self.queue.empty():
                        timeout = deadline - loop.time()
                        if timeout <= 0:
                            break
                        item = await asyncio.wait_for(self.queue.get(), timeout)
                    else:
                        item = self.queue.get_nowait()
                except asyncio.TimeoutError:
                    break
                batch.append(item)  # the last one may take the batch past max_batch_pairs
                pairs += len(item.prompts)
            prompts = [p for r in batch for p in r.prompts]
            responses = [x for r in batch for x in r.responses]
            try:
                scores = await loop.run_in_executor(self.executor, self.score, prompts, responses)
                if len(scores) != len(responses):
                    raise RuntimeError(f"the source returned {len(scores)} scores for "
                                       f"{len(responses)} pairs")
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            self.stats.requests += len(batch)
            self.stats.batches += 1
            self.stats.pairs += len(responses)
            self.stats.largest_batch = max(self.stats.largest_batch, len(responses))
            start = 0
            for r in batch:
                if not r.future.done():  # a client that went away
                    r.future.set_result([float(s) for s in scores[start:start + len(r.prompts)]])
                start += len(r.prompts)
