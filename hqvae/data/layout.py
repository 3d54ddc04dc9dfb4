"""How the files of a folder (or archive) become labelled train / val / test items.

Given the normalised relative posix paths of the data files (the loaders leave out hidden files
and folders, whose names start with ``.``):

* If the top level has ``train/``, ``val/`` or ``test/`` folders, those are the splits and no
  file may lie outside them.  A missing ``val/`` is carved out of ``train/``.
* Within a split folder (or the whole folder when there are none), files in sub-folders are
  labelled by the first sub-folder's name (``root/<class>/.../file``; classes sorted by name,
  label = index); files lying directly in it are unlabelled (label -1).  Mixing the two is an
  error, as a stray file would otherwise silently change the classes.
* Items are ordered by path; the per-class tail rule of :mod:`hqvae.data.splits` cuts val
  (and, without split folders, test) from the end of each class.

:func:`decode_files` and :func:`folder_dataset` are the steps that the image and audio folder
loaders share: decode the files a split needs (leaving unreadable ones out on request), then
cut the split and describe it.
"""

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hqvae.data.dataset import ImageDataset
from hqvae.data.errors import CorruptFileError, DataError
from hqvae.data.splits import SPLITS, split_by_tail

WHOLE = "all"  # the group name of a folder without split folders


def list_files(root: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted relative posix paths of the visible files under ``root`` whose names end in ``suffixes``."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        relative = Path(folder).relative_to(root)
        found += [(relative / name).as_posix() for name in files
                  if not name.startswith(".") and name.lower().endswith(suffixes)]
    return sorted(found)


@dataclass(frozen=True)
class FolderPlan:
    """The files of a source, each with its group (split folder or ``"all"``) and label."""

    source: str  # the folder or archive, for error messages
    paths: tuple[str, ...]  # sorted
    groups: tuple[str, ...]  # per path
    labels: tuple[int, ...]  # per path, -1 when unlabelled
    classes: tuple[str, ...]

    def needed_groups(self, split: str) -> set[str]:
        """The groups whose files must be read to build ``split`` (checked by the caller)."""
        if WHOLE in self.groups:
            return {WHOLE}
        needed = "test" if split == "test" else "train"
        if needed not in self.groups:
            raise DataError(f"{self.source}: has split folders but no {needed}/ folder, which the {split} split "
                            f"needs; add it, or use a split that exists")
        return {"test"} if split == "test" else {"train", "val"}


def plan_folder(paths, source: str) -> FolderPlan:
    """Apply the module's rules to relative posix ``paths``; ``source`` names the folder in errors."""
    paths = sorted(paths)
    if not paths:
        raise DataError(f"{source}: no data files found; check the path and the file extensions")
    tops = {path.split("/", 1)[0] for path in paths}
    presplit = bool(tops & set(SPLITS)) and any("/" in path for path in paths)
    entries = []  # (path, group, class name or None)
    for path in paths:
        parts = path.split("/")
        if presplit:
            if parts[0] not in SPLITS or len(parts) < 2:
                raise DataError(f"{source}: {path} lies outside the train/, val/ and test/ folders; "
                                f"move or delete it")
            group, parts = parts[0], parts[1:]
        else:
            group = WHOLE
        entries.append((path, group, parts[0] if len(parts) > 1 else None))
    labelled = [entry for entry in entries if entry[2] is not None]
    if labelled and len(labelled) != len(entries):
        loose = next(path for path, _, name in entries if name is None)
        raise DataError(f"{source}: {loose} lies beside class folders such as {labelled[0][2]}/; "
                        f"put every file in a class folder, or none")
    classes = sorted({name for _, _, name in labelled})
    index = {name: i for i, name in enumerate(classes)}
    paths, groups, names = zip(*entries)
    return FolderPlan(source, paths, groups, tuple(index.get(name, -1) for name in names), tuple(classes))


def decode_files(plan: FolderPlan, split: str, decode: Callable[[str], np.ndarray], skip_corrupt: bool, what: str,
                 fix: str) -> dict:
    """Decode the files of ``plan`` that ``split`` needs with ``decode(path)``, which raises
    :class:`CorruptFileError` for an unreadable file (left out when ``skip_corrupt``).

    Returns ``items``, an array (N, *item shape) of ``decode``'s dtype, and for the same N items
    ``labels`` (int64 tensor), ``groups`` and ``paths``; then ``classes`` and ``skipped`` (paths).
    ``what`` names the files in messages ("image"); ``fix`` says how to give every item one size.
    """
    groups = plan.needed_groups(split)
    chosen = [i for i, group in enumerate(plan.groups) if group in groups]
    items, kept, skipped = None, [], []
    for i in chosen:
        path = plan.paths[i]
        try:
            item = decode(path)
        except CorruptFileError:
            if not skip_corrupt:
                raise
            skipped.append(path)
            continue
        if items is None:  # filled in place: stacking a list would hold every item twice
            items = np.empty((len(chosen), *item.shape), dtype=item.dtype)
        elif item.shape != items.shape[1:]:
            raise DataError(f"{plan.source}/{path}: {what} of size {_size(item.shape)} but {plan.paths[kept[0]]} "
                            f"is {_size(items.shape[1:])}; pass {fix}")
        items[len(kept)] = item
        kept.append(i)
    if not kept:
        raise DataError(f"{plan.source}: none of the {len(chosen)} {what} files could be read")
    return {"items": items[:len(kept)], "labels": torch.tensor([plan.labels[i] for i in kept], dtype=torch.int64),
            "groups": [plan.groups[i] for i in kept], "paths": [plan.paths[i] for i in kept],
            "classes": list(plan.classes), "skipped": skipped}


def _size(shape: tuple[int, ...]) -> str:
    """``W x H`` of an (H, W, C) image, ``S`` of an (S,) clip."""
    return "x".join(str(n) for n in reversed(shape[:2]))


def folder_dataset(data: dict, split: str, val_fraction: float, test_fraction: float, *, root, name: str,
                   title: str, what: str, items: str, rule: str | None = None, **meta) -> ImageDataset:
    """The ``split`` of ``data`` (:func:`decode_files`' result with ``images`` (N, C, H, W) in place of
    ``items``) by the module's rules, or all of it when ``rule`` names the caller's own split rule,
    described as "<title>, <split> split (<rule>), <N> <items>, from <root>" and a count of the skipped
    files (with one warning); ``meta`` joins ``files`` and ``skipped``."""
    skipped, labels, groups = data["skipped"], data["labels"], data["groups"]
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable {what} files, e.g. {skipped[0]}", stacklevel=3)
    if rule is not None:
        indices = torch.arange(len(labels))
    elif WHOLE in groups:
        indices = split_by_tail(labels, val_fraction, test_fraction)[split]
        rule = (f"files sorted by path, per class the last {test_fraction:.0%} test, the {val_fraction:.0%} before "
                f"them val, the rest train")
    else:  # split folders; without val/, val is carved from the end of each class of train/
        carve = split != "test" and "val" not in groups
        folder = "train" if carve else split
        indices = torch.tensor([i for i, group in enumerate(groups) if group == folder], dtype=torch.int64)
        rule = f"{split}/ folder"
        if carve:
            indices = indices[split_by_tail(labels[indices], val_fraction)[split]]
            rule = (f"last {val_fraction:.0%} of each class of train/" if split == "val" else
                    f"train/ less the last {val_fraction:.0%} of each class")
    return ImageDataset(data["images"][indices].contiguous(), labels[indices], name=name, split=split,
                        description=f"{title}, {split} split ({rule}), {len(indices)} {items}, from {root}"
                                    + (f", {len(skipped)} unreadable files skipped" if skipped else ""),
                        classes=data["classes"],
                        meta={"files": [data["paths"][i] for i in indices.tolist()], "skipped": skipped, **meta})
