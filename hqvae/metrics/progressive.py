"""Analyses of progressive codes (SPEC §4–5): token statistics and linear probes on prefix
features (the rate–distortion curve over prefixes is ``hqvae.evaluate``'s "coarse_to_fine").

Every function takes ``data`` as an :class:`~hqvae.data.ImageDataset` (batched here, in order)
or any iterable of ``(x, y)`` batches (or bare x), runs the model in eval mode without
gradients (deterministic quantisation) and returns plain JSON-ready values.

A *prefix of m* is the first m layers of a model's codes (``hqvae.models.base``), coarse to
fine, Σ_{l≤m} n_l·log2 K_l bits per item (n_l code positions of layer l), decoded with
``decode(codes, upto=m)``: for a PQ-VAE the steps l ≤ m of every group (Σ_{l≤m} z_l), for a
residual stack (``rsqvae`` / ``rqvae``) the partial sum of its first m layers.

Entropies are reported in bits.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hqvae.data.loader import batches
from hqvae.metrics.linear_probe import fit_linear_probe
from hqvae.quantizers.base import entropy

LOG2 = math.log(2.0)


def probe_lengths(steps: int) -> list[int]:
    """The prefix lengths a probe is fitted at by default: 1, 2, 4, ... and ``steps`` itself."""
    return sorted({1 << i for i in range(steps.bit_length())} | {steps})


def prefix_bits(model: nn.Module, m: int, codes: Sequence[Tensor]) -> float:
    """Nominal bits per item of a prefix of m layers of one batch of ``codes`` (from ``encode``)."""
    return sum(code[0].numel() * math.log2(k) for code, k in zip(codes[:m], model.codebook_sizes))


@torch.no_grad()
def prefix_features(model: nn.Module, codes: list, m: int) -> Tensor:
    """Decoder-input partial sums of a prefix of m as flat features (N, F), every batch of ``codes``
    (``encode``'s outputs) in turn: Σ_{l≤m} z_l (PQ-VAE: (N, c·h·w)); for HQ-VAE models each
    resolution group's quantised latent, flattened and concatenated (missing injected layers
    filled with the codebook mean)."""
    device = next(model.parameters()).device
    features = []
    for batch in codes:
        latents = model.embed_codes([code.to(device) for code in batch], upto=m)
        latents = [latents] if isinstance(latents, Tensor) else latents
        features.append(torch.cat([latent.flatten(1) for latent in latents], dim=1).cpu())
    return torch.cat(features)


@torch.no_grad()
def token_statistics(model: nn.Module, data: Any, batch_size: int = 256) -> dict:
    """Dataset-level statistics of every token (step l, group g) of a model that supports
    "token_statistics" (a PQ-VAE), in bits:

    * ``perplexity``: exp(H(p)) of the histogram p of hard tokens over the data; ``usage``: the
      fraction of the K codes used; ``code_entropy_bits``: H(p);
    * SQ steps: ``cond_entropy_bits`` E_x H(q(z_l | x, z_<l)), ``marginal_entropy_bits``
      H(E_x q(z_l | ·)) and the plug-in mutual information ``mi_bits`` = marginal − conditional
      (q as the eval-mode model computes it: the posterior given x and the earlier hard tokens).

    Returns {"tokens": [per-token dicts with step and group], "steps": per step, values summed
    over groups (perplexity and usage averaged), "total": summed over all tokens, plus
    ``nominal_bits`` L·G·log2 K and ``items``}.
    """
    if not model.supports("token_statistics"):
        raise ValueError(f"token statistics need per-step token posteriors, which a {model.config.name!r} model "
                         f"does not have (PQ-VAE models do); use hqvae.evaluate's information per layer instead")
    device = next(model.parameters()).device
    depth, groups, size = model.config.depth, model.config.groups, model.config.codebook_size
    counts = torch.zeros(depth, groups, size, dtype=torch.float64)
    prob_sum = torch.zeros(depth, groups, size, dtype=torch.float64)
    entropy_sum = torch.zeros(depth, groups, dtype=torch.float64)
    items = 0
    for x, _ in batches(data, batch_size):
        out = model.token_posteriors(x.to(device).float())
        counts += torch.nn.functional.one_hot(out.tokens, size).sum(0).double().cpu()
        if out.log_probs is not None:
            probs = out.log_probs.exp()
            prob_sum += probs.sum(0).double().cpu()
            entropy_sum += entropy(probs).sum(0).double().cpu()
        items += x.shape[0]
    if not items:
        raise ValueError("the data set is empty")

    code_entropy = entropy(counts / items) / LOG2  # (L, G)
    per_token = {
        "perplexity": torch.exp2(code_entropy),
        "usage": (counts > 0).double().mean(-1),
        "code_entropy_bits": code_entropy,
    }
    if model.stochastic:
        conditional = entropy_sum / items / LOG2
        marginal = entropy(prob_sum / items) / LOG2
        per_token.update(cond_entropy_bits=conditional, marginal_entropy_bits=marginal, mi_bits=marginal - conditional)

    tokens = [{"step": l, "group": g, **{key: float(value[l, g]) for key, value in per_token.items()}}
              for l in range(depth) for g in range(groups)]
    averaged = ("perplexity", "usage")
    steps = [{"step": l, **{key: float(value[l].mean() if key in averaged else value[l].sum())
                            for key, value in per_token.items()}} for l in range(depth)]
    total = {key: float(value.sum()) for key, value in per_token.items() if key not in averaged}
    return {"tokens": tokens, "steps": steps, "total": total, "nominal_bits": model.bits(), "items": items}


@torch.no_grad()
def _codes_and_labels(model: nn.Module, data: Any, batch_size: int) -> tuple[list, Tensor]:
    """Every batch's codes (on the CPU) and all labels (N,)."""
    device = next(model.parameters()).device
    codes, labels = [], []
    for x, y in batches(data, batch_size):
        if y is None:
            raise ValueError("the linear probe needs labelled data: (x, y) batches")
        codes.append([code.cpu() for code in model.encode(x.to(device).float())])
        labels.append(y.cpu().long())
    if not labels:
        raise ValueError("the data set is empty")
    return codes, torch.cat(labels)


def linear_probe(model: nn.Module, train_data: Any, test_data: Any, prefix_lengths: Iterable[int] | None = None,
                 batch_size: int = 256, l2: float = 1e-4) -> list[dict]:
    """Logistic-regression accuracy on frozen prefix features (``prefix_features``: the decoder
    input Σ_{l≤m} z_l, standardised; ``hqvae.metrics.linear_probe``), fitted on ``train_data`` and
    scored on both sets. ``prefix_lengths`` defaults to 1..L.

    Returns one dict per m: {prefix_len, bits, train_accuracy, test_accuracy, chance} where
    chance is the test frequency of the most common training class.
    """
    steps = model.num_layers
    lengths = list(range(1, steps + 1)) if prefix_lengths is None else list(prefix_lengths)
    if any(not 1 <= m <= steps for m in lengths):
        raise ValueError(f"prefix lengths must lie in 1..{steps}, got {lengths}")
    train_codes, train_labels = _codes_and_labels(model, train_data, batch_size)
    test_codes, test_labels = _codes_and_labels(model, test_data, batch_size)
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    majority = int(torch.bincount(train_labels, minlength=classes).argmax())
    chance = float((test_labels == majority).float().mean())
    results = []
    for m in lengths:
        train_features = prefix_features(model, train_codes, m)
        probe = fit_linear_probe(train_features, train_labels, classes, l2=l2)
        results.append({
            "prefix_len": m,
            "bits": prefix_bits(model, m, train_codes[0]),
            "train_accuracy": probe.accuracy(train_features, train_labels),
            "test_accuracy": probe.accuracy(prefix_features(model, test_codes, m), test_labels),
            "chance": chance,
        })
    return results
