"""The autoregressive prior: a small causal transformer over a :class:`CodeLayout`'s tokens
(nanoGPT style: pre-LayerNorm blocks, causal self-attention, GELU MLP, learnt embeddings).

Input at position t (predicting token t): the embedding of token t−1 (position 0: a start
vector, one per class when class-conditional, plus one for "no class"), plus a learnt position
embedding of t and a learnt embedding of the layer that token t belongs to. Token embeddings are
per layer (layer l's K_l codes have their own rows), and the output head of layer l predicts
only that layer's K_l codes, so each position's distribution is over its own codebook.

Shapes, files and the registry: ``hqvae.priors.base``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from hqvae.priors.base import Block, KVCache, PriorBase, PriorConfig, register_prior


@register_prior("flat")
class CodePrior(PriorBase):
    """p(tokens | class) = Π_t p(token_t | tokens_<t, class) over a :class:`CodeLayout`, one
    causal sequence over all tokens (layers coarse to fine, raster order inside a layer)."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        config.validate()
        self.config = config
        layout = self.layout = config.layout
        d = config.d_model
        self.token_embedding = nn.Embedding(sum(layout.codebook_sizes), d)
        self.start = nn.Embedding(config.num_classes + 1, d)  # row num_classes: no class
        self.position_embedding = nn.Embedding(layout.length, d)
        self.layer_embedding = nn.Embedding(layout.num_layers, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, k) for k in layout.codebook_sizes)
        offsets = torch.tensor([0, *layout.codebook_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets[layout.layer_of()], persistent=False)  # (T,) per-token offset
        self.register_buffer("layer_ids", layout.layer_of(), persistent=False)  # (T,)
        self._init_weights(config.n_layer)

    def forward(self, tokens: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """tokens (B, T) -> logits, one (B, n_l, K_l) tensor per layer."""
        labels = self.check_labels(labels, tokens.shape[0], tokens.device)
        previous = self.token_embedding(tokens[:, :-1] + self.offsets[:-1])  # (B, T-1, d): inputs shifted by one
        x = torch.cat([self.start(labels)[:, None], previous], dim=1)
        x = self.drop(x + self.position_embedding.weight + self.layer_embedding(self.layer_ids))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return [head(part) for head, part in zip(self.heads, x.split(self.layout.lengths, dim=1))]

    def new_cache(self, batch: int) -> KVCache:
        return KVCache(self.config, self.config.n_layer, batch, self.layout.length, self.token_embedding.weight)

    def step(self, previous: Tensor | None, labels: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, K_l) of token t = cache.length given token t−1 (``previous`` (B,) long; None
        at t = 0) and the cache of tokens < t; advances the cache by one position."""
        t = cache.length
        x = self.start(labels) if t == 0 else self.token_embedding(previous + self.offsets[t - 1])
        x = (x + self.position_embedding.weight[t] + self.layer_embedding.weight[self.layer_ids[t]])[:, None]
        for index, block in enumerate(self.blocks):
            x = block.step(x, cache, index)
        cache.length = t + 1
        return self.heads[int(self.layer_ids[t])](self.ln_f(x[:, 0]))
