"""The training loop of ``hqvae prior train``, top to bottom: processes, folder, logging rhythm,
non-finite stop, checkpoints and bit-exact resume as in ``hqvae.train.loop``; what differs:

    codes       the run's train and val codes, encoded once by rank 0 and cached in <prior>/codes/
    setup       seed, prior (DDP-wrapped when W > 1), AdamW
    each step   lr(step), batch(step), class dropout; the loss is the cross-entropy in bits per token
    every val_every: mean bits per item of the val codes (unconditional); a new best is staged
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import torch

from hqvae.models import evaluating
from hqvae.priors.config import PriorTrainConfig
from hqvae.priors.folder import KIND, cached_codes
from hqvae.priors.layout import CodeLayout
from hqvae.priors.transformer import WEIGHTS_NAME, PriorBase, PriorConfig, build_prior, load_prior
from hqvae.runs import open_run
from hqvae.train import checkpoint, rng
from hqvae.train.loop import (NonFiniteLoss, Window, check_batch_size, finish, kept_checkpoint, open_outputs,
                              prepare_run_folder, restore_random_streams, save_last, setup_processes, teardown)
from hqvae.train.optim import adam
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import RunInfo
from hqvae.train.sampler import StepSampler
from hqvae.train.schedules import learning_rate


def mean_bits(prior: PriorBase, tokens: torch.Tensor, labels: torch.Tensor | None, batch_size: int,
              device: torch.device, autocast=contextlib.nullcontext) -> torch.Tensor:
    """Mean −log2 p per layer over the items of ``tokens`` (N, T): (L,) float64 (eval mode)."""
    total = torch.zeros(prior.layout.num_layers, dtype=torch.float64)
    with evaluating(prior):
        for start in range(0, tokens.shape[0], batch_size):
            batch = tokens[start:start + batch_size].to(device)
            batch_labels = None if labels is None else labels[start:start + batch_size].to(device)
            with autocast():
                total += prior.nll_bits(batch, batch_labels).double().sum(0).cpu()
    return total / max(tokens.shape[0], 1)


def train_prior(run_path: str | os.PathLike, out: str | os.PathLike, config: PriorTrainConfig, *,
                resume: bool = False, force: bool = False) -> RunInfo:
    """Train a prior on the codes of the tokenizer run ``run_path`` into the folder ``out``;
    returns the final run.json (status "finished" or "stopped_nan")."""
    procs = setup_processes(config.train.device)
    device = procs.device
    use_bf16 = config.train.dtype == "bf16" and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    try:
        folder = RunDir(out)
        previous, resume = prepare_run_folder(folder, procs, resume, force)
        opened = open_run(run_path, config.data.checkpoint, device)
        data = config.data

        def codes():
            train = cached_codes(folder, opened, "train", data.limit, data.encode_batch_size, data.root)
            val = (cached_codes(folder, opened, "val", data.val_items, data.encode_batch_size, data.root)
                   if data.val_items != 0 and config.train.val_every else None)
            return train, val

        train_codes, val_codes = procs.master_first(codes)
        layers, labels, train_meta = train_codes
        layout = CodeLayout.from_codes(opened.model, layers)
        tokens = layout.flatten(layers)
        num_classes = 0
        if config.model.class_conditional:
            if labels is None:
                raise ValueError("model.class_conditional=true but the run's data set has no class labels; "
                                 "drop it (an unconditional prior)")
            num_classes = int(labels.max()) + 1
        val_tokens = layout.flatten(val_codes[0]) if val_codes is not None else None

        kind = config.model.kind
        if kind == "auto":
            kind = "depth" if opened.model.supports("residual_stack") and layout.lengths[0] > 1 else "flat"
        rng.seed_all(config.train.seed + procs.rank)
        prior_config = PriorConfig(layout.to_dict()["code_shapes"], list(layout.codebook_sizes),
                                   config.model.d_model, config.model.n_layer, config.model.n_head,
                                   config.model.dropout, num_classes, kind, config.model.depth_layers)
        prior = (load_prior(folder.checkpoint("last"), device) if resume else build_prior(prior_config).to(device))
        prior.train()
        rank_batch = check_batch_size(config.train.batch_size, procs.world_size)
        sampler = StepSampler(tokens.shape[0], rank_batch, config.train.seed, procs.rank, procs.world_size)
        optimizer = adam(prior, torch.optim.AdamW, config.optim.lr, config.optim.betas, config.optim.weight_decay)
        total_steps = config.train.steps
        start_step, best, wall_before = 0, None, 0.0
        if resume:
            if not folder.train_state_file.is_file() or not (folder.checkpoint("last") / WEIGHTS_NAME).is_file():
                raise FileNotFoundError(f"{folder.checkpoint('last')} holds no complete prior checkpoint to resume "
                                        f"from; start again with --force")
            state = torch.load(folder.train_state_file, map_location="cpu", weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            start_step, best, wall_before = state["step"], state["best"], state["wall_time_s"]
        model = procs.wrap(prior)
        if resume:
            restore_random_streams(folder, procs, state, config.train.seed)

        info = RunInfo(kind=KIND, step=start_step, steps=total_steps, best=best, wall_time_s=wall_before,
                       config=config.to_dict(),
                       data={"train": train_meta["dataset"], "train_items": tokens.shape[0],
                             "val": val_codes[2]["dataset"] if val_codes is not None else None})
        info.extra = {
            "tokenizer": {"run": str(Path(run_path).resolve()), "checkpoint": opened.checkpoint["which"],
                          "step": opened.checkpoint["step"], "model_type": opened.model.config.name,
                          "model_fingerprint": opened.fingerprint()},
            "layout": layout.to_dict(),
            "tokens_per_item": layout.length,
            "uniform_bits_per_item": layout.uniform_bits(),
            "num_classes": num_classes,
            "prior_kind": prior.config.kind,
            "parameters": sum(p.numel() for p in prior.parameters()),
            "image_size": train_meta["image_size"],
            "in_channels": train_meta["in_channels"],
            "log_mel": train_meta.get("log_mel"),
        }
        info.record_provenance(device, use_bf16, procs.world_size, previous, start_step if resume else None)
        logger, progress = open_outputs(folder, procs, info, resume, progress=config.logging.progress)
    except BaseException:
        teardown(procs)
        raise

    session_start = time.perf_counter()
    window = Window()
    step = start_step
    length = layout.length
    try:
        for step in range(start_step, total_steps):
            lr = learning_rate(step, config.optim, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            index = sampler.indices(step)
            batch = tokens[index].to(device)
            batch_labels = None
            if num_classes:
                batch_labels = labels[index].clone()
                dropped = torch.rand(batch_labels.shape) < config.model.class_dropout
                batch_labels[dropped] = num_classes
                batch_labels = batch_labels.to(device)
            with autocast():
                logits = model(batch, batch_labels)
            targets = batch.split(layout.lengths, dim=1)
            loss = sum(torch.nn.functional.cross_entropy(logit.float().transpose(1, 2), target, reduction="sum")
                       for logit, target in zip(logits, targets)) / (batch.shape[0] * length * math.log(2))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            values = {"loss": loss.detach()}
            if config.optim.grad_clip is not None:
                values["grad_norm"] = torch.nn.utils.clip_grad_norm_(prior.parameters(), config.optim.grad_clip)
            optimizer.step()
            window.add(values)

            done = step + 1
            validate_now = val_tokens is not None and (done % config.train.val_every == 0 or done == total_steps)
            checkpoint_now = done % config.train.checkpoint_every == 0 or done == total_steps
            flush = done % config.train.log_every == 0 or validate_now or checkpoint_now
            if flush:
                rows, steps, seconds = window.synchronise(procs, list(prior.parameters()), done)
                if procs.master:
                    means = rows.double().mean(0).tolist()
                    record = {"step": done, "split": "train", "loss": means[0], "bits_per_item": means[0] * length,
                              "lr": lr, "tokens_per_s": steps * config.train.batch_size * length / seconds,
                              "wall_time_s": wall_before + time.perf_counter() - session_start}
                    if len(means) > 1:
                        record["grad_norm"] = means[1]
                    logger.log(record)
                    if progress is not None:
                        progress.set_postfix_str(f"bits/token={means[0]:.4f} {record['tokens_per_s']:.0f} tok/s",
                                                 refresh=False)

            if validate_now:
                if procs.master:  # every rank holds the same weights; rank 0 scores the val codes
                    per_layer = mean_bits(prior, val_tokens, None, config.train.batch_size * 4, device, autocast)
                    value = float(per_layer.sum())
                    is_best = math.isfinite(value) and (best is None or value < best["val_bits_per_item"])
                    if is_best:
                        best = {"step": done, "val_bits_per_item": value}
                        checkpoint.stage(folder, "best", prior)
                    logger.log({"step": done, "split": "val", "bits_per_item": value,
                                "bits_per_layer": per_layer.tolist(), "best": is_best})
                procs.barrier()

            if checkpoint_now:
                save_last(folder, procs, prior, optimizer, info, done, best,
                          wall_before + time.perf_counter() - session_start)
            if progress is not None:
                progress.update(1)
            if flush:
                window.restart()
        info.status, info.step = "finished", total_steps
    except NonFiniteLoss as error:
        info.status, info.message = "stopped_nan", f"{error}; training stopped, {kept_checkpoint(info)}"
    except BaseException as error:
        info.status, info.message = "failed", f"{type(error).__name__} at step {step + 1}: {error}"
        model = prior  # release the DDP wrapper before leaving the process group (train.loop.teardown)
        finish(procs, folder, info, logger, progress)
        raise
    model = prior
    finish(procs, folder, info, logger, progress)
    return info

