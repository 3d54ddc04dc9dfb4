"""Fast mini-batches from an in-memory data set, with DDP-style sharding.

A batch is one ``index_select`` on the stored tensor followed by a conversion to float, which
is far cheaper than a :class:`torch.utils.data.DataLoader` collating items one by one.

Sharding follows :class:`torch.utils.data.distributed.DistributedSampler`: every rank draws
the same permutation (so the generator must be seeded identically on all ranks) and keeps
every ``world_size``-th index starting at ``rank``.  With ``drop_last=False`` the shards are an
exact partition of the data set (sizes differ by at most one, nothing is repeated), which is
what evaluation needs; with ``drop_last=True`` the permutation is first cut to a multiple of
``world_size`` and incomplete batches are dropped, so every rank runs the same number of
full batches, which is what DDP training needs.
"""

from collections.abc import Iterator

import torch


def epoch_order(n: int, shuffle: bool, generator: torch.Generator | None = None, drop_last: bool = False,
                rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The indices (int64, 1-D) that this rank visits in one epoch over ``n`` items."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
    if shuffle and world_size > 1 and generator is None:
        raise ValueError("shuffling with world_size > 1 needs a generator seeded identically on every rank "
                         "(or use make_loader(..., seed=...))")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if world_size > 1:
        if drop_last:
            order = order[: n - n % world_size]
        order = order[rank::world_size]
    return order


def split_batches(order: torch.Tensor, batch_size: int, drop_last: bool) -> list[torch.Tensor]:
    """Cut ``order`` into consecutive index batches of ``batch_size`` (the last one may be short)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    batches = list(torch.split(order, batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


class BatchLoader:
    """Re-iterable loader over an :class:`~hqvae.data.ImageDataset`, yielding its
    :meth:`~hqvae.data.ImageDataset.batches` ``(x, y)``: x float32 (B, C, H, W) in [0, 1], y int64 (B,);
    ``rank``/``world_size`` shard the data as the module docstring says (pass the same ``seed`` on every rank).

    Each ``iter()`` is one epoch.  The shuffling permutation is drawn from ``seed + epoch``;
    call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``) to get a new one,
    or leave it and every epoch repeats the same order.  ``device``: batches are moved there
    before the uint8 → float conversion (so only bytes cross to the GPU).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, device: torch.device | str | None = None):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of epoch ``epoch`` for the next iteration."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of batches per epoch on this rank."""
        order = epoch_order(len(self.dataset), False, None, self.drop_last, self.rank, self.world_size)
        return len(split_batches(order, self.batch_size, self.drop_last))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return self.dataset.batches(self.batch_size, self.shuffle, generator, self.drop_last, self.rank,
                                    self.world_size, self.device)


def batches(data, batch_size: int, rank: int = 0, world_size: int = 1,
            device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(x, y or None) in order: a data set's items (this rank's shard, :meth:`~hqvae.data.ImageDataset.batches`)
    in batches of ``batch_size``, or the ``(x, y)`` batches or bare x of any other iterable, as they are."""
    if hasattr(data, "batches"):
        return data.batches(batch_size, rank=rank, world_size=world_size, device=device)
    return ((batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None) for batch in data)


make_loader = BatchLoader  # the name the data sets' docs and the callers use
