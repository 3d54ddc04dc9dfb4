"""Evaluate a trained model on one split: ``evaluate(model, data) -> dict`` (SPEC §5).

Everything is computed with deterministic quantisation (``model.encode``: argmax of the SQ
posterior / nearest VQ code) in eval mode without gradients, on pixels in [0, 1]:

* reconstruction of the full code: RMSE (pooled over every pixel of every item), PSNR (mean of
  per-item values), SSIM (Gaussian window, mean over items; skipped below 11×11 pixels) and,
  only when an LPIPS network built from user-supplied weights is passed, LPIPS;
* per layer l (coarse to fine): code grid (h_l, w_l), n_l = h_l·w_l, K_l, the dataset-level
  histogram of hard indices with its perplexity exp(H(p_l)), usage (fraction of codes used at
  least once) and entropy H(p_l) in bits, and the paper-style mini-batch perplexity (exp(H) of
  each mini-batch of ``minibatch_perplexity_batch`` consecutive items, averaged);
* per layer, for models that support "posteriors" (``encode_posteriors``): the plug-in mutual
  information between the data and the layer's code, I = H(p̄) − mean H(P(· | x)), in bits per
  position and per item (:mod:`hqvae.metrics.information`; VQ layers: the histogram entropy);
* rate: nominal Σ_l n_l·log2 K_l and empirical-entropy Σ_l n_l·H(p_l) bits per item;
* coarse to fine (models with more than one layer): reconstruction metrics of
  ``model.decode(codes, upto=m)`` for m = 1..L with the nominal rate of those m layers.

Under DDP (:func:`hqvae.distributed.is_distributed`) a data set is sharded over the ranks with
:func:`hqvae.data.make_loader` (a loader passed in is used as it is, so it must be sharded
already) and the accumulators are all-reduced, so every rank returns the result on the whole
split.  Without DDP nothing distributed is touched.

The result is plain JSON (see :func:`evaluate` for its keys); :func:`hqvae.runs.evaluate_run`
adds the run, checkpoint and provenance fields.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from hqvae.data.loader import batches
from hqvae.metrics import CodebookUsage, LayerInformation, MinibatchPerplexity, ReconstructionMetrics, bits_per_item
from hqvae.metrics import entropy_bits_per_item
from hqvae.metrics.image import SSIM_MIN_SIZE
from hqvae.distributed import all_reduce, is_distributed

SCHEMA = "hqvae.eval/1"
RECONSTRUCTION_KEYS = ("rmse", "mse", "psnr", "ssim")  # of ReconstructionMetrics.compute() (ssim: ≥ 11×11 pixels)
PARTIAL_DECODING = ("model.decode(codes, upto=m): missing residual layers contribute zero, a missing injected layer "
                    "is the codebook mean (HQ-VAE); the first m steps of every group (PQ-VAE)")


class _MinibatchChunks:
    """Feeds a :class:`MinibatchPerplexity` chunks of exactly ``size`` consecutive items, whatever
    the evaluation batch size; ``finish`` adds the last (possibly shorter) chunk."""

    def __init__(self, codebook_size: int, size: int):
        self.meter = MinibatchPerplexity(codebook_size)
        self.size = size
        self.pending: Tensor | None = None  # the codes of at most ``size`` items, not fed yet

    def update(self, codes: Tensor) -> None:
        """codes (B, *positions) of one batch."""
        codes = codes.cpu() if self.pending is None else torch.cat([self.pending, codes.cpu()])
        *chunks, self.pending = codes.split(self.size)  # the last chunk waits: more items may complete it
        for chunk in chunks:
            self.meter.update(chunk)

    def finish(self) -> MinibatchPerplexity:
        if self.pending is not None and len(self.pending):
            self.meter.update(self.pending)
        self.pending = None
        return self.meter


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    batch_size: int = 256,
    minibatch_perplexity_batch: int = 32,
    progressive: bool = True,
    lpips: nn.Module | None = None,
) -> dict:
    """Metrics of ``model`` on ``data`` (module docstring).

    Args:
        model: any registered model (``hqvae.models.DiscreteAutoencoder``), possibly wrapped in
            DistributedDataParallel; its training flags are restored afterwards.
        data: an :class:`~hqvae.data.ImageDataset` (batched with ``batch_size``) or an iterable
            of ``(x, y)`` batches or of bare x, float (B, C, H, W) in [0, 1].
        minibatch_perplexity_batch: items per mini-batch of the paper-style perplexity.
        progressive: also evaluate ``decode(codes, upto=m)`` for m < L (coarse-to-fine curve).
        lpips: an :class:`hqvae.metrics.LPIPS` built with :func:`hqvae.metrics.load_lpips`;
            LPIPS is reported only when given.

    Returns a JSON-ready dict:
        ``schema``, ``model`` {type, num_layers, parameters}, ``data`` {name, split,
        description, items, shape [C, H, W]}, ``settings`` {batch_size, minibatch_perplexity_batch,
        quantization, partial_decoding, clamp, world_size},
        ``reconstruction`` {rmse, mse, psnr, ssim (≥ 11×11 pixels), lpips (only with weights), items},
        ``layers``: one dict per layer {layer, kind, quantizer, grid [h, w] (PQ-VAE: [G]), positions n_l,
        codebook_size K_l, bits n_l·log2 K_l, perplexity, usage, codes_used, entropy_bits,
        minibatch_perplexity, minibatch_perplexity_batch_size, counts (histogram, K_l ints), and
        with ``encode_posteriors``: marginal_entropy_bits, conditional_entropy_bits,
        information_bits (per position), information_bits_per_item},
        ``rate`` {bits_per_item, entropy_bits_per_item, bits_per_pixel (nominal bits / (H·W))},
        ``coarse_to_fine``: one dict per m = 1..L {layers m, bits_per_item, rmse, mse, psnr,
        ssim} (only the full code when ``progressive`` is false or L = 1), ``time_s``.
    """
    if batch_size < 1 or minibatch_perplexity_batch < 1:
        raise ValueError(f"batch sizes must be positive, got {batch_size} and {minibatch_perplexity_batch}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    device = next(model.parameters()).device
    sizes = model.codebook_sizes
    num_layers = len(sizes)
    depths = range(1, num_layers + 1) if progressive else [num_layers]
    start = time.perf_counter()

    usage = [CodebookUsage(k) for k in sizes]
    posteriors_known = model.supports("posteriors")
    information = [LayerInformation(k) for k in sizes] if posteriors_known else []
    minibatch = [_MinibatchChunks(k, minibatch_perplexity_batch) for k in sizes]
    recon: dict[int, ReconstructionMetrics] = {}
    lpips_sum = torch.zeros(2, dtype=torch.float64)  # (Σ LPIPS, items)
    grids: list[tuple[int, int]] = []
    shape: tuple[int, ...] = ()
    rank, world_size = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if is_distributed() else (0, 1)
    for x, _ in batches(data, batch_size, rank, world_size):
        x = x.to(device).float()
        if not recon:
            shape = tuple(x.shape[1:])
            recon = {m: ReconstructionMetrics(with_ssim=min(shape[-2:]) >= SSIM_MIN_SIZE) for m in depths}
        codes, posteriors = model.encode_posteriors(x) if posteriors_known else (model.encode(x), None)
        grids = [tuple(code.shape[1:]) for code in codes]
        for layer, code in enumerate(codes):
            usage[layer].update(code)
            minibatch[layer].update(code)
            if posteriors_known:
                information[layer].update(code, posteriors[layer])
        for m in depths:
            x_hat = model.decode(codes, upto=m)
            recon[m].update(x_hat, x)
            if lpips is not None and m == num_layers:
                lpips_sum += torch.tensor([float(lpips(x_hat.clamp(0, 1), x).double().sum()), x.shape[0]])
    if not recon:
        raise ValueError("the data set is empty: nothing to evaluate")

    for meter in usage + information + [chunks.finish() for chunks in minibatch] + list(recon.values()):
        meter.all_reduce()
    lpips_sum = all_reduce(lpips_sum)

    layers = []
    for layer, (info, counts, chunks, grid) in enumerate(zip(model.layer_info(), usage, minibatch, grids)):
        stats = counts.compute()
        minibatches = chunks.meter.compute()
        layers.append({
            "layer": layer,
            "kind": info.kind,
            "quantizer": info.quantizer,
            "grid": list(grid),
            "positions": stats["positions_per_item"],
            "codebook_size": stats["codebook_size"],
            "bits": bits_per_item([(stats["positions_per_item"], stats["codebook_size"])]),
            **{key: stats[key] for key in ("perplexity", "usage", "codes_used", "entropy_bits")},
            "minibatch_perplexity": minibatches["perplexity"],
            "minibatch_perplexity_batch_size": minibatches["batch_size"],
            "counts": counts.counts.tolist(),
        })
        if posteriors_known:
            layers[-1].update(information[layer].compute(stats["positions_per_item"]))

    computed = {m: recon[m].compute() for m in depths}
    full = computed[num_layers]
    reconstruction = {key: full[key] for key in RECONSTRUCTION_KEYS if key in full}
    if lpips is not None:
        reconstruction["lpips"] = float(lpips_sum[0] / lpips_sum[1])
    reconstruction["items"] = full["items"]
    coarse_to_fine = [{"layers": m, "bits_per_item": sum(layer["bits"] for layer in layers[:m]),
                       **{key: values[key] for key in RECONSTRUCTION_KEYS if key in values}}
                      for m, values in computed.items()]

    nominal = bits_per_item(usage)
    dataset = data if hasattr(data, "description") else getattr(data, "dataset", None)  # a data set or a loader's
    return {
        "schema": SCHEMA,
        "model": {
            "type": model.config.name,
            "num_layers": num_layers,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {"name": getattr(dataset, "name", None), "split": getattr(dataset, "split", None),
                 "description": getattr(dataset, "description", "unknown data (no description given)"),
                 "items": full["items"], "shape": list(shape)},
        "settings": {
            "batch_size": batch_size,
            "minibatch_perplexity_batch": minibatch_perplexity_batch,
            "quantization": "deterministic (argmax of the SQ posterior / nearest VQ code)",
            "partial_decoding": PARTIAL_DECODING,
            "clamp": True,
            "world_size": world_size,
        },
        "reconstruction": reconstruction,
        "layers": layers,
        "rate": {
            "bits_per_item": nominal,
            "entropy_bits_per_item": entropy_bits_per_item(usage),
            "bits_per_pixel": nominal / (shape[-2] * shape[-1]),
        },
        "coarse_to_fine": coarse_to_fine,
        "time_s": time.perf_counter() - start,
    }
