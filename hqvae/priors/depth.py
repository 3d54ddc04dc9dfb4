"""An RQ-Transformer-style prior for codes whose layers share one grid (residual stacks: rqvae,
rsqvae, or PQ-VAE steps): a spatial transformer over the P positions and a small depth transformer
over the D codes of each position (Lee et al., 2022, "Autoregressive image generation using
residual quantization").

Spatial input at position p: the start vector (class) for p = 0, else the sum of the D code
embeddings at position p − 1 (each depth has its own embedding table); plus a position embedding.
Its output h_p starts the depth sequence [h_p, e_0(c_{p,0}), ..., e_{D−2}(c_{p,D−2})] (plus depth
embeddings), whose causal depth transformer predicts c_{p,0..D−1}, each over its own K_d.
A sequence of T = P·D tokens costs P spatial steps instead of P·D.

The tokens stay in the layout's layer-major order (B, T) for ``forward`` and the NLL; generation
(``step``) goes position by position, all depths of a position in turn (``order``).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from hqvae.priors.base import Block, KVCache, PriorBase, PriorConfig, register_prior


@register_prior("depth")
class DepthPrior(PriorBase):
    """p(codes | class) factorised over positions (spatial transformer) and, within a position,
    over depths (depth transformer); see the module docstring."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        config.validate()
        layout = config.layout
        if len(set(layout.code_shapes)) != 1:
            raise ValueError(f"model.kind=depth needs code layers that share one grid (a residual stack such as rqvae "
                             f"or rsqvae, or PQ-VAE steps); this run's layers are {layout.describe()}; use "
                             f"model.kind=flat")
        self.config, self.layout = config, layout
        self.depth, self.positions = layout.num_layers, layout.lengths[0]
        d = config.d_model
        self.token_embedding = nn.ModuleList(nn.Embedding(k, d) for k in layout.codebook_sizes)
        self.start = nn.Embedding(config.num_classes + 1, d)
        self.position_embedding = nn.Embedding(self.positions, d)
        self.depth_embedding = nn.Embedding(self.depth, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_spatial = nn.LayerNorm(d)
        self.depth_blocks = nn.ModuleList(Block(config) for _ in range(config.depth_layers))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, k) for k in layout.codebook_sizes)
        self._init_weights(config.n_layer + config.depth_layers)

    @property
    def order(self) -> Tensor:
        """Position-major: (p, d) is token d·P + p of the layer-major sequence."""
        return (torch.arange(self.depth)[None, :] * self.positions + torch.arange(self.positions)[:, None]).reshape(-1)

    def forward(self, tokens: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """tokens (B, T) layer-major -> logits, one (B, P, K_d) tensor per depth d."""
        batch = tokens.shape[0]
        labels = self.check_labels(labels, batch, tokens.device)
        codes = tokens.view(batch, self.depth, self.positions)
        embedded = [table(codes[:, d]) for d, table in enumerate(self.token_embedding)]  # D × (B, P, d)
        summed = torch.stack(embedded, 0).sum(0)
        x = torch.cat([self.start(labels)[:, None], summed[:, :-1]], dim=1) + self.position_embedding.weight
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        h = self.ln_spatial(x)  # (B, P, d)
        sequence = torch.stack([h, *embedded[:-1]], dim=2) + self.depth_embedding.weight  # (B, P, D, d)
        sequence = self.drop(sequence.reshape(batch * self.positions, self.depth, -1))
        for block in self.depth_blocks:
            sequence = block(sequence)
        out = self.ln_f(sequence).view(batch, self.positions, self.depth, -1)
        return [head(out[:, :, d]) for d, head in enumerate(self.heads)]

    def new_cache(self, batch: int) -> SimpleNamespace:
        """Generation state: the spatial KV cache (P positions), the depth KV cache of the current
        position (D steps), the sum of the current position's code embeddings, the step count."""
        config, like = self.config, self.position_embedding.weight
        return SimpleNamespace(spatial=KVCache(config, config.n_layer, batch, self.positions, like),
                               depth=KVCache(config, config.depth_layers, batch, self.depth, like),
                               summed=like.new_zeros(batch, config.d_model), length=0)

    def step(self, previous: Tensor | None, labels: Tensor, cache: SimpleNamespace) -> Tensor:
        """Logits (B, K_d) of the token at generation step t = cache.length (position t // D,
        depth t % D) given the previous token of the generation order; advances the cache."""
        t = cache.length
        position, depth = divmod(t, self.depth)
        if depth == 0:
            x = self.start(labels) if position == 0 else cache.summed + self.token_embedding[-1](previous)
            x = (x + self.position_embedding.weight[position])[:, None]
            cache.spatial.length = position
            for index, block in enumerate(self.blocks):
                x = block.step(x, cache.spatial, index)
            y = self.ln_spatial(x[:, 0])
            cache.summed = torch.zeros_like(cache.summed)
        else:
            y = self.token_embedding[depth - 1](previous)
            cache.summed = cache.summed + y
        y = (y + self.depth_embedding.weight[depth])[:, None]
        cache.depth.length = depth
        for index, block in enumerate(self.depth_blocks):
            y = block.step(y, cache.depth, index)
        cache.length = t + 1
        return self.heads[depth](self.ln_f(y[:, 0]))
