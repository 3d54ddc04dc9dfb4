"""The prior folder that ``hqvae prior train`` writes and every other prior command reads.

    <prior>/
      run.json              kind "hqvae-prior", status, step, steps, best, the resolved config,
                            the tokenizer (run path, checkpoint, step, model type, fingerprint of its
                            weights), the code layout, number of classes, data descriptions
      metrics.jsonl         {"step", "split": "train", "loss" (bits per token), "bits_per_item", "lr",
                            "tokens_per_s", "wall_time_s"} and {"step", "split": "val", "bits_per_item",
                            "best"}
      codes/<split>-<n>.safetensors   the run's codes of a split, cached once (``hqvae encode``'s format)
      checkpoints/{best,last}/  config.json + prior.safetensors (+ train_state.pt in last)

It is laid out like a training run (``hqvae.train.run_dir.RunDir``), and its checkpoints are
written with the same atomic stage-and-swap (``hqvae.train.checkpoint``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from hqvae.codes_file import load_codes
from hqvae.data.splits import evenly_spaced_indices
from hqvae.io import file_fingerprint
from hqvae.priors.base import WEIGHTS_NAME, PriorBase, load_prior
from hqvae.runs import OpenedRun, encode_to_file, load_run_data, open_run
from hqvae.train.run_dir import RunDir

KIND = "hqvae-prior"
CODES_DIR = "codes"


@dataclass
class OpenedPrior:
    """A prior folder with one checkpoint's prior loaded: ``info`` (run.json as a dict), ``which`` (best |
    last), ``fingerprint`` (of the prior's weights)."""

    folder: RunDir
    info: dict
    prior: PriorBase
    which: str
    fingerprint: str

    @property
    def tokenizer(self) -> dict:
        return self.info["tokenizer"]

    def open_tokenizer(self, device: str | torch.device = "cpu", run: str | os.PathLike | None = None) -> OpenedRun:
        """The tokenizer run the prior was trained on (or ``run``, which must hold the same weights)."""
        path = run or self.tokenizer["run"]
        opened = open_run(path, self.tokenizer["checkpoint"], device)
        if opened.fingerprint() != self.tokenizer["model_fingerprint"]:
            raise ValueError(f"the tokenizer weights in {opened.checkpoint['path']} (fingerprint {opened.fingerprint()}) "
                             f"are not those the prior {self.folder.root} was trained on (fingerprint "
                             f"{self.tokenizer['model_fingerprint']}, run {self.tokenizer['run']}); pass --run with "
                             f"that run, or train a prior on this run (hqvae prior train --run {path} --out ...)")
        return opened

    def describe(self) -> dict:
        return {"path": str(self.folder.root), "checkpoint": self.which, "step": self.info.get("step"),
                "fingerprint": self.fingerprint}


def open_prior(path: str | os.PathLike, which: str = "best", device: str | torch.device = "cpu") -> OpenedPrior:
    """Read ``run.json`` of a prior folder and load ``checkpoints/<which>`` (falling back to the
    other checkpoint when it is missing)."""
    folder = RunDir(path)
    if not folder.run_file.is_file():
        raise FileNotFoundError(f"{folder.root} is not a prior folder (no run.json); train one with "
                                f"`hqvae prior train --run runs/<name> --out {folder.root}`")
    info = folder.read_info()
    if info.kind != KIND:
        raise ValueError(f"{folder.root} holds a tokenizer run, not a prior; pass a folder written by "
                         f"`hqvae prior train --run {folder.root} --out <prior folder>`")
    if not (folder.checkpoint(which) / WEIGHTS_NAME).is_file():
        which = "last" if which == "best" else "best"
    checkpoint = folder.checkpoint(which)
    return OpenedPrior(folder, info.to_dict(), load_prior(checkpoint, device), which,
                       file_fingerprint(checkpoint / WEIGHTS_NAME))


def cached_codes(folder: RunDir, opened: OpenedRun, split: str, count: int | None, batch_size: int,
                 data_root: str | None = None, first: bool = False) -> tuple[list[torch.Tensor], torch.Tensor | None, dict]:
    """(codes per layer, labels or None, metadata) of ``count`` items of ``split`` (evenly spaced,
    or the first ``count`` with ``first``; None: all), encoded once by the run's model and cached
    in ``<folder>/codes/``; a cache made with other weights is re-encoded."""
    name = f"{split}-{'all' if count is None else ('first' if first else 'even') + str(count)}.safetensors"
    path = folder.root / CODES_DIR / name
    if path.is_file():
        layers, labels, metadata = load_codes(path)
        if metadata.get("model_fingerprint") == opened.fingerprint():
            return layers, labels, metadata
    dataset = load_run_data(opened.info, split, data_root)
    if count is not None and count < len(dataset):
        indices = torch.arange(count) if first else evenly_spaced_indices(len(dataset), count)
        how = f"first {count}" if first else f"{count} evenly spaced"
        dataset = dataset.subset(indices, split, f"{dataset.description}; {how} items")
    layers, labels, metadata, _ = encode_to_file(opened, dataset, split, path, batch_size)
    return layers, labels, {"format": "hqvae.codes/1", **metadata}


def check_codes_origin(metadata: dict, opened: OpenedPrior, what: str) -> None:
    """A ValueError naming the fix when codes (their metadata) were not made by the prior's tokenizer."""
    fingerprint = metadata.get("model_fingerprint")
    expected = opened.tokenizer["model_fingerprint"]
    if fingerprint != expected:
        raise ValueError(f"{what} were made by the weights {fingerprint} (run {metadata.get('run', {}).get('path')}), "
                         f"but the prior {opened.folder.root} models the codes of {opened.tokenizer['run']} (weights "
                         f"{expected}); encode with that run, or train a prior on the codes' run "
                         f"(hqvae prior train --run <that run> --out ...)")
