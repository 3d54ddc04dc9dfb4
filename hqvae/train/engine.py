"""The one training loop, written out top to bottom (nanoGPT style), for every kind of run.

A *task* says what is trained: the tokenizer (``hqvae.train.tokenizer.TokenizerTask``, ``hqvae
train``) or the prior (``hqvae.priors.task.PriorTask``, ``hqvae prior train``). It loads its data
and model, takes a step, validates and describes its run (:class:`Task`); :func:`fit` owns the rest:

    processes   torchrun's RANK / LOCAL_RANK / WORLD_SIZE -> process group (hqvae.distributed);
                device; bf16 autocast (CUDA only)
    run folder  refuse to overwrite a run unless resume / force; tidy what a crash left; on resume
                of a run that has no checkpoint yet, start it over from step 0
    setup       the task's (seed, data, model, optimiser); DDP-wrapped when W > 1; on resume:
                optimiser, RNG states and step from checkpoints/last, each file checked first
    each step   the task's step; its values are kept on the device (no synchronisation)
    after the last step: the task's finish_training (the tokenizer's BatchNorm recalibration)
    every log_every steps (and before validating / saving): one synchronisation; non-finite
                losses or parameters stop the run (status "stopped_nan", the last checkpoint is
                kept as it was); otherwise a train record
    every val_every: the task's validation; a new best (lowest value) is staged
    every checkpoint_every and at the end: checkpoints/last (+ the staged best), run.json
    on SIGTERM / SIGINT / SIGUSR1: finish the step, checkpoint, status "interrupted", raise
                Interrupted (hqvae.train.signals); a failed write (full disk, ...) stops the
                run with WriteFailed naming the file, checkpoints/last left as it was

Only rank 0 writes (run.json, metrics.jsonl, checkpoints, progress bar); what it writes is reduced
over ranks. Resuming on CPU with the same number of processes reproduces an uninterrupted run
bit for bit: the data order and the schedules are functions of the step, and the RNG states are
restored.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time

import torch
import torch.distributed as dist

from hqvae import faults
from hqvae.distributed import Processes, all_reduce, setup_processes, teardown
from hqvae.io import WriteFailed
from hqvae.train import checkpoint, rng
from hqvae.train.performance import match_parameter_layouts
from hqvae.train.run_dir import TENSORBOARD, RunDir, numeric_leaves
from hqvae.train.run_info import RunInfo, now
from hqvae.train.signals import Interrupted, StopSignals
from hqvae._version import __version__


class NonFiniteLoss(Exception):
    """A loss term or a parameter became NaN or infinite; the message names the step and the terms."""


class Task:
    """What :func:`fit` trains; ``config`` has the sections ``train`` (device, dtype, seed, steps,
    batch_size, log_every, val_every, checkpoint_every) and ``logging`` (progress, tensorboard).

    setup(run, from_checkpoint)   data (``self.procs.master_first`` when cached), seed, model (from
                                  checkpoints/last when resuming); sets ``raw_model`` (save_pretrained),
                                  ``optimizer``, ``sampler`` (the data order, a StepSampler), ``steps``
                                  and ``validates``; fit has set ``procs`` and ``autocast`` and sets
                                  ``model`` (``raw_model`` or its DDP wrapper, for the forward pass)
    run_info() -> RunInfo         the run's description (fit adds step, best, time and provenance)
    step(step) -> {name: tensor}  one optimiser step (0-based); the values to log, on the device, "loss" first
    train_record(done, means, steps, seconds, wall) -> dict   metrics.jsonl's train record
    postfix(record) -> str        the progress bar's text
    validate(done) -> (value, record) | None   every rank calls it; rank 0 gets the value (lower is better)
    finish_training(done, info)   after the last step, before its validation and checkpoint (every
                                  rank); may record what it did in ``info`` (run.json)

    ``best_key`` names the validation value in run.json's best, ``command`` the command that
    continues the run, ``weights_name`` the weights file of a checkpoint.
    """

    command = "hqvae train"
    best_key = "val_loss"
    weights_name = "model.safetensors"

    def finish_training(self, done: int, info: RunInfo) -> None:
        """Nothing by default."""


def fit(task: Task, out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> RunInfo:
    """Train ``task`` into the run folder ``out``; returns the final run.json (RunInfo).

    resume: continue from ``checkpoints/last``; a run stopped before its first checkpoint starts
        over from step 0. force: start over in a folder that already holds a run.
    Raises ValueError / FileNotFoundError for a bad config, folder, data set or checkpoint
    (checkpoint.CheckpointError), before training; Interrupted after a stop on a signal;
    WriteFailed when a file cannot be written.
    """
    config = task.config
    procs = task.procs = setup_processes(config.train.device)
    device = procs.device
    use_bf16 = config.train.dtype == "bf16" and device.type == "cuda"
    if config.train.dtype == "bf16" and not use_bf16 and procs.master:
        print("train.dtype=bf16 needs a CUDA device; training in fp32", file=sys.stderr)
    task.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    run = RunDir(out)
    try:
        previous, from_checkpoint = prepare_run_folder(run, procs, resume, force)
        task.setup(run, from_checkpoint)
        start_step, best, wall_before = 0, None, 0.0
        if from_checkpoint:
            state = checkpoint.load_train_state(run, task.weights_name)
            start_step, best, wall_before = state["step"], state["best"], state["wall_time_s"]
            if start_step > task.steps:
                raise ValueError(f"{run.train_state_file} is at step {start_step}, beyond train.steps="
                                 f"{task.steps}; resume with train.steps={start_step} or more")
            checkpoint.restore_optimizer(run, task.optimizer, state)
            match_parameter_layouts(task.optimizer)
            order = state.get("data")  # priors before this engine did not record it
            if order is not None and (order.get("batches_per_epoch") != task.sampler.batches_per_epoch
                                      or order.get("seed") != task.sampler.seed):
                print(f"note: the data order differs from the interrupted run's ({order} before, "
                      f"{task.sampler.batches_per_epoch} batches per epoch now)", file=sys.stderr)
        task.model = task.raw_model if procs.world_size == 1 else torch.nn.parallel.DistributedDataParallel(
            task.raw_model, device_ids=[procs.local_rank] if device.type == "cuda" else None)
        if from_checkpoint:  # last, after everything that draws random numbers during setup
            checkpoint.restore_rng(run, state, procs.rank, procs.world_size, config.train.seed)
        info = task.run_info()
        info.step, info.steps, info.best, info.wall_time_s = start_step, task.steps, best, wall_before
        info.record_provenance(device, use_bf16, procs.world_size, previous, start_step if resume else None)
        logger = progress = None
        if procs.master:  # run.json, the metrics after the step resumed from dropped, the logger, the progress bar
            run.write_info(info)
            if resume:
                run.truncate_metrics(info.step)
            if config.logging.progress:
                from tqdm import tqdm

                progress = tqdm(total=info.steps, initial=info.step, desc=str(run.root), dynamic_ncols=True)
            logger = MetricsLogger(run, config.logging.tensorboard)
    except BaseException:
        teardown(procs)
        raise

    train, total_steps, window, stop, step = task.config.train, task.steps, Window(), StopSignals(), start_step
    model_state = [x for x in (*task.raw_model.parameters(), *task.raw_model.buffers()) if x.is_floating_point()]
    session_start = time.perf_counter()
    wall_time = lambda: wall_before + time.perf_counter() - session_start  # noqa: E731 (over all sessions)
    task.model.train()
    with stop.installed():
        try:
            for step in range(start_step, total_steps):
                faults.point("step")
                window.add(task.step(step))

                done = step + 1
                stop_signal = stop.agreed()
                validate_now = task.validates and (done % train.val_every == 0 or done == total_steps)
                checkpoint_now = done % train.checkpoint_every == 0 or done == total_steps or bool(stop_signal)
                flush = done % train.log_every == 0 or validate_now or checkpoint_now
                if flush:
                    means, steps, seconds = window.synchronise(procs.world_size, model_state, done)
                    if procs.master:
                        record = task.train_record(done, means, steps, seconds, wall_time())
                        logger.log(record)
                        if progress is not None:
                            progress.set_postfix_str(task.postfix(record), refresh=False)
                if done == total_steps:
                    task.finish_training(done, info)
                if validate_now:
                    result = task.validate(done)
                    if result is not None:
                        value, record = result
                        is_best = math.isfinite(value) and (best is None or value < best[task.best_key])
                        if is_best:
                            best = {"step": done, task.best_key: value}
                        if procs.master:
                            if is_best:
                                checkpoint.stage(run, "best", task.raw_model)
                            logger.log({**record, "best": is_best})
                if checkpoint_now:
                    save_last(run, procs, task, info, done, best, wall_time())
                if progress is not None:
                    progress.update(1)
                if stop_signal and done < total_steps:
                    raise Interrupted(stop_signal)
                if flush:
                    window.start = time.perf_counter()  # the rate counts training steps only
            info.status, info.step = "finished", total_steps
        except NonFiniteLoss as error:
            info.status, info.message = "stopped_nan", f"{error}; training stopped, {kept_checkpoint(info)}"
        except BaseException as error:
            info.status, info.message = failure_status(error, step, run, info, task.command)
            task.model = task.raw_model  # release the DDP wrapper before leaving the process group (see teardown)
            finish(procs, run, info, logger, progress, announce=not isinstance(error, WriteFailed))
            raise
        task.model = task.raw_model
        finish(procs, run, info, logger, progress)
    return info


class Window:
    """The steps' values since the last synchronisation, kept on the device: one row per step."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []
        self.columns: list[str] = []
        self.start = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        self.columns = self.columns or list(values)
        self.rows.append(torch.stack([v.float() for v in values.values()]))

    def synchronise(self, world_size: int, model_state: list[torch.Tensor],
                    done: int) -> tuple[dict[str, float], int, float]:
        """One synchronisation: ({column: mean over the steps and ranks}, steps, seconds since the
        start); raises NonFiniteLoss naming the first step whose loss terms are not finite, or the
        step by which a tensor of ``model_state`` (parameters and buffers) became non-finite."""
        rows = all_reduce(torch.stack(self.rows)).cpu() / world_size
        finite = all_reduce(torch.stack([x.detach().isfinite().all() for x in model_state]).all().float().reshape(1))
        steps, seconds = len(self.rows), time.perf_counter() - self.start
        bad = (~torch.isfinite(rows)).any(dim=1).nonzero()
        if len(bad):
            row = int(bad[0])
            raise NonFiniteLoss(f"non-finite loss at step {done - steps + 1 + row}: {self.terms(rows[row])}")
        if finite.item() != world_size:
            raise NonFiniteLoss(f"parameters or buffers became non-finite by step {done} (its loss terms: "
                                f"{self.terms(rows[-1])})")
        self.rows = []
        return dict(zip(self.columns, rows.double().mean(dim=0).tolist())), steps, seconds

    def terms(self, row: torch.Tensor) -> str:
        return ", ".join(f"{name}={value:.6g}" for name, value in zip(self.columns, row.tolist()))


class MetricsLogger:
    """``log(record)`` appends to the run's ``metrics.jsonl`` and, when enabled, writes its numbers
    to TensorBoard (``<run>/tensorboard/``) as ``<split>/<key>[/<name>]``."""

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


def check_batch_size(batch_size: int, world_size: int) -> int:
    """Each rank's share of ``batch_size``."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size={batch_size} is not divisible by the {world_size} processes")
    return batch_size // world_size


# ---------------------------------------------------------------------------------------- the run folder


def prepare_run_folder(run: RunDir, procs: Processes, resume: bool,
                       force: bool) -> tuple[RunInfo | None, bool]:
    """Refuse to overwrite a run without --resume / --force, or to resume what is not there; clear the
    folder (force) or tidy what a crash left; tell whether to continue from checkpoints/last:
    (previous run.json or None, from_checkpoint)."""
    if resume and force:
        raise ValueError("pass either --resume (continue the run) or --force (start over), not both")
    previous = run.resumable() if resume else None  # every rank checks, before anyone writes
    if not resume and not force and run.has_contents():
        what = "files of a run"
        if run.exists():
            info = run.read_info()
            what = f"a run (status {info.status}, step {info.step} of {info.steps})"
        raise ValueError(f"{run.root} already holds {what}; pass --resume to continue it, or --force to "
                         f"delete its run files and start over, or choose another --out")
    procs.barrier()
    if procs.master:
        if force:
            run.clear()
        else:
            checkpoint.recover(run)
    procs.barrier()
    from_checkpoint = resume and run.checkpoint("last").exists()
    if resume and not from_checkpoint and procs.master:
        print(f"note: {run.root} has no checkpoint yet (it stopped before its first one): starting it over "
              f"from step 0 with the same config", file=sys.stderr)
    return previous, from_checkpoint


def save_last(run: RunDir, procs: Processes, task: Task, info: RunInfo, done: int, best: dict | None,
              wall_time: float) -> None:
    """Write checkpoints/last at ``done`` steps (train_state.pt as in hqvae.train.checkpoint, plus
    hqvae_version), commit the staged best, then record both in run.json (``info`` is updated); every
    rank must call it."""
    rng_states = [rng.capture()] * procs.world_size  # every rank's RNG states, indexed by rank:
    if procs.world_size > 1:
        dist.all_gather_object(rng_states, rng_states[0])  # this rank's, gathered from all
    if procs.master:
        state = {"step": done, "optimizer": task.optimizer.state_dict(), "rng": rng_states,
                 "world_size": procs.world_size, "data": task.sampler.state(done), "best": best,
                 "wall_time_s": wall_time, "hqvae_version": __version__}
        checkpoint.stage(run, "last", task.raw_model, state)
        checkpoint.commit(run, "last")
        checkpoint.commit(run, "best")
    info.step, info.best, info.wall_time_s, info.updated_at = done, best, wall_time, now()
    if procs.master:
        run.write_info(info)


def kept_checkpoint(info: RunInfo) -> str:
    """What a stopped run leaves to resume from, for its message (``info.step``: the step of
    checkpoints/last, 0 before the first one)."""
    return (f"checkpoints/last is the last good state (step {info.step})" if info.step
            else "no checkpoint was written before it")


def failure_status(error: BaseException, step: int, run: RunDir, info: RunInfo,
                   command: str) -> tuple[str, str]:
    """run.json's (status, message) for a run stopped by ``error`` during (0-based) ``step``."""
    again = f"continue with `{command} --out {run.root} --resume`"
    if isinstance(error, Interrupted):
        how = f"at once by a second {error.name} during" if error.at_once else f"by {error.name} after"
        return "interrupted", f"stopped {how} step {step + 1}; {kept_checkpoint(info)}; {again}"
    if isinstance(error, WriteFailed):
        error.message += f" Then {again}; {kept_checkpoint(info)}."
        return "failed", str(error)
    return "failed", f"{type(error).__name__} at step {step + 1}: {error}"


def finish(procs: Processes, run: RunDir, info: RunInfo, logger, progress, announce: bool = True) -> None:
    """Write the final status (rank 0), close the outputs, leave the process group. ``announce``:
    print the status message (not when the error that stopped the run says it all)."""
    if procs.master:  # rank 0 opened the logger (and the progress bar, when asked for)
        if progress is not None:
            progress.close()
        logger.close()
        info.updated_at = now()
        try:
            run.write_info(info)
        except WriteFailed as error:
            print(f"could not record status {info.status!r} in run.json: {error}", file=sys.stderr)
        if info.message and announce:
            print(f"{info.status}: {info.message}", file=sys.stderr)
    teardown(procs, finished=info.status == "finished")
