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
                    (absent in priors written before hqvae.train.engine)
    best            {"step", <the task's best_key>} of checkpoints/best, or None
    wall_time_s     training time so far, over all sessions
The learning rate and the temperature are functions of the step (hqvae.train.schedules).

:func:`load_train_state` checks the file before use: a damaged, foreign or tampered one (a pickle
that is not plain tensors and containers is refused unexecuted) raises :class:`CheckpointError`
naming the file, what is wrong and what to do.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from hqvae import faults
from hqvae.io import atomic_write_bytes
from hqvae.models import from_pretrained, model_config
from hqvae.models.pretrained import CONFIG_NAME, WEIGHTS_NAME
from hqvae.train import rng
from hqvae.train.run_dir import TRAIN_STATE_FILE, RunDir

TRAIN_STATE_KEYS = ("step", "optimizer", "rng", "world_size", "best", "wall_time_s")  # "data": not in older priors


class CheckpointError(ValueError):
    """A checkpoint file is damaged, foreign or tampered with; the message names it and the fix."""


def _aside(target: Path, what: str) -> Path:
    """``checkpoints/.<which>.<what>``: "partial" (being staged) or "previous" (being swapped out)."""
    return target.with_name(f".{target.name}.{what}")


def stage(run: RunDir, which: str, model: nn.Module, train_state: dict | None = None) -> None:
    """Write the next ``checkpoints/<which>`` aside: ``model.save_pretrained`` files, plus
    ``train_state.pt`` when given (replacing anything staged before)."""
    staging = _aside(run.checkpoint(which), "partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    if train_state is not None:  # serialised in memory: torch.save to a file hides the errno of a failed write
        buffer = io.BytesIO()
        torch.save(train_state, buffer)
        atomic_write_bytes(staging / TRAIN_STATE_FILE, buffer.getbuffer())


def commit(run: RunDir, which: str) -> None:
    """Swap the staged ``checkpoints/<which>`` into place, if one is staged."""
    target = run.checkpoint(which)
    staging, previous = _aside(target, "partial"), _aside(target, "previous")
    if not staging.is_dir():
        return
    if target.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(target, previous)
        faults.point("swap")
    os.rename(staging, target)
    shutil.rmtree(previous, ignore_errors=True)


def recover(run: RunDir) -> None:
    """Undo a checkpoint swap cut short by a crash, drop whatever was staged and not committed, and
    the temporary files of atomic writes a kill cut short."""
    for target in (run.checkpoint("best"), run.checkpoint("last")):
        staging, previous = _aside(target, "partial"), _aside(target, "previous")
        if not target.exists() and previous.exists():
            os.rename(previous, target)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)
    for folder in (run.root, run.checkpoint("best"), run.checkpoint("last")):
        for leftover in folder.glob(".*.tmp"):  # nothing when the folder is not there
            leftover.unlink(missing_ok=True)


def _damaged(run: RunDir, path: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{path} {problem}, so the run cannot resume from it. Restore the file from a copy, or start the run "
        f"over with `hqvae train --out {run.root} --force --config ...` (checkpoints/best, if present, can still "
        f"be evaluated: `hqvae eval --run {run.root}`)"
    )


def load_train_state(run: RunDir, weights_name: str = WEIGHTS_NAME) -> dict:
    """``checkpoints/last/train_state.pt``, loaded with ``weights_only=True`` and checked
    (``weights_name``: the weights file that must be beside it)."""
    path = run.train_state_file
    last = run.checkpoint("last")
    missing = [name for name in (CONFIG_NAME, weights_name, TRAIN_STATE_FILE) if not (last / name).is_file()]
    if missing:
        raise _damaged(run, last, f"lacks {', '.join(missing)} (a complete checkpoint holds {CONFIG_NAME}, "
                             f"{weights_name} and {TRAIN_STATE_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a damaged file
        text = str(error)
        if isinstance(error, pickle.UnpicklingError) and "weights only" in text.lower():
            detail = next((f" ({line.strip().rstrip('.')})" for line in text.splitlines()
                           if line.startswith("Trying to load")), "")  # names the function it would call
            raise _damaged(run, path, f"holds Python objects other than tensors and plain containers{detail}; "
                                      f"loading it could run code, so it was refused and nothing in it was run. "
                                      f"hqvae never writes such a file: it may have been tampered with") from None
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise _damaged(run, path, f"is damaged or not a PyTorch file ({type(error).__name__}: "
                                  f"{first_line[:200]})") from None
    if not isinstance(state, dict) or any(key not in state for key in TRAIN_STATE_KEYS):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise _damaged(run, path, f"is not an hqvae train state (expected the keys {list(TRAIN_STATE_KEYS)}, found {found})")
    problems = []
    if not isinstance(state["step"], int) or state["step"] < 0:
        problems.append(f"step {state['step']!r} is not a step count")
    if not isinstance(state["world_size"], int) or not isinstance(state["rng"], list) \
            or len(state["rng"]) != state["world_size"]:
        problems.append("its random states do not match its number of processes")
    optimizer = state["optimizer"]
    if not isinstance(optimizer, dict) or not {"state", "param_groups"} <= set(optimizer):
        problems.append("it holds no optimiser state")
    if problems:
        raise _damaged(run, path, "is inconsistent: " + "; ".join(problems))
    return state


def load_model(run: RunDir, device: torch.device) -> nn.Module:
    """The model of ``checkpoints/last``, with a message naming the run's fix when it is damaged."""
    try:
        return from_pretrained(run.checkpoint("last"), device=device)
    except (ValueError, FileNotFoundError) as error:
        raise _damaged(run, run.checkpoint("last"), f"holds no model this hqvae can load ({error})") from None


def saved_model_config(run: RunDir) -> dict:
    """The model config of ``checkpoints/last`` (``config.json``'s, as the registry built it then)."""
    return json.loads((run.checkpoint("last") / CONFIG_NAME).read_text())["config"]


def holds_the_current_model(run: RunDir, name: str, overrides: dict) -> bool:
    """Whether ``checkpoints/last`` holds the model the registry builds today for ``name`` with
    ``overrides``, at the saved input shape: a registry default changed since the run (architecture,
    rate weight, training defaults), which the run's training config does not show, makes it another."""
    saved = saved_model_config(run)
    current = model_config(name, saved["in_channels"], saved["image_size"], **overrides)
    return type(current).from_dict(saved).to_dict() == current.to_dict()


def restore_optimizer(run: RunDir, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load the optimiser state of ``train_state.pt``, naming the file when it does not fit the model."""
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise _damaged(run, run.train_state_file, f"holds an optimiser state that does not fit the model of "
                                             f"checkpoints/last ({error})") from None


def restore_rng(run: RunDir, state: dict, rank: int, world_size: int, seed: int) -> None:
    """Set this process's generators to its state of ``train_state.pt`` (naming the file when it is
    malformed), or seed new streams when the number of processes changed."""
    if state["world_size"] != world_size:
        print(f"note: resuming with {world_size} processes instead of {state['world_size']}: "
              f"new random streams", file=sys.stderr)
        rng.seed_all(seed + rank + 1_000_003 * state["step"])
        return
    try:
        rng.restore(state["rng"][rank])
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as error:
        raise _damaged(run, run.train_state_file, f"holds malformed random states ({type(error).__name__}: {error})") from None
