"""The tokenizer's task of ``hqvae train`` (the loop itself is ``hqvae.train.engine.fit``):

    setup       data, seed, model (from checkpoints/last on resume), channels-last, the model's
                training defaults, the data order, Adam(W)
    each step   lr(step), τ(step), batch(step), forward, backward, clip, optimiser step; the loss,
                its terms and logs are kept on the device (no synchronisation)
    validation  the deterministic quantiser over the val set (every rank its shard): loss and terms,
                RMSE / PSNR, perplexity and usage of each layer's codes
    after the last step (before its validation and checkpoint): BatchNorm statistics of argmax
                decodes over ``train.recalibrate_batchnorm`` random training batches (:func:`recalibrate`)
"""
from __future__ import annotations

import os

import torch

from hqvae.data import DataError, load_dataset
from hqvae.data.loader import batches
from hqvae.data.splits import evenly_spaced_indices
from hqvae.distributed import all_reduce, broadcast_
from hqvae.metrics import CodebookUsage, ReconstructionMetrics
from hqvae.models import create_model, evaluating, recalibrate_batchnorm
from hqvae.models.batchnorm import BATCHNORM
from hqvae.train import checkpoint, rng
from hqvae.train.config import TrainConfig
from hqvae.train.engine import Task, check_batch_size, fit
from hqvae.train.optim import build_optimizer, set_learning_rate
from hqvae.train.performance import channels_last, channels_last_batch, keep_freed_memory
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import RunInfo
from hqvae.train.sampler import StepSampler
from hqvae.train.schedules import default_temperature_decay, learning_rate, temperature


def train(config: TrainConfig, out: str | os.PathLike, *, resume: bool = False, force: bool = False) -> RunInfo:
    """Train as ``config`` says into the run folder ``out``; returns the final run.json (RunInfo).

    resume: continue from ``checkpoints/last`` (pass the run's own config, from run.json, see
    ``hqvae.train.resume``); force: start over in a folder that already holds a run. Errors as
    ``hqvae.train.engine.fit``.
    """
    return fit(TokenizerTask(config), out, resume=resume, force=force)


class TokenizerTask(Task):
    """An autoencoder of ``hqvae.models`` trained on a data set (``config``: a TrainConfig, which
    gets the model's training defaults and ``train.steps`` in :meth:`setup`)."""

    def __init__(self, config: TrainConfig):
        self.config = config

    def setup(self, run: RunDir, from_checkpoint: bool) -> None:
        config, procs = self.config, self.procs
        device = procs.device
        train_set, val_set = procs.master_first(lambda: load_data(config))  # decoded once, in the cache
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
        config = self.config = config.with_model_defaults(model.config.train_defaults)
        self.rank_batch = check_batch_size(config.train.batch_size, procs.world_size)
        self.sampler = StepSampler(len(train_set), self.rank_batch, config.train.seed, procs.rank, procs.world_size)
        if config.train.steps is None:
            config.train.steps = config.train.epochs * self.sampler.batches_per_epoch
        if config.temperature.decay is None:
            config.temperature.decay = default_temperature_decay(config.train.steps)
        if val_set is not None and config.train.val_batches is not None:
            val_set = evenly_spaced(val_set, config.train.val_batches * config.train.batch_size, "train.val_batches")
        self.train_set, self.val_set = train_set, val_set if val_set is not None and len(val_set) > 0 else None
        self.raw_model = self.model = model
        self.optimizer = build_optimizer(model, config.optim)
        self.steps, self.validates = config.train.steps, self.val_set is not None

    def run_info(self) -> RunInfo:
        model = self.raw_model
        return RunInfo(model_type=model.config.name, model_config=model.config.to_dict(), config=self.config.to_dict(),
                       data={"train": self.train_set.description,
                             "val": self.val_set.description if self.val_set is not None else None})

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One optimiser step at lr(step), τ(step) on batch(step): loss, terms/<name>, logs/<name>,
        grad_norm (with optim.grad_clip), on the device."""
        config = self.config
        self.lr = learning_rate(step, config.optim, config.train.steps)
        set_learning_rate(self.optimizer, self.lr)
        self.tau = temperature(step, config.temperature)
        hard_from = config.temperature.hard_from
        self.raw_model.set_temperature(self.tau, hard=hard_from is not None and step >= hard_from)
        x, _ = self.train_set.get_batch(self.sampler.indices(step), device=self.procs.device)
        if config.train.channels_last:
            x = channels_last_batch(x)
        with self.autocast():
            out = self.model(x)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        values = {"loss": out.loss.detach(), **{f"terms/{k}": v for k, v in out.terms.items()},
                  **{f"logs/{k}": v for k, v in out.logs.items()}}
        if config.optim.grad_clip is not None:
            trainable = [p for group in self.optimizer.param_groups for p in group["params"]]
            values["grad_norm"] = torch.nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip)
        self.optimizer.step()
        return values

    def train_record(self, done: int, means: dict[str, float], steps: int, seconds: float, wall: float) -> dict:
        """The train record of metrics.jsonl (see hqvae.train.run_dir)."""
        record = {"step": done, "split": "train", "loss": means.pop("loss"),
                  "terms": {k.split("/", 1)[1]: v for k, v in means.items() if k.startswith("terms/")},
                  "logs": {k.split("/", 1)[1]: v for k, v in means.items() if k.startswith("logs/")},
                  "lr": self.lr}
        if self.raw_model.stochastic:
            record["temperature"] = self.tau
        if "grad_norm" in means:
            record["grad_norm"] = means["grad_norm"]
        record.update(img_per_s=steps * self.config.train.batch_size / seconds, wall_time_s=wall)
        return record

    def postfix(self, record: dict) -> str:
        """Loss, perplexity (and s² of SQ layers) per layer, img/s."""
        parts = [f"loss={record['loss']:.4g}"]
        for label, prefix, spec in (("ppl", "perplexity/", ".0f"), ("s2", "variance/", ".3g")):
            values = [format(v, spec) for k, v in record["logs"].items() if k.startswith(prefix)]
            if values:
                parts.append(f"{label}=" + "/".join(values))
        return " ".join([*parts, f"{record['img_per_s']:.0f} img/s"])

    def finish_training(self, done: int, info: RunInfo) -> None:
        """The BatchNorm statistics of what evaluation decodes (:func:`recalibrate`), recorded in run.json."""
        if self.config.train.recalibrate_batchnorm:
            items = recalibrate(self.raw_model, self.train_set, self.config, self.procs.device,
                                self.procs.rank, self.procs.world_size)
            info.batchnorm_recalibration = {"step": done, "items": items}

    def validate(self, done: int) -> tuple[float, dict]:
        """The val loss and record (hqvae.train.run_dir), over all ranks' shards, loss and terms weighted
        by batch size; every rank takes rank 0's buffers first, as BatchNorm statistics drift apart
        between DDP's broadcasts."""
        model, dataset, procs = self.raw_model, self.val_set, self.procs
        for buffer in model.buffers():
            broadcast_(buffer)
        reconstruction = ReconstructionMetrics(with_ssim=False)
        usage = [CodebookUsage(layer.codebook_size) for layer in model.layer_info()]
        names: list[str] = []
        sums = None  # float64 (1 + terms,): Σ batch_size · [loss, *terms]
        with evaluating(model):
            for x, _ in batches(dataset, self.rank_batch, procs.rank, procs.world_size, procs.device):
                with self.autocast():
                    out = model(x)
                names = sorted(out.terms)
                values = torch.stack([out.loss.detach().float(), *(out.terms[name].float() for name in names)])
                batch = values.double().cpu() * x.shape[0]
                sums = batch if sums is None else sums + batch
                reconstruction.update(out.x_hat, x)
                for accumulator, codes in zip(usage, out.codes):
                    accumulator.update(codes)
        if sums is None:
            raise ValueError(f"rank {procs.rank} got no validation data ({len(dataset)} items for "
                             f"{procs.world_size} processes)")
        sums = all_reduce(sums)
        metrics = reconstruction.all_reduce().compute()
        items = metrics["items"]
        loss = float(sums[0]) / items
        record = {"step": done, "split": "val", "loss": loss,
                  "terms": {name: float(v) / items for name, v in zip(names, sums[1:])},
                  "rmse": metrics["rmse"], "mse": metrics["mse"], "psnr": metrics["psnr"]}
        for layer, accumulator in enumerate(usage):
            accumulator.all_reduce()
            record[f"perplexity/{layer}"] = accumulator.perplexity()
            record[f"usage/{layer}"] = accumulator.usage()
        record["items"] = items
        return loss, record


def recalibrate(model: torch.nn.Module, train_set, config: TrainConfig, device: torch.device,
                rank: int = 0, world_size: int = 1, sample: bool = False) -> int:
    """Recompute ``model``'s BatchNorm running statistics on ``config.train.recalibrate_batchnorm``
    batches of ``config.train.batch_size`` training items drawn uniformly (this rank's share: its own
    batch_size / W items per batch, from a generator seeded by train.seed + rank), forwarded in eval
    mode (``hqvae.models.recalibrate_batchnorm``; ``sample``: SQ layers decode relaxed samples), then
    averaged over the W ranks. Returns the number of items seen over all ranks (0: the model has no
    BatchNorm, nothing changed). Measured in ``benchmarks/bn_recalibration.py``; every rank must call it.
    """
    train = config.train
    rank_batch = check_batch_size(train.batch_size, world_size)
    generator = torch.Generator().manual_seed(train.seed + rank)

    def draws():
        for _ in range(train.recalibrate_batchnorm):
            x, _ = train_set.get_batch(torch.randint(len(train_set), (rank_batch,), generator=generator), device=device)
            yield channels_last_batch(x) if train.channels_last else x

    items = recalibrate_batchnorm(model, draws(), sample)
    if world_size > 1 and items:  # the mean of the ranks' averages: every rank ends with the same statistics
        for module in model.modules():
            if isinstance(module, BATCHNORM) and module.track_running_stats:
                for buffer in (module.running_mean, module.running_var):
                    buffer.copy_(all_reduce(buffer) / world_size)
    return items * world_size


def recalibrate_run(out: str | os.PathLike, batches: int | None = None, device: str = "cpu",
                    data_root: str | None = None) -> RunInfo:
    """Give a finished run trained before ``train.recalibrate_batchnorm`` (or with it 0) what its last
    step now does: :func:`recalibrate` on checkpoints/last (one process) with ``batches`` batches (None:
    its config's setting, the default 200 when the run predates it), written back atomically with its
    training state; run.json records them (``batchnorm_recalibration`` and the config's setting);
    ``data_root`` replaces the recorded data root (a run moved to another machine). For
    a run trained in one process this is the checkpoint the current trainer writes with that setting
    (the statistics depend only on the final weights and the seeded batches). Returns run.json.
    """
    run = RunDir(out)
    info = run.read_info()
    if info.status != "finished":
        raise ValueError(f"{run.root} is not a finished run (status {info.status}); finish it first")
    config = TrainConfig.from_dict(info.config)
    if batches is not None:
        config.train.recalibrate_batchnorm = batches
    info.config = {**info.config, "train": {**info.config["train"],
                                            "recalibrate_batchnorm": config.train.recalibrate_batchnorm}}
    config.train.val_every = 0  # the training split only
    if data_root is not None:
        config.data.root = data_root
    model = checkpoint.load_model(run, torch.device(device))
    if config.train.channels_last:
        channels_last(model)
    train_set, _ = load_data(config)
    items = recalibrate(model, train_set, config, torch.device(device))
    checkpoint.stage(run, "last", model, checkpoint.load_train_state(run))
    checkpoint.commit(run, "last")
    info.batchnorm_recalibration = {"step": info.step, "items": items}
    run.write_info(info)
    return info


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
