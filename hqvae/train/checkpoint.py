"""Writing ``checkpoints/best`` and ``checkpoints/last`` so that a crash never leaves a mixed or partial one.

A checkpoint folder is first written whole into ``checkpoints/.<which>.partial`` (:func:`stage`,
each file itself atomically), then swapped in (:func:`commit`): the old folder is renamed to
``.<which>.previous``, the new one to ``<which>``, and the old one deleted. A crash while
writing leaves the previous checkpoint untouched; a crash between the two renames
(microseconds) leaves ``.<which>.previous``, which :func:`recover` puts back. So
``model.safetensors`` and ``train_state.pt`` of ``last`` always belong to the same step.

The trainer stages ``best`` when validation finds a new best and commits it together with
``last``, so that after a crash ``best`` is never newer than the ``last`` a resume starts from.

``train_state.pt`` (``last`` only) holds, as tensors and plain containers (it loads with
``torch.load(path, weights_only=True)``):

    step            optimiser steps done
    optimizer       optimizer.state_dict() (Adam moments and step counts)
    rng             one hqvae.train.rng.capture() per rank, indexed by rank
    world_size      processes of the run that wrote it
    data            {"seed", "epoch", "position", "batches_per_epoch"}: the data order is a
                    function of (seed, step) (hqvae.train.sampler); kept to check a resume
    best            {"step", "val_loss"} of checkpoints/best, or None
    wall_time_s     training time so far, over all sessions
The learning rate and the temperature are functions of the step (hqvae.train.schedules).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from hqvae.io import atomic_write
from hqvae.train.run_dir import TRAIN_STATE_FILE, RunDir


def _staging(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial")


def _previous(target: Path) -> Path:
    return target.with_name(f".{target.name}.previous")


def stage(run: RunDir, which: str, model: nn.Module, train_state: dict | None = None) -> None:
    """Write the next ``checkpoints/<which>`` aside: ``model.save_pretrained`` files, plus
    ``train_state.pt`` when given (replacing anything staged before)."""
    staging = _staging(run.checkpoint(which))
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    if train_state is not None:
        atomic_write(staging / TRAIN_STATE_FILE, lambda tmp: torch.save(train_state, tmp))


def commit(run: RunDir, which: str) -> bool:
    """Swap the staged ``checkpoints/<which>`` into place; False when nothing is staged."""
    target = run.checkpoint(which)
    staging, previous = _staging(target), _previous(target)
    if not staging.is_dir():
        return False
    if target.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(target, previous)
    os.rename(staging, target)
    shutil.rmtree(previous, ignore_errors=True)
    return True


def save_checkpoint(run: RunDir, which: str, model: nn.Module, train_state: dict | None = None) -> Path:
    """:func:`stage` then :func:`commit`; returns the checkpoint folder."""
    stage(run, which, model, train_state)
    commit(run, which)
    return run.checkpoint(which)


def recover(run: RunDir) -> None:
    """Undo a checkpoint swap cut short by a crash and drop whatever was staged and not committed."""
    for which in ("best", "last"):
        target = run.checkpoint(which)
        if not target.exists() and _previous(target).exists():
            os.rename(_previous(target), target)
        shutil.rmtree(_staging(target), ignore_errors=True)
        shutil.rmtree(_previous(target), ignore_errors=True)


def load_train_state(run: RunDir) -> dict:
    """``checkpoints/last/train_state.pt``, loaded with ``weights_only=True``."""
    path = run.train_state_file
    if not path.is_file() or not (run.checkpoint("last") / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{run.checkpoint('last')} holds no complete checkpoint to resume from "
            f"(model.safetensors and {TRAIN_STATE_FILE}); start the run again with --force"
        )
    return torch.load(path, map_location="cpu", weights_only=True)
