"""Batches that never split a prompt's comparisons (InstructGPT section 3.5).

Training on each of a prompt's K(K-1)/2 pairs as an independent example lets the reward model
see every response K-1 times per epoch across different batches, and it overfits; InstructGPT
keeps all of a prompt's comparisons in one batch element. Here: whole groups per batch.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Iterator, Sequence

from torch.utils.data import Sampler

from framework.errors import ConfigError


class GroupBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices: whole groups, at most `batch_size` indices per batch.

    Each epoch shuffles the groups (seed + epoch), packs them best-fit-decreasing, and
    shuffles the batches. Groups of equal size are interchangeable in that packing, so the
    number of batches is the same every epoch, which the trainer's step count relies on.
    Under several processes accelerate deals out whole batches, so groups stay intact.
    """

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int = 0):
        members: dict[int, list[int]] = defaultdict(list)
        for index, group in enumerate(groups):
            members[group].append(index)
        self.groups = list(members.values())
        largest = max((len(g) for g in self.groups), default=0)
        if largest > batch_size:
            raise ConfigError(
                f"a prompt has {largest} comparison pairs, more than the batch size {batch_size}; "
                f"its pairs must share a batch, so set per_device_train_batch_size to at least "
                f"{largest}."
            )
        self.batch_size = None  # batches vary in size; tells accelerate not to assume one
        self.max_batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self._length = len(self._batches(0))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches(self.epoch)

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(self.groups)
        rng.shuffle(order)
        order.sort(key=len, reverse=True)  # stable: equal sizes keep their shuffled order
        batches: list[list[int]] = []
        # free[r] = batches with exactly r free slots; best fit takes the fullest that fits.
        free: list[list[int]] = [[] for _ in range(self.max_batch_size + 1)]
        for group in order:
            fit = next((r for r in range(len(group), self.max_batch_size + 1) if free[r]), None)
            if fit is None:
                batches.append([])
                b, fit = len(batches) - 1, self.max_batch_size
            else:
                b = free[fit].pop()
            batches[b].extend(group)
            free[fit - len(group)].append(b)
        rng.shuffle(batches)
        return batches
