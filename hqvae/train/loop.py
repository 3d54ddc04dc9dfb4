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
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import hqvae
from hqvae import faults
from hqvae.data import DataError, load_dataset
from hqvae.data.loader import batches
from hqvae.data.splits import evenly_spaced_indices
from hqvae.io import WriteFailed
from hqvae.distributed import all_reduce, broadcast_
from hqvae.metrics import CodebookUsage, ReconstructionMetrics
from hqvae.models import create_model, evaluating
from hqvae.train import checkpoint, rng
from hqvae.train.config import TrainConfig
from hqvae.train.logger import MetricsLogger
from hqvae.train.optim import build_optimizer
from hqvae.train.performance import channels_last, channels_last_batch, keep_freed_memory, match_parameter_layouts
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import RunInfo, now
from hqvae.train.sampler import StepSampler
from hqvae.train.schedules import learning_rate, temperature
from hqvae.train.signals import Interrupted, StopSignals


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

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DistributedDataParallel when there are several processes, else itself."""
        if self.world_size == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.local_rank] if self.device.type == "cuda" else None)

    def master_first(self, load):
        """``load()`` on rank 0, then on the other ranks, which find what rank 0 cached."""
        if self.master:
            loaded = load()
        self.barrier()
        return loaded if self.master else load()


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


def train(config: TrainConfig, out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> RunInfo:
    """Train as ``config`` says into the run folder ``out``; returns the final run.json (RunInfo).

    resume: continue from ``checkpoints/last`` (pass the run's own config, from run.json); a run
        stopped before its first checkpoint starts over from step 0.
    force: start over in a folder that already holds a run (its run files are deleted first).
    Raises ValueError / FileNotFoundError for a bad config, folder, data set or checkpoint
    (checkpoint.CheckpointError), before training; Interrupted after a stop on a signal;
    WriteFailed when a file cannot be written.
    """
    procs = setup_processes(config.train.device)
    device = procs.device
    use_bf16 = config.train.dtype == "bf16" and device.type == "cuda"
    if config.train.dtype == "bf16" and not use_bf16 and procs.master:
        print("train.dtype=bf16 needs a CUDA device; training in fp32", file=sys.stderr)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    run = RunDir(out)
    try:
        previous, from_checkpoint = prepare_run_folder(run, procs, resume, force)
        t = setup(config, run, procs, from_checkpoint)
        t.model = procs.wrap(t.raw_model)
        if from_checkpoint:  # last, after everything that draws random numbers during setup
            restore_random_streams(run, procs, t.resume_state, t.config.train.seed)
        info = RunInfo(step=t.start_step, steps=t.config.train.steps, best=t.best, wall_time_s=t.wall_before,
                       model_type=t.raw_model.config.name, model_config=t.raw_model.config.to_dict(),
                       config=t.config.to_dict(), data={"train": t.train_set.description,
                                                        "val": t.val_set.description if t.val_set is not None else None})
        info.record_provenance(device, use_bf16, procs.world_size, previous, t.start_step if resume else None)
        logger, progress = open_outputs(run, procs, info, resume, t.config.logging.tensorboard,
                                        t.config.logging.progress)
    except BaseException:
        teardown(procs)
        raise

    config, total_steps, window, stop, step = t.config, t.config.train.steps, Window(), StopSignals(), t.start_step
    model_state = [x for x in (*t.raw_model.parameters(), *t.raw_model.buffers()) if x.is_floating_point()]
    t.session_start = time.perf_counter()
    t.model.train()
    with stop.installed():
        try:
            for step in range(t.start_step, total_steps):
                faults.point("step")
                values, lr, tau = train_step(t, step, device, autocast)
                window.add(values)

                done = step + 1
                stop_signal = stop.agreed(procs.world_size, device)
                validate_now = t.val_set is not None and (done % config.train.val_every == 0 or done == total_steps)
                checkpoint_now = done % config.train.checkpoint_every == 0 or done == total_steps or bool(stop_signal)
                flush = done % config.train.log_every == 0 or validate_now or checkpoint_now
                if flush:
                    rows, steps, seconds = window.synchronise(procs, model_state, done)
                    if procs.master:
                        record = train_record(done, rows, window.columns, lr,
                                              tau if t.raw_model.stochastic else None,
                                              steps * config.train.batch_size / seconds, t.wall_time())
                        logger.log(record)
                        if progress is not None:
                            progress.set_postfix_str(postfix(record), refresh=False)
                if validate_now:
                    validate_and_stage(t, run, procs, done, logger, autocast)
                if checkpoint_now:
                    save_last(run, procs, t.raw_model, t.optimizer, info, done, t.best, t.wall_time(),
                              data=t.sampler.state(done))
                if progress is not None:
                    progress.update(1)
                if stop_signal and done < total_steps:
                    raise Interrupted(stop_signal)
                if flush:
                    window.restart()  # img/s counts training steps only
            info.status, info.step = "finished", total_steps
        except NonFiniteLoss as error:
            info.status, info.message = "stopped_nan", f"{error}; training stopped, {kept_checkpoint(info)}"
        except BaseException as error:
            info.status, info.message = failure_status(error, step, run, info)
            t.model = t.raw_model  # release the DDP wrapper before leaving the process group (see teardown)
            finish(procs, run, info, logger, progress, announce=not isinstance(error, WriteFailed))
            raise
        t.model = t.raw_model
        finish(procs, run, info, logger, progress)
    return info


# ---------------------------------------------------------------------------------------- setup


@dataclass
class Training:
    """One session's data, model and optimiser, and where it starts.

    model: ``raw_model`` or its DistributedDataParallel wrapper; val_set: None when not
    validating; resume_state: train_state.pt of checkpoints/last when resuming from it.
    """

    config: TrainConfig
    train_set: object
    val_set: object | None
    sampler: StepSampler
    rank_batch: int
    raw_model: torch.nn.Module
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    start_step: int = 0
    best: dict | None = None
    wall_before: float = 0.0
    resume_state: dict | None = None
    session_start: float = field(default_factory=time.perf_counter)

    def wall_time(self) -> float:
        """Training time over all sessions, in seconds."""
        return self.wall_before + time.perf_counter() - self.session_start


def setup(config: TrainConfig, run: RunDir, procs: Processes, from_checkpoint: bool) -> Training:
    """Seed, data, model and optimiser; from checkpoints/last: weights, optimiser state, step and
    best. ``config`` gets the model's training defaults and ``train.steps``."""
    device = procs.device
    train_set, val_set = procs.master_first(lambda: load_data(config))  # the data set decoded once, in the cache
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
    rank_batch = check_batch_size(config.train.batch_size, procs.world_size)
    sampler = StepSampler(len(train_set), rank_batch, config.train.seed, procs.rank, procs.world_size)
    if config.train.steps is None:
        config.train.steps = config.train.epochs * sampler.batches_per_epoch
    if val_set is not None and config.train.val_batches is not None:
        val_set = evenly_spaced(val_set, config.train.val_batches * config.train.batch_size, "train.val_batches")
    t = Training(config, train_set, val_set if val_set is not None and len(val_set) > 0 else None, sampler,
                 rank_batch, model, model, build_optimizer(model, config.optim))
    if from_checkpoint:
        state = t.resume_state = checkpoint.load_train_state(run)
        if state["step"] > config.train.steps:
            raise ValueError(f"{run.train_state_file} is at step {state['step']}, beyond train.steps="
                             f"{config.train.steps}; resume with train.steps={state['step']} or more")
        checkpoint.restore_optimizer(run, t.optimizer, state)
        match_parameter_layouts(t.optimizer)
        t.start_step, t.best, t.wall_before = state["step"], state["best"], state["wall_time_s"]
        if state["data"].get("batches_per_epoch") != sampler.batches_per_epoch or state["data"].get("seed") != sampler.seed:
            print(f"note: the data order differs from the interrupted run's ({state['data']} before, "
                  f"{sampler.batches_per_epoch} batches per epoch now)", file=sys.stderr)
    return t


# ---------------------------------------------------------------------------------------- each step


def train_step(t: Training, step: int, device: torch.device, autocast) -> tuple[dict[str, torch.Tensor], float, float]:
    """One optimiser step at lr(step), τ(step) on batch(step); returns (the step's values on the
    device: loss, terms/<name>, logs/<name>, grad_norm (with optim.grad_clip)), lr, τ)."""
    config = t.config
    lr = learning_rate(step, config.optim, config.train.steps)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    tau = temperature(step, config.temperature)
    t.raw_model.set_temperature(tau)
    x, _ = t.train_set.get_batch(t.sampler.indices(step), device=device)
    if config.train.channels_last:
        x = channels_last_batch(x)
    with autocast():
        out = t.model(x)
    t.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    values = {"loss": out.loss.detach(), **{f"terms/{k}": v for k, v in out.terms.items()},
              **{f"logs/{k}": v for k, v in out.logs.items()}}
    if config.optim.grad_clip is not None:
        trainable = [p for group in t.optimizer.param_groups for p in group["params"]]
        values["grad_norm"] = torch.nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip)
    t.optimizer.step()
    return values, lr, tau


class Window:
    """The steps' values since the last synchronisation, kept on the device: one row per step."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []
        self.columns: list[str] = []
        self.start = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        self.columns = self.columns or list(values)
        self.rows.append(torch.stack([v.float() for v in values.values()]))

    def synchronise(self, procs: Processes, model_state: list[torch.Tensor], done: int) -> tuple[torch.Tensor, int, float]:
        """One synchronisation: (rows averaged over ranks (steps, columns), steps, seconds since the
        start); raises NonFiniteLoss for a non-finite value or tensor of ``model_state``."""
        rows = all_reduce(torch.stack(self.rows)).cpu() / procs.world_size
        finite = all_reduce(torch.stack([x.detach().isfinite().all() for x in model_state]).all().float().reshape(1))
        check_finite(rows, self.columns, first_step=done - len(self.rows) + 1,
                     parameters_finite=bool(finite.item() == procs.world_size))
        steps, seconds = len(self.rows), time.perf_counter() - self.start
        self.rows = []
        return rows, steps, seconds

    def restart(self) -> None:
        self.start = time.perf_counter()


def validate(t: Training, procs: Processes, autocast) -> dict:
    """One pass over the val set (this rank's shard, ``t.rank_batch`` per batch, forward under
    ``autocast()``) with the deterministic quantiser (eval mode); every rank must call it.

    Returns ``{"loss", "terms": {name: value}, "rmse", "mse", "psnr", "perplexity/<l>",
    "usage/<l>", "items"}``, summed over ranks: loss and terms are the model's (batch losses
    weighted by batch size), RMSE/PSNR as in ``hqvae.metrics.ReconstructionMetrics``, perplexity
    and usage of each layer's codes over the whole set (``hqvae.metrics.CodebookUsage``).
    """
    model, dataset = t.raw_model, t.val_set
    reconstruction = ReconstructionMetrics(with_ssim=False)
    usage = [CodebookUsage(layer.codebook_size) for layer in model.config.layers]
    names: list[str] = []
    sums = None  # float64 (1 + terms,): Σ batch_size · [loss, *terms]
    with evaluating(model):
        for x, _ in batches(dataset, t.rank_batch, procs.rank, procs.world_size, procs.device):
            with autocast():
                out = model(x)
            names = sorted(out.terms)
            values = torch.stack([out.loss.detach().float(), *(out.terms[name].float() for name in names)])
            batch = values.double().cpu() * x.shape[0]
            sums = batch if sums is None else sums + batch
            reconstruction.update(out.x_hat, x)
            for accumulator, codes in zip(usage, out.codes):
                accumulator.update(codes)
    if sums is None:
        raise ValueError(f"rank {procs.rank} got no validation data ({len(dataset)} items for {procs.world_size} "
                         f"processes)")
    sums = all_reduce(sums)
    metrics = reconstruction.all_reduce().compute()
    items = metrics["items"]
    result = {"loss": float(sums[0]) / items, "terms": {name: float(v) / items for name, v in zip(names, sums[1:])},
              "rmse": metrics["rmse"], "mse": metrics["mse"], "psnr": metrics["psnr"]}
    for layer, accumulator in enumerate(usage):
        accumulator.all_reduce()
        result[f"perplexity/{layer}"] = accumulator.perplexity()
        result[f"usage/{layer}"] = accumulator.usage()
    result["items"] = items
    return result


def validate_and_stage(t: Training, run: RunDir, procs: Processes, done: int, logger, autocast) -> None:
    """Validate (every rank); a new best becomes ``t.best`` and is staged as checkpoints/best,
    committed with the next checkpoints/last (rank 0)."""
    for buffer in t.raw_model.buffers():  # rank 0's (BatchNorm statistics drift apart between DDP's broadcasts)
        broadcast_(buffer)
    result = validate(t, procs, autocast)
    is_best = math.isfinite(result["loss"]) and (t.best is None or result["loss"] < t.best["val_loss"])
    if is_best:
        t.best = {"step": done, "val_loss": result["loss"]}
    if procs.master:
        if is_best:
            checkpoint.stage(run, "best", t.raw_model)
        logger.log({"step": done, "split": "val", **result, "best": is_best})


# ---------------------------------------------------------------------------------------- helpers


def prepare_run_folder(run: RunDir, procs: Processes, resume: bool, force: bool) -> tuple[RunInfo | None, bool]:
    """Check the folder (:func:`check_run_folder`), clear it (--force) or tidy what a crash left, and
    tell whether to continue from checkpoints/last: (previous run.json or None, from_checkpoint).
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
        return None, False
    previous = run.read_info()
    from_checkpoint = run.checkpoint("last").exists()
    if not from_checkpoint and procs.master:
        print(f"note: {run.root} has no checkpoint yet (it stopped before its first one): starting it over "
              f"from step 0 with the same config", file=sys.stderr)
    return previous, from_checkpoint


def check_batch_size(batch_size: int, world_size: int) -> int:
    """Each rank's share of ``batch_size``."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size={batch_size} is not divisible by the {world_size} processes")
    return batch_size // world_size


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
            what = f"a run (status {info.status}, step {info.step} of {info.steps})"
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
    """The ``count`` items at :func:`hqvae.data.splits.evenly_spaced_indices` (all when count ≥ N), described as such."""
    if count >= len(dataset):
        return dataset
    return dataset.subset(evenly_spaced_indices(len(dataset), count), dataset.split,
                          f"{dataset.description}; {count} of them, evenly spaced ({setting})")


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


def open_outputs(run: RunDir, procs: Processes, info: RunInfo, resume: bool, tensorboard: bool = False,
                 progress: bool = True) -> tuple[MetricsLogger | None, object | None]:
    """Rank 0: write run.json, drop the metrics after the step resumed from, open the metrics logger
    and the progress bar (tqdm); (None, None) on the other ranks."""
    if not procs.master:
        return None, None
    run.write_info(info)
    if resume:
        run.truncate_metrics(info.step)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=info.steps, initial=info.step, desc=str(run.root), dynamic_ncols=True)
    return MetricsLogger(run, tensorboard), bar


def restore_random_streams(run: RunDir, procs: Processes, state: dict, seed: int) -> None:
    """This rank's RNG states from ``state`` (train_state.pt), or new streams when the number of
    processes changed."""
    if state["world_size"] == procs.world_size:
        checkpoint.restore_rng(run, state["rng"][procs.rank])
    else:
        print(f"note: resuming with {procs.world_size} processes instead of {state['world_size']}: "
              f"new random streams", file=sys.stderr)
        rng.seed_all(seed + procs.rank + 1_000_003 * state["step"])


def save_last(run: RunDir, procs: Processes, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              info: RunInfo, done: int, best: dict | None, wall_time: float, **state) -> None:
    """Write checkpoints/last at ``done`` steps (train_state.pt: step, optimizer, rng, world_size,
    ``state``, best, wall_time_s, hqvae_version), commit the staged best, then record both in
    run.json (``info`` is updated); every rank must call it."""
    rng_states = [rng.capture()] * procs.world_size  # every rank's RNG states, indexed by rank:
    if procs.world_size > 1:
        dist.all_gather_object(rng_states, rng_states[0])  # this rank's, gathered from all
    if procs.master:
        state = {"step": done, "optimizer": optimizer.state_dict(), "rng": rng_states, "world_size": procs.world_size,
                 **state, "best": best, "wall_time_s": wall_time, "hqvae_version": hqvae.__version__}
        checkpoint.stage(run, "last", model, state)
        checkpoint.commit(run, "last")
        checkpoint.commit(run, "best")
    info.step, info.best, info.wall_time_s, info.updated_at = done, best, wall_time, now()
    if procs.master:
        run.write_info(info)


def kept_checkpoint(info: RunInfo) -> str:
    """What a stopped run leaves to resume from, for its message (``info.step``: the step of
    checkpoints/last, 0 before the first one)."""
    if not info.step:
        return "no checkpoint was written before it"
    return f"checkpoints/last is the last good state (step {info.step})"


def failure_status(error: BaseException, step: int, run: RunDir, info: RunInfo) -> tuple[str, str]:
    """run.json's (status, message) for a run stopped by ``error`` during (0-based) ``step``."""
    again = f"continue with `hqvae train --out {run.root} --resume`"
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


def teardown(procs: Processes, finished: bool = False) -> None:
    """Leave the process group. A finished run first waits for every rank, so that no rank tears its
    gloo connections down while another still finishes its last collective. Callers drop their
    DistributedDataParallel wrapper first: one still alive holds the process group until the
    interpreter exits, where gloo's threads abort the process (measured: 5 of 12 two-process runs)."""
    if procs.world_size > 1 and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()
