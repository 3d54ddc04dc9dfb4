"""Deterministic train / validation / test splits.

One rule serves every labelled source: within each class, in the source's own order, the last
items are held out.  With per-class counts ``n_c``, a class keeps its first
``n_c - n_val - n_test`` items for training, the next ``n_val = round(val_fraction · n_c)`` for
validation and the last ``n_test = round(test_fraction · n_c)`` for testing (rounding half up).
Unlabelled items (label -1) form one group.  Nothing is random, so every run, machine and rank
gets the same split, and train + val is always the source's training set.

Each loader's module docstring says how it applies the rule (MNIST, CIFAR-10, folders) or
what it does instead (FSDD splits by take).
"""

import math

import torch

SPLITS = ("train", "val", "test")


def check_split(split: str) -> None:
    """Raise a ValueError naming the choices unless ``split`` is one of ``SPLITS``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def evenly_spaced_indices(total: int, count: int | None) -> torch.Tensor:
    """Indices ⌊i·N/count⌋ of ``count`` items among N (all when count is None or ≥ N)."""
    if count is None or count >= total:
        return torch.arange(total)
    return torch.arange(count) * total // count


def split_by_tail(labels: torch.Tensor, val_fraction: float, test_fraction: float = 0.0) -> dict[str, torch.Tensor]:
    """Per-class tail hold-out (module docstring): ``{"train", "val", "test"}`` → sorted int64 indices.

    labels: (N,) integer labels in source order (-1 = unlabelled, one group).
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction <= 1):
        raise ValueError(f"need 0 <= val_fraction, test_fraction and their sum <= 1, "
                         f"got {val_fraction} and {test_fraction}")
    parts = {split: [] for split in SPLITS}
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        n = len(members)
        n_test = math.floor(test_fraction * n + 0.5)
        n_val = min(math.floor(val_fraction * n + 0.5), n - n_test)
        n_train = n - n_val - n_test
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train:n_train + n_val])
        parts["test"].append(members[n_train + n_val:])
    empty = torch.zeros(0, dtype=torch.int64)
    return {split: torch.sort(torch.cat(chunks)).values if chunks else empty for split, chunks in parts.items()}
