"""A data set from outside the package, in one file with one registration: "blobs", 1×16×16
greyscale images of a bright square on noise, the square's corner (one of 4) the class label;
made from a seed per split (train 48, val 8, test 8 items). Trained on with ``data.name=blobs``."""
from __future__ import annotations

import torch

from hqvae.data import ImageDataset, register_dataset

SIZES = {"train": 48, "val": 8, "test": 8}


def load_blobs(split: str, root=None, size: int = 16) -> ImageDataset:
    generator = torch.Generator().manual_seed(list(SIZES).index(split))
    count = SIZES[split]
    labels = torch.arange(count) % 4
    images = torch.randint(0, 60, (count, 1, size, size), generator=generator, dtype=torch.uint8)
    half = size // 2
    for i, label in enumerate(labels.tolist()):
        top, left = divmod(label, 2)
        images[i, 0, top * half:(top + 1) * half, left * half:(left + 1) * half] += 180
    return ImageDataset(images, labels, name="blobs", split=split, description=f"blobs, {split} split, {count} images",
                        classes=["top left", "top right", "bottom left", "bottom right"])


register_dataset("blobs", load_blobs)
