"""Where rank 0's metric records go: ``metrics.jsonl`` always, TensorBoard event files when asked.

A record is one flat-ish dict ``{"step", "split", ...}``; numbers nested one level deep
(``"terms": {"recon": ...}``) become TensorBoard scalars ``<split>/<key>/<name>``.
"""
from __future__ import annotations

import sys

from hqvae.train.run_dir import TENSORBOARD, RunDir


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
        step, split = record["step"], record["split"]
        for key, value in record.items():
            if isinstance(value, dict):
                for name, inner in value.items():
                    if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                        self.writer.add_scalar(f"{split}/{key}/{name}", inner, step)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                self.writer.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
