"""Opening a training run for the eval, encode, decode and report commands.

A run folder follows :class:`hqvae.train.run_dir.RunDir`.  From its ``run.json`` this module
reads (all optional except ``config.data.name`` when data are needed):

    config.data   {"name", "root", "options": {...}, "limit"} -> load_dataset(name, split, root, **options)
                  ("limit" selects training items and is ignored; loader options written
                  next to name/root instead of under "options" are accepted too)
    config.train.seed (or config.seed)   the training seed, reported as such
    best.step     step of checkpoints/best;   step   step of checkpoints/last
    data.train (or dataset)   description of the training data

Evaluation results live by default in ``<run>/eval/results.json`` (test split, best checkpoint)
or ``<run>/eval/<split>-<checkpoint>/results.json`` (any other choice), with their PNGs beside.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hqvae.data import DataError, ImageDataset, load_dataset
from hqvae.models import from_pretrained
from hqvae.models.pretrained import WEIGHTS_NAME
from hqvae.train.run_dir import RunDir

EVAL_DIR = "eval"
RESULTS_NAME = "results.json"
TRAINING_ONLY_KEYS = ("split", "limit")  # config.data keys that select training items, not loader options


def default_results_path(run: str | Path, split: str = "test", checkpoint: str = "best") -> Path:
    """Where ``hqvae eval`` writes and ``hqvae report`` looks for the results of a run."""
    folder = Path(run) / EVAL_DIR
    if (split, checkpoint) != ("test", "best"):
        folder = folder / f"{split}-{checkpoint}"
    return folder / RESULTS_NAME


@dataclass
class OpenedRun:
    """A run folder with its model loaded from one checkpoint.

    checkpoint: {"which": "best" | "last", "step": int | None, "path": str, "note": str (only
    when the requested checkpoint was missing and the other one was used)}.
    """

    run_dir: RunDir
    info: dict
    model: nn.Module
    checkpoint: dict

    @property
    def name(self) -> str:
        return self.run_dir.root.resolve().name

    @property
    def seed(self) -> int | None:
        """``config.train.seed`` (hqvae train), else ``config.seed`` or ``seed``; None if unknown."""
        config = self.info.get("config") or {}
        for value in ((config.get("train") or {}).get("seed"), config.get("seed"), self.info.get("seed")):
            if value is not None:
                return value
        return None

    @property
    def training_data(self) -> str | None:
        """Description of the training data: ``data.train`` (hqvae train) or ``dataset``."""
        return (self.info.get("data") or {}).get("train") or self.info.get("dataset")

    def describe(self) -> dict:
        """The run's labels for a results file: path, name, model type, seed, status, training data."""
        return {
            "path": str(self.run_dir.root),
            "name": self.name,
            "model_type": self.info.get("model_type", self.model.config.name),
            "seed": self.seed,
            "status": self.info.get("status"),
            "step": self.info.get("step"),
            "training_data": self.training_data,
        }

    def fingerprint(self) -> str:
        """Short sha256 of the checkpoint's weight file: tells codes of one training run from another's."""
        digest = hashlib.sha256((Path(self.checkpoint["path"]) / WEIGHTS_NAME).read_bytes()).hexdigest()
        return digest[:16]


def _has_weights(path: Path) -> bool:
    return (path / WEIGHTS_NAME).is_file()


def open_run(path: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> OpenedRun:
    """Read ``run.json`` and load the model of ``checkpoints/<checkpoint>``.

    A missing ``best`` falls back to ``last`` (and the other way round), saying so in
    ``checkpoint["note"]``; no checkpoint at all raises a FileNotFoundError naming the fix.
    """
    run_dir = RunDir(path)
    if not run_dir.root.is_dir():
        raise FileNotFoundError(f"{run_dir.root}: no such run folder; pass --run runs/<name> "
                                f"(a folder made by hqvae train)")
    info = run_dir.read_info()
    requested = run_dir.checkpoint(checkpoint)  # raises on a name other than best/last
    other = "last" if checkpoint == "best" else "best"
    which, note = checkpoint, None
    if not _has_weights(requested):
        if not _has_weights(run_dir.checkpoint(other)):
            raise FileNotFoundError(
                f"{run_dir.root} has no checkpoint: neither checkpoints/best/{WEIGHTS_NAME} nor "
                f"checkpoints/last/{WEIGHTS_NAME} exists; train the run first (hqvae train ... --out {run_dir.root}) "
                f"or wait until it has saved one"
            )
        which, note = other, f"checkpoints/{checkpoint} is missing; used checkpoints/{other}"
    folder = run_dir.checkpoint(which)
    step = (info.get("best") or {}).get("step") if which == "best" else info.get("step")
    record = {"which": which, "step": step, "path": str(folder)}
    if note:
        record["note"] = note
    return OpenedRun(run_dir, info, from_pretrained(folder, device=device), record)


def load_run_data(info: dict, split: str, root: str | None = None, limit: int | None = None) -> ImageDataset:
    """The ``split`` of the data set the run was trained on (``run.json``'s ``config.data``).

    ``root`` replaces the recorded data root (a run moved to another machine); ``limit`` keeps
    the first ``limit`` items, and says so in the description.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be positive, got {limit}")
    data = dict((info.get("config") or {}).get("data") or {})
    name = data.pop("name", None)
    if name is None:
        raise ValueError("run.json has no config.data.name: cannot tell which data set to load")
    recorded_root = data.pop("root", None)
    for key in TRAINING_ONLY_KEYS:
        data.pop(key, None)
    nested = data.pop("options", None) or {}
    options = {**data, **nested}
    try:
        dataset = load_dataset(name, split, root=root or recorded_root, **options)
    except DataError as error:
        raise FileNotFoundError(f"cannot load the run's data set {name!r} ({error}); "
                                f"pass --data-root to point at it") from None
    except TypeError as error:
        raise ValueError(f"run.json's config.data has options load_dataset({name!r}) does not accept "
                         f"({error})") from None
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(torch.arange(limit), split, f"{dataset.description}; first {limit} items only")
    return dataset
