"""Validation during training: the loss and the reconstruction and codebook metrics on held-out
data, with the deterministic quantiser (eval mode: argmax / nearest code), summed over DDP ranks."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch

from hqvae.data.loader import batches
from hqvae.metrics import CodebookUsage, ReconstructionMetrics
from hqvae.distributed import all_reduce
from hqvae.models import evaluating


def validate(model, dataset, batch_size: int, rank: int = 0, world_size: int = 1,
             device: torch.device | str = "cpu",
             autocast: Callable[[], AbstractContextManager] = nullcontext) -> dict:
    """One pass over ``dataset`` (this rank's shard, ``batch_size`` per batch, forward under
    ``autocast()``); every rank must call it.

    Returns ``{"loss", "terms": {name: value}, "rmse", "mse", "psnr", "perplexity/<l>",
    "usage/<l>", "items"}``: loss and terms are the model's (batch losses weighted by batch
    size), RMSE/PSNR as in ``hqvae.metrics.ReconstructionMetrics``, perplexity and usage of each
    layer's codes over the whole set (``hqvae.metrics.CodebookUsage``).
    """
    reconstruction = ReconstructionMetrics(with_ssim=False)
    usage = [CodebookUsage(layer.codebook_size) for layer in model.config.layers]
    names: list[str] = []
    sums = None  # float64 (1 + terms,): Σ batch_size · [loss, *terms]
    with evaluating(model):
        for x, _ in batches(dataset, batch_size, rank, world_size, device):
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
        raise ValueError(f"rank {rank} got no validation data ({len(dataset)} items for {world_size} processes)")
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
