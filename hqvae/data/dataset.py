"""The in-memory data set every loader returns."""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hqvae.data.loader import epoch_order, split_batches


PER_ITEM_META = ("files", "speakers", "takes")  # meta entries holding one value per item


class ImageDataset(Dataset):
    """Images (or spectrograms) held in memory as one tensor, with integer labels.

    Attributes:
        images: (N, C, H, W) tensor, uint8 (0..255) or float32 (already in [0, 1]).
        labels: (N,) int64; -1 for unlabelled items.
        name: the data set's registry name, e.g. ``"cifar10_folder"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        description: where the data came from, e.g.
            ``"CIFAR-10 (JPEG q75 copy), test split, 10000 images, from .../cifar10-jpeg-q75.tar.gz"``.
        classes: class names indexed by label (empty when unlabelled).
        meta: loader-specific extras, documented by each loader (e.g. ``files``, ``log_mel``);
            the entries named in ``PER_ITEM_META`` are lists with one value per item.

    Items are ``(x, y)``: x float32 (C, H, W) in [0, 1], y an int64 scalar tensor.
    For training use :meth:`batches` or :func:`hqvae.data.make_loader`, which index the
    stored tensor a whole batch at a time.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, name: str, split: str, description: str,
                 classes: Sequence[str] = (), meta: dict | None = None):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if images.dtype not in (torch.uint8, torch.float32):
            raise ValueError(f"images must be uint8 or float32, got {images.dtype}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.name = name
        self.split = split
        self.description = description
        self.classes = list(classes)
        self.meta = dict(meta or {})

    @property
    def num_channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(self.images.shape[2:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]
        return (_to_float(x) if x.dtype == torch.uint8 else x.clone()), self.labels[index]

    def __repr__(self) -> str:
        return f"ImageDataset({self.description}; shape {tuple(self.images.shape)}, {self.images.dtype})"

    def get_batch(self, indices: torch.Tensor,
                  device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x float32 (B, C, H, W) in [0, 1] and y int64 (B,) for the given indices, on ``device``."""
        x = _gather(self.images, indices)
        y = self.labels.index_select(0, indices)
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return _to_float(x), y

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, rank: int = 0, world_size: int = 1,
                device: torch.device | str | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of ``(x, y)`` batches on ``device``; see :mod:`hqvae.data.loader` for the sharding rule."""
        order = epoch_order(len(self), shuffle, generator, drop_last, rank, world_size)
        for indices in split_batches(order, batch_size, drop_last):
            yield self.get_batch(indices, device=device)

    def evenly_spaced(self, count: int) -> "ImageDataset":
        """``count`` items at evenly spaced positions (every class of a class-ordered split is
        represented), or the whole data set if it has no more than ``count`` items."""
        if count >= len(self):
            return self
        indices = torch.linspace(0, len(self) - 1, count).round().long()
        return self.subset(indices, self.split, f"{self.description}; {count} evenly spaced items")

    def subset(self, indices: torch.Tensor, split: str, description: str) -> "ImageDataset":
        """A new data set holding the items at ``indices``; the per-item ``meta`` lists are cut to match."""
        meta = {key: [value[i] for i in indices.tolist()] if key in PER_ITEM_META else value
                for key, value in self.meta.items()}
        return ImageDataset(self.images[indices], self.labels[indices], name=self.name, split=split,
                            description=description, classes=self.classes, meta=meta)


# Batch-sized gathers and conversions on the CPU run in numpy, single-threaded: for copies of this
# size torch's intra-op threads cost more than they save, and far more when other processes share
# the cores (measured: a steady 580k CIFAR images/s against 170k-1M with two torch threads).

def _gather(images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``images[indices]`` along the first dimension, on ``images``' device."""
    if images.device.type == "cpu":
        return torch.from_numpy(images.numpy().take(indices.numpy(), axis=0))
    return images.index_select(0, indices.to(images.device))


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 → float32 0..1 (exactly ``x.float() / 255``); float32 is returned as it is."""
    if x.dtype != torch.uint8:
        return x
    if x.device.type == "cpu":
        return torch.from_numpy(np.divide(x.numpy(), np.float32(255), dtype=np.float32))
    return x.float().div_(255)
