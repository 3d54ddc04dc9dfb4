"""How the files of a folder (or archive) become labelled train / val / test items.

Given the normalised relative posix paths of the data files (hidden files and folders, whose
names start with ``.``, are ignored):

* If the top level has ``train/``, ``val/`` or ``test/`` folders, those are the splits and no
  file may lie outside them.  A missing ``val/`` is carved out of ``train/``.
* Within a split folder (or the whole folder when there are none), files in sub-folders are
  labelled by the first sub-folder's name (``root/<class>/.../file``; classes sorted by name,
  label = index); files lying directly in it are unlabelled (label -1).  Mixing the two is an
  error, as a stray file would otherwise silently change the classes.
* Items are ordered by path; the per-class tail rule of :mod:`hqvae.data.splits` cuts val
  (and, without split folders, test) from the end of each class.
"""

from dataclasses import dataclass

import torch

from hqvae.data.errors import DataError
from hqvae.data.splits import SPLITS, split_by_tail

WHOLE = "all"  # the group name of a folder without split folders


def is_visible(path: str) -> bool:
    """False for paths with a hidden component (``.DS_Store``, ``._x.jpg``, ``.cache/...``)."""
    return not any(part.startswith(".") for part in path.split("/"))


@dataclass(frozen=True)
class FolderPlan:
    """The files of a source, each with its group (split folder or ``"all"``) and label."""

    source: str  # the folder or archive, for error messages
    paths: tuple[str, ...]  # sorted
    groups: tuple[str, ...]  # per path
    labels: tuple[int, ...]  # per path, -1 when unlabelled
    classes: tuple[str, ...]

    @property
    def presplit(self) -> bool:
        return WHOLE not in self.groups

    def needed_groups(self, split: str) -> set[str]:
        """The groups whose files must be read to build ``split`` (checked by the caller)."""
        if not self.presplit:
            return {WHOLE}
        needed = "test" if split == "test" else "train"
        if needed not in self.groups:
            raise DataError(f"{self.source}: has split folders but no {needed}/ folder, which the {split} split "
                            f"needs; add it, or use a split that exists")
        return {"test"} if split == "test" else {"train", "val"}


def plan_folder(paths, source: str) -> FolderPlan:
    """Apply the module's rules to relative posix ``paths``; ``source`` names the folder in errors."""
    paths = sorted(path for path in paths if is_visible(path))
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
    return FolderPlan(source=source, paths=tuple(path for path, _, _ in entries),
                      groups=tuple(group for _, group, _ in entries),
                      labels=tuple(index[name] if name is not None else -1 for _, _, name in entries),
                      classes=tuple(classes))


def select_split(split: str, labels: torch.Tensor, groups: list[str], val_fraction: float,
                 test_fraction: float) -> tuple[torch.Tensor, str]:
    """Indices (sorted int64) of ``split`` (checked by the caller) among loaded items with the given
    labels and groups, and a short phrase saying how the split was made, for data set descriptions."""
    in_group = {name: torch.tensor([g == name for g in groups], dtype=torch.bool) for name in set(groups)}
    if WHOLE in in_group:
        return split_by_tail(labels, val_fraction, test_fraction)[split], (
            f"files sorted by path, per class the last {test_fraction:.0%} test, the {val_fraction:.0%} before "
            f"them val, the rest train")
    if split == "test" or (split == "val" and "val" in in_group):
        return torch.nonzero(in_group[split]).flatten(), f"{split}/ folder"
    train = torch.nonzero(in_group["train"]).flatten()
    if "val" in in_group:
        return train, "train/ folder"
    rule = (f"last {val_fraction:.0%} of each class of train/" if split == "val" else
            f"train/ less the last {val_fraction:.0%} of each class")
    return train[split_by_tail(labels[train], val_fraction)[split]], rule
