"""A prior kind from outside the package, in one file with one registration: "independent", every
token independent of the others, p(token_t) = softmax(w_t) with one learnt row of logits per
position (the rate of an ideal coder that knows each position's marginal). Trained with
``hqvae prior train ... model.kind=independent``."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from hqvae.priors import PriorBase, PriorConfig, register_prior


@register_prior("independent")
class IndependentPrior(PriorBase):
    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config, self.layout = config, config.layout
        self.logits = nn.ParameterList(nn.Parameter(torch.zeros(n, k))
                                       for n, k in zip(self.layout.lengths, self.layout.codebook_sizes))

    def forward(self, tokens: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """tokens (B, T) -> one (B, n_l, K_l) logits tensor per layer (the same for every item)."""
        self.check_labels(labels, tokens.shape[0], tokens.device)
        return [w.expand(tokens.shape[0], -1, -1) for w in self.logits]

    def new_cache(self, batch: int) -> SimpleNamespace:
        return SimpleNamespace(length=0)

    def step(self, previous: Tensor | None, labels: Tensor, cache: SimpleNamespace) -> Tensor:
        """Logits (B, K_l) of token t = cache.length; advances the cache."""
        layer = int(self.layout.layer_of()[cache.length])
        position = cache.length - sum(self.layout.lengths[:layer])
        cache.length += 1
        return self.logits[layer][position].expand(labels.shape[0], -1)
