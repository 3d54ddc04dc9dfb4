"""run.json of a training run or a prior: :class:`RunInfo`, versioned.

    version 1  adds "version" and "kind" ("hqvae-run" | "hqvae-prior")
    version 0  (no "version" key) what hqvae wrote before; read as version 1, every missing key
               taking its default (a run without "kind" is a training run)

Keys the dataclass does not name (a prior's "tokenizer", "layout", ...; older files' "seed",
"dataset") are kept in ``extra`` and written back beside the others.
"""
from __future__ import annotations

import dataclasses
import datetime
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hqvae._version import __version__

RUN_INFO_VERSION = 1
RUN_KIND = "hqvae-run"


@dataclass
class RunInfo:
    """The record of a run: what trained, how far it got, where and with what.

    status: "running" | "finished" | "interrupted" | "stopped_nan" | "failed", with ``message``;
    step: steps of checkpoints/last; best: the checkpoints/best step and its validation value;
    data: {"train", "val"} descriptions; model_type / model_config: the tokenizer (runs only);
    batchnorm_recalibration: {"step", "items"} of the last BatchNorm recalibration (runs only, see
    ``train.recalibrate_batchnorm``): checkpoints/last carries it when its step is ``step``.
    """

    version: int = RUN_INFO_VERSION
    kind: str = RUN_KIND
    status: str = "running"
    message: str | None = None
    step: int = 0
    steps: int | None = None
    best: dict | None = None
    wall_time_s: float = 0.0
    model_type: str | None = None
    model_config: dict | None = None
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    device: str | None = None
    dtype: str | None = None
    world_size: int = 1
    hqvae_version: str | None = None
    torch_version: str | None = None
    git_commit: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    resumed_at_steps: list[int] = field(default_factory=list)
    batchnorm_recalibration: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**values, **self.extra}

    @classmethod
    def from_dict(cls, values: dict) -> RunInfo:
        """Any version up to RUN_INFO_VERSION (module docstring); a newer one raises ValueError."""
        version = values.get("version", 0)
        if not isinstance(version, int) or version > RUN_INFO_VERSION:
            raise ValueError(f"run.json version {version!r} is newer than this hqvae reads ({RUN_INFO_VERSION}); "
                             f"update hqvae")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "version"}
        known = {key: value for key, value in values.items() if key in names and value is not None}
        return cls(**known, extra={key: value for key, value in values.items() if key not in names | {"version"}})

    def record_provenance(self, device: torch.device, bf16: bool, world_size: int, previous: RunInfo | None,
                          resumed_at: int | None) -> None:
        """Where, with what and when it trained; ``previous``: run.json of the run resumed (None for a
        fresh start); ``resumed_at``: the step this process resumes from, None for a fresh start."""
        self.device = (f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
                       else f"cpu ({torch.get_num_threads()} threads)")
        self.dtype = "bf16" if bf16 else "fp32"
        self.world_size = world_size
        self.hqvae_version, self.torch_version, self.git_commit = __version__, torch.__version__, git_commit()
        self.started_at = (previous.started_at if previous else None) or now()
        self.updated_at = now()
        self.resumed_at_steps = (previous.resumed_at_steps if previous else []) + \
            ([resumed_at] if resumed_at is not None else [])


def git_commit() -> str | None:
    """The commit of the hqvae source tree (suffixed "+dirty" with uncommitted changes), if it is a git checkout."""
    source = Path(__file__).resolve().parents[1]
    try:  # the full hash whatever the tags: every tag excluded
        return subprocess.run(["git", "describe", "--always", "--abbrev=40", "--exclude=*", "--dirty=+dirty"],
                              cwd=source, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    """The UTC time to the second, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
