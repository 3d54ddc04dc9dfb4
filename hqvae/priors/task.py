"""The prior's task of ``hqvae prior train`` (the loop itself is ``hqvae.train.engine.fit``, with its
stop signals, non-finite stop, checked resume and run status):

    codes       the run's train and val codes, encoded once by rank 0 and cached in <prior>/codes/
    setup       seed, prior (from checkpoints/last on resume), AdamW
    each step   lr(step), batch(step), class dropout; the loss is the cross-entropy in bits per token
    validation  mean bits per item of the val codes (unconditional, rank 0)
"""
from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path

import torch

from hqvae.priors.config import PriorTrainConfig
from hqvae.priors.evaluate import mean_bits
from hqvae.priors.folder import KIND, cached_codes
from hqvae.priors.layout import CodeLayout
from hqvae.priors.base import WEIGHTS_NAME, PriorConfig, TransformerConfig, build_prior, load_prior
from hqvae.runs import open_run
from hqvae.train import rng
from hqvae.train.engine import Task, check_batch_size, fit
from hqvae.train.optim import adam, set_learning_rate
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import RunInfo
from hqvae.train.sampler import StepSampler
from hqvae.train.schedules import learning_rate


def train_prior(run_path: str | os.PathLike, out: str | os.PathLike, config: PriorTrainConfig, *,
                resume: bool = False, force: bool = False) -> RunInfo:
    """Train a prior on the codes of the tokenizer run ``run_path`` into the folder ``out``;
    returns the final run.json (errors as ``hqvae.train.engine.fit``)."""
    return fit(PriorTask(run_path, config), out, resume=resume, force=force)


class PriorTask(Task):
    """A prior (``hqvae.priors.transformer``) over the codes of the tokenizer run ``run_path``."""

    command = "hqvae prior train"
    best_key = "val_bits_per_item"
    weights_name = WEIGHTS_NAME

    def __init__(self, run_path: str | os.PathLike, config: PriorTrainConfig):
        self.run_path, self.config = run_path, config

    def setup(self, run: RunDir, from_checkpoint: bool) -> None:
        config, procs, data = self.config, self.procs, self.config.data
        opened = self.opened = open_run(self.run_path, data.checkpoint, procs.device)

        def codes():
            train = cached_codes(run, opened, "train", data.limit, data.encode_batch_size, data.root)
            val = (cached_codes(run, opened, "val", data.val_items, data.encode_batch_size, data.root)
                   if data.val_items != 0 and config.train.val_every else None)
            return train, val

        (layers, self.labels, self.train_meta), self.val_codes = procs.master_first(codes)
        layout = self.layout = CodeLayout.from_codes(opened.model, layers)
        self.tokens = layout.flatten(layers)
        if config.model.class_conditional and self.labels is None:
            raise ValueError("model.class_conditional=true but the run's data set has no class labels; "
                             "drop it (an unconditional prior)")
        self.num_classes = int(self.labels.max()) + 1 if config.model.class_conditional else 0
        self.val_tokens = layout.flatten(self.val_codes[0]) if self.val_codes is not None else None
        kind = config.model.kind
        if kind == "auto":
            kind = "depth" if opened.model.supports("residual_stack") and layout.lengths[0] > 1 else "flat"
        rng.seed_all(config.train.seed + procs.rank)
        transformer = {f.name: getattr(config.model, f.name) for f in fields(TransformerConfig)}
        prior_config = PriorConfig(layout.to_dict()["code_shapes"], list(layout.codebook_sizes),
                                   num_classes=self.num_classes, **{**transformer, "kind": kind})
        prior = (load_prior(run.checkpoint("last"), procs.device) if from_checkpoint
                 else build_prior(prior_config).to(procs.device))
        prior.train()
        self.raw_model = self.model = prior
        self.rank_batch = check_batch_size(config.train.batch_size, procs.world_size)
        self.sampler = StepSampler(self.tokens.shape[0], self.rank_batch, config.train.seed, procs.rank,
                                   procs.world_size)
        self.optimizer = adam(prior, torch.optim.AdamW, config.optim.lr, config.optim.betas, config.optim.weight_decay)
        self.steps, self.validates = config.train.steps, self.val_tokens is not None

    def run_info(self) -> RunInfo:
        opened, layout, meta, prior = self.opened, self.layout, self.train_meta, self.raw_model
        data = {"train": meta["dataset"], "train_items": self.tokens.shape[0],
                "val": self.val_codes[2]["dataset"] if self.val_codes is not None else None}
        return RunInfo(kind=KIND, config=self.config.to_dict(), data=data, extra={
            "tokenizer": {"run": str(Path(self.run_path).resolve()), "checkpoint": opened.checkpoint["which"],
                          "step": opened.checkpoint["step"], "model_type": opened.model.config.name,
                          "model_fingerprint": opened.fingerprint()},
            "layout": layout.to_dict(),
            "tokens_per_item": layout.length,
            "uniform_bits_per_item": layout.uniform_bits(),
            "num_classes": self.num_classes,
            "prior_kind": prior.config.kind,
            "parameters": sum(p.numel() for p in prior.parameters()),
            "image_size": meta["image_size"],
            "in_channels": meta["in_channels"],
            "log_mel": meta.get("log_mel"),
        })

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """Cross-entropy of batch(step) in bits per token (class labels dropped with probability
        model.class_dropout); grad_norm with optim.grad_clip."""
        config, device = self.config, self.procs.device
        self.lr = learning_rate(step, config.optim, config.train.steps)
        set_learning_rate(self.optimizer, self.lr)
        index = self.sampler.indices(step)
        batch = self.tokens[index].to(device)
        labels = None
        if self.num_classes:  # each label dropped to "no class" with probability class_dropout
            dropped = torch.rand(index.shape) < config.model.class_dropout
            labels = self.labels[index].masked_fill(dropped, self.num_classes).to(device)
        with self.autocast():
            logits = self.model(batch, labels)
        targets = batch.split(self.layout.lengths, dim=1)
        loss = sum(torch.nn.functional.cross_entropy(logit.float().transpose(1, 2), target, reduction="sum")
                   for logit, target in zip(logits, targets)) / (batch.shape[0] * self.layout.length * math.log(2))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        values = {"loss": loss.detach()}
        if config.optim.grad_clip is not None:
            values["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), config.optim.grad_clip)
        self.optimizer.step()
        return values

    def train_record(self, done: int, means: dict[str, float], steps: int, seconds: float, wall: float) -> dict:
        length = self.layout.length
        record = {"step": done, "split": "train", "loss": means["loss"], "bits_per_item": means["loss"] * length,
                  "lr": self.lr, "tokens_per_s": steps * self.config.train.batch_size * length / seconds,
                  "wall_time_s": wall}
        if "grad_norm" in means:
            record["grad_norm"] = means["grad_norm"]
        return record

    def postfix(self, record: dict) -> str:
        return f"bits/token={record['loss']:.4f} {record['tokens_per_s']:.0f} tok/s"

    def validate(self, done: int) -> tuple[float, dict] | None:
        """Rank 0 scores the val codes (every rank holds the same weights)."""
        result = None
        if self.procs.master:
            per_layer = mean_bits(self.raw_model, self.val_tokens, None, self.config.train.batch_size * 4,
                                  self.procs.device, self.autocast)
            value = float(per_layer.sum())
            result = value, {"step": done, "split": "val", "bits_per_item": value, "bits_per_layer": per_layer.tolist()}
        self.procs.barrier()
        return result
