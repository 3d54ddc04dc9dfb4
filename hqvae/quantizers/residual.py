"""Residual stacks of quantizers on one resolution: RQ-VAE (VQ layers) and RSQ-VAE (SQ layers) — SPEC §3.

    r_0 = ẑ,     z_q,l = Q_l(r_{l−1}),     r_l = r_{l−1} − z_q,l,     output Σ_l z_q,l

VQ stacks: each layer's loss (commitment, codebook term) is on its own residual, residuals are
formed with the hard codes (``sg``), and the output is one straight-through estimate
ẑ + sg(Σ_l e_l − ẑ), so the encoder gradient is not multiplied by the depth.

SQ stacks: every layer contributes its discrete term (logits with its own s_l²); residuals use
the soft sample in training and the hard code at test, with no stop-gradient; the continuous
term is computed once, over the whole stack, as ||ẑ − Σ_l z_q,l||² / (2 Σ_l s_l²).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .base import Quantizer, QuantizerOutput


class ResidualQuantizer(nn.Module):
    """A depth-L stack of one-layer quantizers of one kind (all VectorQuantizer or all
    StochasticQuantizer); each layer's kind says what the stack subtracts, which loss terms the
    stack adds and what it outputs (the ``Quantizer`` methods).

    Args:
        layers: the quantizers, coarse to fine; all of the same kind, dim and layout.
        shared_codebook: share the first layer's codebook with every layer (as RQ-VAE does).
            For EMA codebooks each depth then contributes its own EMA step, as in
            vector-quantize-pytorch's shared ResidualVQ.
    """

    def __init__(self, layers: Sequence[Quantizer], shared_codebook: bool = False):
        super().__init__()
        if len(layers) == 0:
            raise ValueError("a residual stack needs at least one layer")
        kinds = {type(layer) for layer in layers}
        if len(kinds) != 1 or not all(isinstance(layer, Quantizer) for layer in layers):
            raise ValueError(f"layers must be one-layer quantizers of one kind, got {sorted(k.__name__ for k in kinds)}")
        first = layers[0]
        for layer in layers:
            if layer.dim != first.dim or layer.channel_last != first.channel_last:
                raise ValueError("all layers of a residual stack need the same dim and channel_last")
            layer.check_stackable()
        self.layers = nn.ModuleList(layers)
        if shared_codebook:
            for layer in self.layers[1:]:
                if layer.codebook_size != first.codebook_size:
                    raise ValueError("a shared codebook needs the same codebook_size in every layer")
                layer.share_codebook(first)
        self.stochastic = first.stochastic
        self.dim = first.dim
        self.channel_last = first.channel_last

    @property
    def depth(self) -> int:
        return len(self.layers)

    def set_temperature(self, temperature: float, hard: bool = False) -> None:
        for layer in self.layers:
            layer.set_temperature(temperature, hard)

    def embed(self, indices: Tensor, upto: int | None = None) -> Tensor:
        """(B, *S, depth) codes -> Σ_{l<upto} e_l in the input layout."""
        upto = self.depth if upto is None else upto
        if indices.shape[-1] < upto:
            raise ValueError(f"indices have depth {indices.shape[-1]}, cannot embed the first {upto} layers")
        return sum(self.layers[l].embed(indices[..., l]) for l in range(upto))

    def forward(self, z: Tensor, return_partial_sums: bool = False, return_probs: bool = False) -> QuantizerOutput:
        """z in the layers' layout -> QuantizerOutput with indices (B, *S, depth), ``depths`` (each
        depth's own output) and the stack's own ``losses``. ``return_probs``: SQ stacks also
        return every depth's posterior in eval mode."""
        residual = z
        total = torch.zeros_like(z)
        partial_sums, depths = [], []
        for layer in self.layers:
            out = layer.forward_in_stack(residual, return_probs=return_probs)
            step = layer.residual_step(out)
            residual = residual - step
            total = total + step
            depths.append(out)
            if return_partial_sums:
                partial_sums.append(layer.stack_output(z, total))

        first = self.layers[0]
        probs = [out.probs for out in depths]
        return QuantizerOutput(
            z_q=first.stack_output(z, total),
            indices=torch.stack([out.indices for out in depths], dim=-1),
            losses=first.stack_losses(list(self.layers), z, total),
            probs=probs if any(p is not None for p in probs) else None,
            partial_sums=partial_sums if return_partial_sums else None,
            depths=depths,
        )
