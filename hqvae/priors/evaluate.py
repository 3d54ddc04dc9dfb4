"""Test NLL of a prior against the rates that ignore it.

For codes with n_l positions and K_l entries per layer:

* uniform rate Σ_l n_l log2 K_l (a fixed-length code);
* empirical-entropy rate Σ_l n_l H(p_l), p_l the histogram of layer l's codes on the evaluated
  split itself (an ideal coder that ignores dependencies, and is told the histogram for free);
* the prior's NLL: mean over items of −log2 p(codes), per layer and in total (unconditional).
"""
from __future__ import annotations

import contextlib

import torch

from hqvae.metrics.codebook import entropy_bits
from hqvae.models import evaluating
from hqvae.priors.base import PriorBase


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


def evaluate_prior(prior: PriorBase, layers: list[torch.Tensor], batch_size: int = 128,
                   labels: torch.Tensor | None = None) -> dict:
    """Rates of ``layers`` (one (N, *positions) tensor per layer) in bits per item, in total and
    per layer: the prior's NLL (conditioned on ``labels`` when given), the uniform and the
    histogram rate; the NLL also per token."""
    layout = prior.layout
    tokens = layout.flatten(layers)
    device = next(prior.parameters()).device
    nll = mean_bits(prior, tokens, labels, batch_size, device).tolist()
    histogram = [n * entropy_bits(torch.bincount(code.reshape(-1).long(), minlength=k))  # n_l H(p_l)
                 for code, n, k in zip(layers, layout.lengths, layout.codebook_sizes)]
    uniform = [n * torch.tensor(float(k)).log2().item() for n, k in zip(layout.lengths, layout.codebook_sizes)]
    return {
        "items": int(tokens.shape[0]),
        "tokens_per_item": layout.length,
        "nll_bits_per_item": sum(nll),
        "nll_bits_per_token": sum(nll) / layout.length,
        "uniform_bits_per_item": sum(uniform),
        "histogram_bits_per_item": sum(histogram),
        "conditional": labels is not None,
        "layers": [{"layer": layer, "positions": list(shape), "codebook_size": k, "nll_bits": a,
                    "uniform_bits": b, "histogram_bits": c}
                   for layer, (shape, k, a, b, c) in enumerate(zip(layout.code_shapes, layout.codebook_sizes,
                                                                    nll, uniform, histogram))],
    }
