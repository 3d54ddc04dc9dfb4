"""Token-by-token generation with the KV cache: sampling (temperature, top-k, top-p) and the
step loop that the entropy coder shares with it.

:func:`run_steps` runs a prior over T positions for a batch, calling ``choose(t, logits)`` at
each position to get the token (B,) to feed next: a sampler draws it, the compressor feeds the
known token, the decompressor decodes it from the stream. All three therefore compute the
distributions in exactly the same way.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from hqvae.priors.base import PriorBase


@torch.no_grad()
def run_steps(prior: PriorBase, labels: Tensor, choose: Callable[[int, Tensor], Tensor],
              steps: int | None = None) -> Tensor:
    """labels (B,) -> tokens (B, T) long (layer-major): the t-th generated token, token
    ``prior.order[t]`` of the sequence, is ``choose(t, logits_t)`` with logits_t (B, K_l) the
    prior's logits for it given the tokens chosen before. Only the first ``steps`` (default T)
    are run; the tokens not generated stay 0."""
    batch, length = labels.shape[0], prior.layout.length
    cache = prior.new_cache(batch)
    tokens = torch.zeros(batch, length, dtype=torch.long, device=labels.device)
    order = prior.order.tolist()
    previous = None
    for t in range(length if steps is None else steps):
        logits = prior.step(previous, labels, cache)
        previous = choose(t, logits).to(device=labels.device, dtype=torch.long)
        tokens[:, order[t]] = previous
    return tokens


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> Tensor:
    """logits (B, K) -> logits / temperature with all but the ``top_k`` largest and all outside the
    smallest set of probability mass ≥ ``top_p`` set to −inf (the most likely token always stays)."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p  # mass before this token already reaches top_p
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    return logits


@torch.no_grad()
def sample(prior: PriorBase, num: int, labels: Tensor | None = None, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0, batch_size: int = 64) -> Tensor:
    """``num`` token sequences (num, T) drawn from the prior (in batches), class ``labels`` (num,)
    or unconditional; reproducible for a given seed and batch size."""
    if not temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be ≥ 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top-p must lie in (0, 1], got {top_p}")
    device = next(prior.parameters()).device
    labels = prior.check_labels(labels, num, device)
    generator = torch.Generator(device=device).manual_seed(seed)

    def choose(t: int, logits: Tensor) -> Tensor:
        probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    starts = range(0, num, batch_size)
    return torch.cat([run_steps(prior, labels[start:start + batch_size], choose) for start in starts])
