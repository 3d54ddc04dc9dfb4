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

from .base import QuantizerOutput, flatten_latents, fp32_island, straight_through, upcast
from .sq import StochasticQuantizer
from .vq import VectorQuantizer


class ResidualQuantizer(nn.Module):
    """A depth-L stack of VectorQuantizer or StochasticQuantizer layers (not mixed).

    Args:
        layers: the quantizers, coarse to fine; all of the same kind, dim and layout.
        shared_codebook: share the first layer's codebook with every layer (as RQ-VAE does).
            For EMA codebooks each depth then contributes its own EMA step, as in
            vector-quantize-pytorch's shared ResidualVQ.
    """

    def __init__(self, layers: Sequence[nn.Module], shared_codebook: bool = False):
        super().__init__()
        if len(layers) == 0:
            raise ValueError("a residual stack needs at least one layer")
        kinds = {type(layer) for layer in layers}
        if len(kinds) != 1 or not kinds <= {VectorQuantizer, StochasticQuantizer}:
            raise ValueError(f"layers must be all VectorQuantizer or all StochasticQuantizer, got {sorted(k.__name__ for k in kinds)}")
        first = layers[0]
        for layer in layers[1:]:
            if layer.dim != first.dim or layer.channel_last != first.channel_last:
                raise ValueError("all layers of a residual stack need the same dim and channel_last")
        self.stochastic = isinstance(first, StochasticQuantizer)
        if self.stochastic and any(layer.is_vmf or layer.needs_log_var for layer in layers):
            raise ValueError("residual SQ stacks take gaussian_1 layers (vMF residuals are not defined)")
        self.layers = nn.ModuleList(layers)
        self.shared_codebook = shared_codebook
        if shared_codebook:
            for layer in self.layers[1:]:
                if layer.codebook_size != first.codebook_size:
                    raise ValueError("a shared codebook needs the same codebook_size in every layer")
                if isinstance(first.weight, nn.Parameter):
                    layer.weight = first.weight
                    layer.owns_codebook = False  # SQ data init: depth 0 fills the shared codebook
                else:  # EMA buffers: the same tensors, updated by every depth
                    for name in ("weight", "weight_avg", "cluster_size", "initialized"):
                        setattr(layer, name, getattr(first, name))
        self.dim = first.dim
        self.channel_last = first.channel_last

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def codebook(self) -> Tensor:
        """(K, d) codebook of the first layer (every layer's when shared); see ``codebooks``."""
        return self.layers[0].codebook

    @property
    def codebooks(self) -> list[Tensor]:
        return [layer.codebook for layer in self.layers]

    def set_temperature(self, temperature: float) -> None:
        for layer in self.layers:
            if isinstance(layer, StochasticQuantizer):
                layer.set_temperature(temperature)

    def embed(self, indices: Tensor, upto: int | None = None) -> Tensor:
        """(B, *S, depth) codes -> Σ_{l<upto} e_l in the input layout."""
        upto = self.depth if upto is None else upto
        if indices.shape[-1] < upto:
            raise ValueError(f"indices have depth {indices.shape[-1]}, cannot embed the first {upto} layers")
        return sum(self.layers[l].embed(indices[..., l]) for l in range(upto))

    def forward(self, z: Tensor, return_partial_sums: bool = False, return_probs: bool = False) -> QuantizerOutput:
        """``return_probs``: SQ stacks also return every depth's posterior in eval mode."""
        residual = z
        total = torch.zeros_like(z)
        partial_sums, indices, probs = [], [], []
        loss = z.new_zeros((), dtype=torch.float32)
        logs: dict[str, Tensor] = {}
        for depth, layer in enumerate(self.layers):
            if self.stochastic:
                out = layer(residual, continuous_loss=False, return_probs=return_probs)
                step = out.z_q  # soft mixture in training, hard code in eval
                probs.append(out.probs)
            else:
                out = layer(residual)
                step = layer.embed(out.indices).detach()  # the hard code
            residual = residual - step
            total = total + step
            loss = loss + out.loss
            indices.append(out.indices)
            for key, value in out.logs.items():
                logs[f"{key}/{depth}"] = value
            if return_partial_sums:
                partial_sums.append(self._output(z, total))

        if self.stochastic:
            continuous = self._continuous_term(z, total)
            loss = loss + continuous
            logs["continuous"] = continuous.detach()
        return QuantizerOutput(
            z_q=self._output(z, total),
            indices=torch.stack(indices, dim=-1),
            loss=loss,
            logs=logs,
            probs=probs if self.stochastic and any(p is not None for p in probs) else None,
            partial_sums=partial_sums if return_partial_sums else None,
        )

    def _output(self, z: Tensor, total: Tensor) -> Tensor:
        """SQ: the sum itself. VQ: straight-through ẑ + sg(Σ e − ẑ)."""
        return total if self.stochastic else straight_through(z, total)

    def _continuous_term(self, z: Tensor, total: Tensor) -> Tensor:
        """Batch mean of Σ_rows ||ẑ − Σ_l z_q,l||² / (2 Σ_l s_l²)."""
        with fp32_island(z.device):
            summed_variance = sum(layer.variance() for layer in self.layers)
            diff, _ = flatten_latents(upcast(z - total), self.dim, self.channel_last)
            return (diff.pow(2) * (0.5 / summed_variance)).sum() / z.shape[0]
