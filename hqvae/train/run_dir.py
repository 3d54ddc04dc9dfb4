"""The layout of a training run on disk: what ``hqvae train`` writes and every other command reads.

    runs/<name>/
      run.json                 RunInfo (hqvae.train.run_info, versioned): the resolved training
                               config, model type, data provenance, versions, status ("running" |
                               "finished" | "interrupted" | "stopped_nan" | "failed"), message,
                               step, wall time, best validation step
      metrics.jsonl            one JSON object per line: {"step", "split": "train" | "val", ...}
      checkpoints/last/        config.json + model.safetensors + train_state.pt (resume)
      checkpoints/best/        config.json + model.safetensors (lowest validation loss)
      tensorboard/             optional

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so an
interrupted write leaves the previous version intact. Checkpoint folders are written whole beside
their place (``checkpoints/.<which>.partial``) and swapped in (``hqvae.train.checkpoint``).

Records of metrics.jsonl (``step`` = optimiser steps done):

    train  {"step", "split": "train", "loss", "terms": {"recon", "mse", "discrete/<l>", ...},
            "logs": {"perplexity/<l>", "entropy/<l>", "variance/<l>"}, "lr", "temperature" (SQ
            models), "grad_norm" (with optim.grad_clip), "img_per_s", "wall_time_s"}: means over
            the steps since the previous train record, and over ranks
    val    {"step", "split": "val", "loss", "terms", "rmse", "mse", "psnr", "perplexity/<l>",
            "usage/<l>", "items", "best": bool}: deterministic quantisation, whole (or
            ``val_batches``-limited) val split
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from hqvae.io import WriteFailed, atomic_write_bytes, atomic_write_json, read_json
from hqvae.train.run_info import RunInfo

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
TRAIN_STATE_FILE = "train_state.pt"
TENSORBOARD = "tensorboard"


def numeric_leaves(record: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics record, nested keys joined with "/" (``terms/recon``)."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(numeric_leaves(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class RunDir:
    """Paths and readers for one run folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.run_file, self.metrics_file = self.root / RUN_FILE, self.root / METRICS_FILE
        self.train_state_file = self.root / CHECKPOINTS / "last" / TRAIN_STATE_FILE

    def checkpoint(self, which: str = "best") -> Path:
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        return self.root / CHECKPOINTS / which

    def exists(self) -> bool:
        return self.run_file.is_file()

    def resumable(self) -> RunInfo:
        """run.json of the run to continue here; a FileNotFoundError with the fix when there is none."""
        if not self.exists():
            raise FileNotFoundError(f"{self.root} holds no run to resume ({self.run_file} is missing); "
                                    f"start it without --resume, or with --resume auto (which starts a run "
                                    f"when there is none)")
        return self.read_info()

    def has_contents(self) -> bool:
        """Whether any file of a run is here (run.json, metrics, checkpoints or TensorBoard files)."""
        return any((self.root / name).exists() for name in (RUN_FILE, METRICS_FILE, CHECKPOINTS, TENSORBOARD))

    def clear(self) -> None:
        """Delete the run's files (those of the layout above; anything else in the folder stays)."""
        for name in (RUN_FILE, METRICS_FILE):
            (self.root / name).unlink(missing_ok=True)
        for name in (CHECKPOINTS, TENSORBOARD):
            shutil.rmtree(self.root / name, ignore_errors=True)

    def read_info(self) -> RunInfo:
        """run.json (any version, see hqvae.train.run_info), with a clear error when the folder is not a run."""
        if not self.run_file.is_file():
            raise FileNotFoundError(
                f"{self.root} is not an hqvae run: {RUN_FILE} is missing (create one with `hqvae train --out {self.root}`)"
            )
        fix = (f"restore it from a copy, or start the run over with `hqvae train --out {self.root} --force "
               f"--config ...`")
        info = read_json(self.run_file, fix)
        if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
            raise ValueError(f"{self.run_file} is not an hqvae run.json (no config section): it is damaged or "
                             f"foreign; {fix}")
        return RunInfo.from_dict(info)

    def write_info(self, info: RunInfo) -> None:
        atomic_write_json(self.run_file, info.to_dict())

    def append_metrics(self, record: dict) -> None:
        """Append one JSON line (an append of one line is the unit; a torn last line is skipped on read)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_file, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as error:
            raise WriteFailed(self.metrics_file, error) from error

    def truncate_metrics(self, step: int) -> None:
        """Keep only the records up to ``step`` (a resumed run rewrites the steps after its checkpoint)."""
        if not self.metrics_file.is_file():
            return
        kept = [json.dumps(record) + "\n" for record in self.read_metrics() if record.get("step", 0) <= step]
        atomic_write_bytes(self.metrics_file, "".join(kept).encode())

    def read_metrics(self, split: str | None = None) -> Iterator[dict]:
        """The metrics records, optionally of one split; a torn last line is skipped."""
        if not self.metrics_file.is_file():
            return
        with open(self.metrics_file) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if split is None or record.get("split") == split:
                    yield record

    def load_model(self, which: str = "best", device: str = "cpu"):
        """The trained model from ``checkpoints/<which>``, exactly that one (no silent fallback)."""
        from hqvae.models import from_pretrained

        path = self.checkpoint(which)
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{self.root} has no {which!r} checkpoint ({path / 'model.safetensors'} is missing); "
                "train the run further, or ask for the other checkpoint"
            )
        return from_pretrained(path, device=device)
