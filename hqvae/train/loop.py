"""The training loop of ``hqvae train``, written out top to bottom (nanoGPT style).

    processes   torchrun's RANK / LOCAL_RANK / WORLD_SIZE -> process group (nccl on GPU, gloo on
                CPU); device; bf16 autocast (CUDA only)
    run folder  refuse to overwrite a run unless --resume / --force; tidy what a crash left; on
                --resume of a run that has no checkpoint yet, start it over from step 0
    setup       seed, data, model (DDP-wrapped when W > 1), optimiser; on --resume: weights,
                optimiser, RNG states and step from checkpoints/last, each file checked first
    each step   lr(step), τ(step), batch(step), forward, backward, clip, optimiser step; the loss,
                its terms and logs are kept on the device (no synchronisation)
    every log_every steps (and before validating / saving): one synchronisation; non-finite
                losses or parameters stop the run (status "stopped_nan", the last checkpoint is
                kept as it was); otherwise a train record
    every val_every: validation (deterministic quantiser); a new best is staged
    every checkpoint_every and at the end: checkpoints/last (+ the staged best), run.json
    on SIGTERM / SIGINT / SIGUSR1: finish the step, checkpoint, status "interrupted", raise
                Interrupted (hqvae.train.signals); a failed write (full disk, ...) stops the
                run with WriteFailed naming the file, checkpoints/last left as it was

Only rank 0 writes (run.json, metrics.jsonl, checkpoints, progress bar); what it writes is reduced
over ranks. Resuming on CPU with the same number of processes reproduces an uninterrupted run
bit for bit: the data order, the learning rate and the temperature are functions of the step,
and the RNG states are restored.
"""
from __future__ import annotations

import contextlib
import datetime
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import hqvae
from hqvae import faults
from hqvae.data import DataError, load_dataset
from hqvae.io import WriteFailed
from hqvae.distributed import all_reduce
from hqvae.models import create_model
from hqvae.train import checkpoint, rng
from hqvae.train.config import TrainConfig
from hqvae.train.logger import MetricsLogger
from hqvae.train.optim import build_optimizer
from hqvae.train.performance import channels_last, channels_last_batch, keep_freed_memory, match_parameter_layouts
from hqvae.train.run_dir import RunDir
from hqvae.train.sampler import StepSampler
from hqvae.train.schedules import learning_rate, temperature
from hqvae.train.signals import Interrupted, StopSignals
from hqvae.train.validate import validate


@dataclass
class Processes:
    """This process's place in the run: rank, local_rank, world_size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def setup_processes(device: str) -> Processes:
    """Read torchrun's environment and join the process group; pick the device (train.device)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if world_size > 1:
        join_process_group("nccl" if use_cuda else "gloo", rank, world_size)
    return Processes(rank, local_rank, world_size, torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"))


def join_process_group(backend: str, rank: int, world_size: int) -> None:
    """Join torchrun's process group. torchrun shares its rendezvous store with the processes, and
    after a restart (--max-restarts) the failed attempt's keys in it point them at dead peers
    (PyTorch issue #135712): a restarted single-node run joins under a key prefix of its own
    attempt; a restarted multi-node run, whose nodes count attempts apart, fails with the fix."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt == "0" or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        dist.init_process_group(backend=backend)
        return
    if os.environ.get("GROUP_WORLD_SIZE") == "1":
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                              is_master=False, timeout=datetime.timedelta(minutes=30))
        dist.init_process_group(backend, store=dist.PrefixStore(f"hqvae/attempt_{attempt}", store), rank=rank,
                                world_size=world_size)
        return
    try:
        dist.init_process_group(backend=backend)
    except RuntimeError as error:
        raise RuntimeError(f"joining the process group after a torchrun restart failed ({error}); torchrun's shared "
                           f"store still holds the failed attempt's addresses: run torchrun with "
                           f"TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (PyTorch issue #135712)") from None


class NonFiniteLoss(Exception):
    """A loss term or a parameter became NaN or infinite; the message names the step and the terms."""


def train(config: TrainConfig, out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> dict:
    """Train as ``config`` says into the run folder ``out``; returns the final run.json contents.

    resume: continue from ``checkpoints/last`` (pass the run's own config, from run.json); a run
        stopped before its first checkpoint starts over from step 0.
    force: start over in a folder that already holds a run (its run files are deleted first).
    Raises ValueError / FileNotFoundError for a bad config, folder, data set or checkpoint
    (checkpoint.CheckpointError), before training; Interrupted after a stop on a signal;
    WriteFailed when a file cannot be written.
    """
    # ------------------------------------------------------------------ processes and device
    procs = setup_processes(config.train.device)
    device = procs.device
    use_bf16 = config.train.dtype == "bf16" and device.type == "cuda"
    if config.train.dtype == "bf16" and not use_bf16 and procs.master:
        print("train.dtype=bf16 needs a CUDA device; training in fp32", file=sys.stderr)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    try:
        # ------------------------------------------------------------------ run folder
        run = RunDir(out)
        previous_info, from_checkpoint = prepare_run_folder(run, procs, resume, force)

        # ------------------------------------------------------------------ data and model
        if procs.master:  # first, so that the other ranks find the data set decoded in the cache
            train_set, val_set = load_data(config)
        procs.barrier()
        if not procs.master:
            train_set, val_set = load_data(config)
        rng.seed_all(config.train.seed + procs.rank)  # DDP copies rank 0's initial weights to the others
        if from_checkpoint:
            model = checkpoint.load_model(run, device)
        else:
            model = create_model(config.model.name, train_set.num_channels, train_set.image_size,
                                 **config.model.overrides).to(device)
        if config.train.channels_last:
            channels_last(model)
        if device.type == "cpu":
            keep_freed_memory()
        config = config.with_model_defaults(model.config.train_defaults)
        batch_size = config.train.batch_size
        if batch_size % procs.world_size:
            raise ValueError(f"train.batch_size={batch_size} is not divisible by the {procs.world_size} processes")
        rank_batch = batch_size // procs.world_size
        sampler = StepSampler(len(train_set), rank_batch, config.train.seed, procs.rank, procs.world_size)
        if config.train.steps is None:
            config.train.steps = config.train.epochs * sampler.batches_per_epoch
        total_steps = config.train.steps
        if val_set is not None and config.train.val_batches is not None:
            val_set = evenly_spaced(val_set, config.train.val_batches * batch_size, "train.val_batches")
        validating = val_set is not None and len(val_set) > 0

        # ------------------------------------------------------------------ optimiser
        optimizer = build_optimizer(model, config.optim)
        trainable = [p for group in optimizer.param_groups for p in group["params"]]

        # ------------------------------------------------------------------ resume
        start_step, best, wall_before = 0, None, 0.0
        if from_checkpoint:
            state = checkpoint.load_train_state(run)
            check_resume_step(run, state["step"], total_steps)
            checkpoint.restore_optimizer(run, optimizer, state)
            match_parameter_layouts(optimizer)
            start_step, best, wall_before = state["step"], state["best"], state["wall_time_s"]
            if state["data"].get("batches_per_epoch") != sampler.batches_per_epoch \
                    or state["data"].get("seed") != sampler.seed:
                print(f"note: the data order differs from the interrupted run's ({state['data']} before, "
                      f"{sampler.batches_per_epoch} batches per epoch now)", file=sys.stderr)
        raw_model = model
        if procs.world_size > 1:
            model = DistributedDataParallel(model, device_ids=[procs.local_rank] if device.type == "cuda" else None)
        if from_checkpoint:  # last, after everything that draws random numbers during setup
            if state["world_size"] == procs.world_size:
                checkpoint.restore_rng(run, state["rng"][procs.rank])
            else:
                print(f"note: resuming with {procs.world_size} processes instead of {state['world_size']}: "
                      f"new random streams", file=sys.stderr)
                rng.seed_all(config.train.seed + procs.rank + 1_000_003 * start_step)

        # ------------------------------------------------------------------ run.json, logging
        info = {
            "status": "running",
            "message": None,
            "step": start_step,
            "steps": total_steps,
            "best": best,
            "wall_time_s": wall_before,
            "model_type": raw_model.config.name,
            "model_config": raw_model.config.to_dict(),
            "config": config.to_dict(),
            "data": {"train": train_set.description,
                     "val": val_set.description if validating else None},
            **provenance(device, use_bf16, procs.world_size, previous_info, start_step if resume else None),
        }
        logger = progress = None
        if procs.master:
            run.write_info(info)
            if resume:
                run.truncate_metrics(start_step)
            logger = MetricsLogger(run, config.logging.tensorboard)
            if config.logging.progress:
                from tqdm import tqdm

                progress = tqdm(total=total_steps, initial=start_step, desc=str(run.root), dynamic_ncols=True)
    except BaseException:
        teardown(procs)
        raise

    # ------------------------------------------------------------------ the loop
    session_start = time.perf_counter()
    window: list[torch.Tensor] = []  # per step: [loss, *terms, *logs(, grad_norm)] on the device
    columns: list[str] = []
    window_start = time.perf_counter()
    model_state = [t for t in (*raw_model.parameters(), *raw_model.buffers()) if t.is_floating_point()]
    step = start_step
    stop = StopSignals()
    model.train()
    with stop.installed():
        try:
            for step in range(start_step, total_steps):
                faults.point("step")
                lr = learning_rate(step, config.optim, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                tau = temperature(step, config.temperature)
                raw_model.set_temperature(tau)

                x, _ = train_set.get_batch(sampler.indices(step), device=device)
                if config.train.channels_last:
                    x = channels_last_batch(x)
                with autocast():
                    out = model(x)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                grad_norm = None
                if config.optim.grad_clip is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip)
                optimizer.step()

                if not columns:
                    columns = ["loss", *(f"terms/{k}" for k in out.terms), *(f"logs/{k}" for k in out.logs)]
                    columns += ["grad_norm"] if grad_norm is not None else []
                values = [out.loss.detach(), *out.terms.values(), *out.logs.values()]
                values += [grad_norm] if grad_norm is not None else []
                window.append(torch.stack([v.float() for v in values]))

                done = step + 1
                stop_signal = stop.agreed(procs.world_size, device)
                validate_now = validating and (done % config.train.val_every == 0 or done == total_steps)
                checkpoint_now = done % config.train.checkpoint_every == 0 or done == total_steps or bool(stop_signal)
                flush = done % config.train.log_every == 0 or validate_now or checkpoint_now
                if flush:
                    # one synchronisation: the window's values, averaged over ranks
                    rows = all_reduce(torch.stack(window)).cpu() / procs.world_size  # (steps, columns)
                    parameters_finite = all_reduce(
                        torch.stack([t.detach().isfinite().all() for t in model_state]).all().float().reshape(1)
                    )
                    check_finite(rows, columns, first_step=done - len(window) + 1,
                                 parameters_finite=bool(parameters_finite.item() == procs.world_size))
                    elapsed = time.perf_counter() - window_start
                    if procs.master:
                        record = train_record(done, rows, columns, lr, tau if raw_model.stochastic else None,
                                              len(window) * batch_size / elapsed,
                                              wall_before + time.perf_counter() - session_start)
                        logger.log(record)
                        if progress is not None:
                            progress.set_postfix_str(postfix(record), refresh=False)
                    window.clear()

                if validate_now:
                    sync_buffers(raw_model, procs)
                    result = validate(raw_model, val_set, rank_batch, procs.rank, procs.world_size, device, autocast)
                    is_best = math.isfinite(result["loss"]) and (best is None or result["loss"] < best["val_loss"])
                    if is_best:
                        best = {"step": done, "val_loss": result["loss"]}
                    if procs.master:
                        if is_best:
                            checkpoint.stage(run, "best", raw_model)  # committed with the next "last"
                        logger.log({"step": done, "split": "val", **result, "best": is_best})

                if checkpoint_now:
                    wall_time = wall_before + time.perf_counter() - session_start
                    save_last(run, procs, raw_model, optimizer, sampler, done, best, wall_time, info)

                if progress is not None:
                    progress.update(1)
                if stop_signal and done < total_steps:
                    raise Interrupted(stop_signal)
                if flush:
                    window_start = time.perf_counter()  # img/s counts training steps only
            info.update(status="finished", step=total_steps)
        except NonFiniteLoss as error:
            info.update(status="stopped_nan", message=f"{error}; training stopped, {kept_checkpoint(run, info)}")
        except BaseException as error:
            info.update(failure_status(error, step, run, info))
            finish(procs, run, info, logger, progress, announce=not isinstance(error, WriteFailed))
            raise
        finish(procs, run, info, logger, progress)
    return info


# ---------------------------------------------------------------------------------------- helpers


def prepare_run_folder(run: RunDir, procs: Processes, resume: bool, force: bool) -> tuple[dict, bool]:
    """Check the folder (:func:`check_run_folder`), clear it (--force) or tidy what a crash left, and
    tell whether to continue from checkpoints/last: (previous run.json or {}, from_checkpoint).
    A run to resume that has no checkpoint yet starts over from step 0, with a note."""
    check_run_folder(run, resume, force)  # every rank, before anyone writes
    procs.barrier()
    if procs.master:
        if force:
            run.clear()
        else:
            checkpoint.recover(run)
    procs.barrier()
    if not resume:
        return {}, False
    previous_info = run.read_info()
    from_checkpoint = checkpoint.has_checkpoint(run)
    if not from_checkpoint and procs.master:
        print(f"note: {run.root} has no checkpoint yet (it stopped before its first one): starting it over "
              f"from step 0 with the same config", file=sys.stderr)
    return previous_info, from_checkpoint


def check_resume_step(run: RunDir, step: int, total_steps: int) -> None:
    if step > total_steps:
        raise ValueError(f"{run.train_state_file} is at step {step}, beyond train.steps={total_steps}; "
                         f"resume with train.steps={step} or more")


def check_run_folder(run: RunDir, resume: bool, force: bool) -> None:
    """Refuse to overwrite a run without --resume / --force, or to resume what is not there."""
    if resume and force:
        raise ValueError("pass either --resume (continue the run) or --force (start over), not both")
    if resume:
        if not run.exists():
            raise FileNotFoundError(f"{run.root} holds no run to resume ({run.run_file} is missing); "
                                    f"start it without --resume, or with --resume auto (which starts a run "
                                    f"when there is none)")
        return
    if run.has_contents() and not force:
        what = "files of a run"
        if run.exists():
            info = run.read_info()
            what = f"a run (status {info.get('status')}, step {info.get('step')} of {info.get('steps')})"
        raise ValueError(f"{run.root} already holds {what}; pass --resume to continue it, or --force to "
                         f"delete its run files and start over, or choose another --out")


def load_data(config: TrainConfig):
    """(train set, val set) as ``config.data`` says, the train set cut to ``data.limit`` items;
    no val set (None) when ``train.val_every`` is 0."""
    data = config.data
    try:
        train_set = load_dataset(data.name, "train", data.root, **data.options)
        val_set = load_dataset(data.name, "val", data.root, **data.options) if config.train.val_every else None
    except DataError as error:  # a missing or unreadable data set is a usage error
        raise ValueError(f"data: {error}") from None
    except TypeError as error:  # an option the loader does not take
        raise ValueError(f"data.options {data.options} do not fit data set {data.name!r}: {error}") from None
    if data.limit is not None:
        train_set = evenly_spaced(train_set, data.limit, "data.limit")
    return train_set, val_set


def evenly_spaced(dataset, count: int, setting: str):
    """The ``count`` items at indices ⌊i·N/count⌋ (all when count ≥ N), described as such."""
    n = len(dataset)
    if count >= n:
        return dataset
    indices = torch.arange(count) * n // count
    return dataset.subset(indices, dataset.split, f"{dataset.description}; {count} of them, evenly spaced ({setting})")


def check_finite(rows: torch.Tensor, columns: list[str], first_step: int, parameters_finite: bool) -> None:
    """Raise NonFiniteLoss naming the first step whose loss terms are not finite, or the
    parameters / buffers (``parameters_finite`` False)."""
    bad = (~torch.isfinite(rows)).any(dim=1).nonzero()
    if len(bad):
        row = int(bad[0])
        terms = ", ".join(f"{name}={value:.6g}" for name, value in zip(columns, rows[row].tolist()))
        raise NonFiniteLoss(f"non-finite loss at step {first_step + row}: {terms}")
    if not parameters_finite:
        last = ", ".join(f"{name}={value:.6g}" for name, value in zip(columns, rows[-1].tolist()))
        raise NonFiniteLoss(f"parameters or buffers became non-finite by step {first_step + len(rows) - 1} "
                            f"(its loss terms: {last})")


def train_record(step: int, rows: torch.Tensor, columns: list[str], lr: float, tau: float | None,
                 images_per_second: float, wall_time: float) -> dict:
    """The train record of metrics.jsonl (see hqvae.train.run_dir) from the window's rows."""
    means = dict(zip(columns, rows.double().mean(dim=0).tolist()))
    record = {"step": step, "split": "train", "loss": means.pop("loss"),
              "terms": {k.split("/", 1)[1]: v for k, v in means.items() if k.startswith("terms/")},
              "logs": {k.split("/", 1)[1]: v for k, v in means.items() if k.startswith("logs/")},
              "lr": lr}
    if tau is not None:
        record["temperature"] = tau
    if "grad_norm" in means:
        record["grad_norm"] = means["grad_norm"]
    record.update(img_per_s=images_per_second, wall_time_s=wall_time)
    return record


def postfix(record: dict) -> str:
    """Progress-bar text: loss, perplexity (and s² of SQ layers) per layer, img/s."""
    parts = [f"loss={record['loss']:.4g}"]
    logs = record["logs"]
    perplexities = [f"{v:.0f}" for k, v in logs.items() if k.startswith("perplexity/")]
    variances = [f"{v:.3g}" for k, v in logs.items() if k.startswith("variance/")]
    if perplexities:
        parts.append("ppl=" + "/".join(perplexities))
    if variances:
        parts.append("s2=" + "/".join(variances))
    parts.append(f"{record['img_per_s']:.0f} img/s")
    return " ".join(parts)


def save_last(run: RunDir, procs: Processes, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              sampler: StepSampler, done: int, best: dict | None, wall_time: float, info: dict) -> None:
    """Write checkpoints/last at ``done`` steps, commit the staged best, then record both in run.json
    (``info`` is updated); every rank must call it."""
    rng_states = gather_rng_states(procs)
    if procs.master:
        epoch, position = sampler.position(done)
        state = {
            "step": done,
            "optimizer": optimizer.state_dict(),
            "rng": rng_states,
            "world_size": procs.world_size,
            "data": {"seed": sampler.seed, "epoch": epoch, "position": position,
                     "batches_per_epoch": sampler.batches_per_epoch},
            "best": best,
            "wall_time_s": wall_time,
            "hqvae_version": hqvae.__version__,
        }
        checkpoint.stage(run, "last", model, state)
        checkpoint.commit(run, "last")
        checkpoint.commit(run, "best")
    info.update(step=done, best=best, wall_time_s=wall_time, updated_at=now())
    if procs.master:
        run.write_info(info)


def kept_checkpoint(run: RunDir, info: dict) -> str:
    """What a stopped run leaves to resume from, for its message (``info["step"]``: the step of
    checkpoints/last, 0 before the first one)."""
    if not info["step"]:
        return "no checkpoint was written before it"
    return f"checkpoints/last is the last good state (step {info['step']})"


def failure_status(error: BaseException, step: int, run: RunDir, info: dict) -> dict:
    """run.json's status and message for a run stopped by ``error`` during (0-based) ``step``."""
    again = f"continue with `hqvae train --out {run.root} --resume`"
    if isinstance(error, Interrupted):
        how = f"at once by a second {error.name} during" if error.at_once else f"by {error.name} after"
        return {"status": "interrupted", "message": f"stopped {how} step {step + 1}; {kept_checkpoint(run, info)}; {again}"}
    if isinstance(error, WriteFailed):
        error.message += f" Then {again}; {kept_checkpoint(run, info)}."
        return {"status": "failed", "message": str(error)}
    return {"status": "failed", "message": f"{type(error).__name__} at step {step + 1}: {error}"}


def finish(procs: Processes, run: RunDir, info: dict, logger, progress, announce: bool = True) -> None:
    """Write the final status (rank 0), close the outputs, leave the process group. ``announce``:
    print the status message (not when the error that stopped the run says it all)."""
    if procs.master:
        if progress is not None:
            progress.close()
        if logger is not None:
            logger.close()
        info["updated_at"] = now()
        try:
            run.write_info(info)
        except WriteFailed as error:
            print(f"could not record status {info['status']!r} in run.json: {error}", file=sys.stderr)
        if info["message"] and announce:
            print(f"{info['status']}: {info['message']}", file=sys.stderr)
    teardown(procs, finished=info["status"] == "finished")


def teardown(procs: Processes, finished: bool = False) -> None:
    """Leave the process group. A finished run first waits for every rank, so that no rank tears its
    gloo connections down while another still finishes its last collective (seen as an abort in CI)."""
    if procs.world_size > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def gather_rng_states(procs: Processes) -> list[dict]:
    """Every rank's RNG states (hqvae.train.rng.capture), indexed by rank; every rank must call it."""
    if procs.world_size == 1:
        return [rng.capture()]
    states = [None] * procs.world_size
    dist.all_gather_object(states, rng.capture())
    return states


def sync_buffers(model: torch.nn.Module, procs: Processes) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics drift apart between DDP's broadcasts)."""
    if procs.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def provenance(device: torch.device, bf16: bool, world_size: int, previous_info: dict,
               resumed_at: int | None) -> dict:
    """The run.json fields that say where, with what and when a run (or a prior) trained;
    ``resumed_at``: the step this process resumes from, None for a fresh start."""
    return {
        "device": describe_device(device),
        "dtype": "bf16" if bf16 else "fp32",
        "world_size": world_size,
        "hqvae_version": hqvae.__version__,
        "torch_version": torch.__version__,
        "git_commit": git_commit(),
        "started_at": previous_info.get("started_at", now()),
        "updated_at": now(),
        "resumed_at_steps": previous_info.get("resumed_at_steps", []) + ([resumed_at] if resumed_at is not None else []),
    }


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def git_commit() -> str | None:
    """The commit of the hqvae source tree (suffixed "+dirty" with uncommitted changes), if it is a git checkout."""
    source = Path(hqvae.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
