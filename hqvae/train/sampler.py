"""The training batches as a pure function of (seed, step): what makes resuming exact.

Step ``s`` belongs to epoch ``e = s // batches_per_epoch`` at position ``s % batches_per_epoch``.
Epoch ``e`` visits the permutation drawn from ``torch.Generator().manual_seed(seed + e)``,
sharded over ranks and cut into batches exactly as :class:`hqvae.data.BatchLoader` does with
``shuffle=True, drop_last=True`` (every rank: the same permutation, indices ``rank::world_size``,
full batches only). So the global batch of a step is the same set of items whatever the number
of processes, and a resumed run needs only the step to continue the data order.
"""
from __future__ import annotations

import torch

from hqvae.data.loader import epoch_order, split_batches


class StepSampler:
    """``indices(step)`` -> this rank's item indices (batch_size,) int64 for optimiser step ``step``.

    batch_size: items per rank and step. The current epoch's batches are cached.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batches_per_epoch = (num_items - num_items % world_size) // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{num_items} training items are fewer than one batch of {batch_size * world_size} "
                f"(train.batch_size); lower train.batch_size or data.limit"
            )
        self._epoch = -1
        self._batches: list[torch.Tensor] = []

    def state(self, step: int) -> dict:
        """train_state.pt's "data" after ``step`` steps: {"seed", "epoch", "position", "batches_per_epoch"}."""
        epoch, position = divmod(step, self.batches_per_epoch)
        return {"seed": self.seed, "epoch": epoch, "position": position, "batches_per_epoch": self.batches_per_epoch}

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.batches_per_epoch)  # the batch's place in its epoch
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = epoch_order(self.num_items, True, generator, True, self.rank, self.world_size)
            self._batches = split_batches(order, self.batch_size, drop_last=True)
            self._epoch = epoch
        return self._batches[position]
