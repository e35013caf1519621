"""TRL's RewardTrainer with group-preserving training batches, and exact pairwise accuracy."""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader
from transformers.trainer_utils import seed_worker
from trl import RewardTrainer

from framework_plugins.stages.reward_model.batching import GroupBatchSampler


class GroupedRewardTrainer(RewardTrainer):
    """Only the training DataLoader changes: a GroupBatchSampler over the `group` column.

    Mirrors `Trainer._get_dataloader`, whose own batch-sampler path is reserved for
    `BatchRebalanceSampler`; `accelerator.prepare` then shards whole batches across processes.
    """

    def get_train_dataloader(self) -> DataLoader:
        args = self.args
        sampler = GroupBatchSampler(
            self.train_dataset["group"],
            args.per_device_train_batch_size,
            seed=args.data_seed if args.data_seed is not None else args.seed,
        )
        dataset = self._remove_unused_columns(self.train_dataset, description="Training")
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
            worker_init_fn=partial(
                seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index
            ),
        )
        return self.accelerator.prepare(loader)


@torch.no_grad()
def pairwise_accuracy(trainer: RewardTrainer) -> tuple[float, int]:
    """(fraction of held-out pairs with r(chosen) > r(rejected), number of pairs).

    TRL logs the mean of per-batch accuracies, which weights a short last batch like a full
    one; this counts every pair once, across processes.
    """
    model = trainer.model
    was_training = model.training
    model.eval()
    wins, total = 0, 0
    for batch in trainer.get_eval_dataloader():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        chosen, rejected = logits.squeeze(-1).chunk(2)  # the collator stacks chosen, then rejected
        won = trainer.accelerator.gather_for_metrics((chosen > rejected).float())
        wins += int(won.sum().item())
        total += won.numel()
    model.train(was_training)
    return (wins / total if total else float("nan")), total
