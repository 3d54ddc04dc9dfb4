"""Where rank 0's metric records go: ``metrics.jsonl`` always, TensorBoard event files when asked.

A record is one flat-ish dict ``{"step", "split", ...}``; its numbers (nested ones too:
``"terms": {"recon": ...}``) become TensorBoard scalars ``<split>/<key>[/<name>]``.
"""
from __future__ import annotations

import sys

from hqvae.train.run_dir import TENSORBOARD, RunDir, numeric_leaves


class MetricsLogger:
    """``log(record)`` appends to the run's ``metrics.jsonl`` (and TensorBoard when enabled)."""

    def __init__(self, run: RunDir, tensorboard: bool = False):
        self.run = run
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("logging.tensorboard: the tensorboard package is not installed "
                      "(pip install tensorboard); writing metrics.jsonl only", file=sys.stderr)
            else:
                self.writer = SummaryWriter(str(run.root / TENSORBOARD))

    def log(self, record: dict) -> None:
        self.run.append_metrics(record)
        if self.writer is None:
            return
        for name, value in numeric_leaves(record).items():
            if name != "step":
                self.writer.add_scalar(f"{record['split']}/{name}", value, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
