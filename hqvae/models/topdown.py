"""Top-down latent layers (SPEC §3): resolution groups of one injected and 0+ residual layers.

A ``ResolutionGroup`` owns the injected layer l at a new resolution and the residual layers
that refine it. With t the top-down state (``hidden`` channels) and h(x) the bottom-up feature
at this resolution:

    first group:   ẑ = g(h(x)),                     t = f(z_q)
    later groups:  ẑ = g([Up(t_prev), h(x)]),       t = f([Up(t_prev), z_q])       [·,·] = concat

z_q is ẑ quantised by the group's quantizer: the injected layer's own quantizer when the group
has one layer, else a ``ResidualQuantizer`` over the group (r_0 = ẑ, z_q,k = Q_k(r_{k−1}),
r_k = r_{k−1} − z_q,k, z_q = Σ_k z_q,k). Up is a transposed conv 4×4/2 per factor 2.
g and f are cheap: for the first group 1×1 convs (identities when hidden == d, which makes a
one-layer model exactly the plain encoder → quantizer → decoder network), for later groups a
3×3 conv followed by a residual block.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..quantizers.base import Quantizer, QuantizerOutput
from ..quantizers.registry import build_quantizer
from ..quantizers.residual import ResidualQuantizer
from .backbone import ResBlock, Upsample
from .config import LayerConfig

FILLS = ("mean", "zero")


class ResolutionGroup(nn.Module):
    """One resolution of the top-down path: ``layers`` (the injected layer first), ``hidden`` channels
    of state and feature, ``previous_factor`` the coarser group's downsampling (None for the first)."""

    def __init__(self, layers: list[LayerConfig], hidden: int, previous_factor: int | None, batch_norm: bool):
        super().__init__()
        self.factor = layers[0].downsample
        self.dim = layers[0].dim
        self.depth = len(layers)
        self.first = previous_factor is None
        if self.first:
            self.up = None
            self.merge_in = nn.Identity() if hidden == self.dim else nn.Conv2d(hidden, self.dim, 1)
            self.merge_out = nn.Identity() if hidden == self.dim else nn.Conv2d(self.dim, hidden, 1)
        else:
            self.up = Upsample(hidden, previous_factor // self.factor)
            self.merge_in = nn.Sequential(nn.Conv2d(2 * hidden, self.dim, 3, padding=1), ResBlock(self.dim, batch_norm))
            self.merge_out = nn.Sequential(
                nn.Conv2d(hidden + self.dim, hidden, 3, padding=1), ResBlock(hidden, batch_norm)
            )
        # the per-depth quantizers, depth 0 (the injected layer) first; registered through ``quantizer``
        self.quantizers: list[Quantizer] = [build_quantizer(layer) for layer in layers]
        self.quantizer = (self.quantizers[0] if self.depth == 1
                          else ResidualQuantizer(self.quantizers, shared_codebook=layers[0].shared_codebook))

    # ------------------------------------------------------------------ forward

    @property
    def stochastic(self) -> bool:
        return self.quantizers[0].stochastic

    def forward(
        self, state: Tensor | None, feature: Tensor, return_probs: bool = False
    ) -> tuple[Tensor, QuantizerOutput]:
        """(previous state (B, hidden, h', w') or None, feature (B, hidden, h, w))
        -> (new state (B, hidden, h, w), the quantizer's output on ẑ (B, d, h, w), its indices
        always (B, h, w, depth)). ``return_probs``: SQ groups also return their posteriors."""
        up = None if self.first else self.up(state)
        z = self.merge_in(feature if self.first else torch.cat([up, feature], dim=1))
        out = self.quantizer(z, return_probs=return_probs)
        if out.depths is None:  # a single quantizer: give its indices the depth dim too
            out.indices = out.indices.unsqueeze(-1)
        return self._merge_out(up, out.z_q), out

    def _merge_out(self, up: Tensor | None, z_q: Tensor) -> Tensor:
        # quantizers return channel-last strides; contiguous z_q keeps forward and decode on the
        # same convolution kernels, so that decode(encode(x)) reproduces the eval forward exactly
        z_q = z_q.contiguous()
        return self.merge_out(z_q if self.first else torch.cat([up, z_q], dim=1))

    def decode(self, state: Tensor | None, z_q: Tensor) -> Tensor:
        """The state update alone, t = f([Up(t_prev), z_q]), for a given quantised latent."""
        return self._merge_out(None if self.first else self.up(state), z_q)

    # ------------------------------------------------------------------ codes

    @staticmethod
    def split_indices(indices: Tensor) -> list[Tensor]:
        """Indices (B, h, w, depth) -> one (B, h, w) tensor per depth."""
        return [code.contiguous() for code in indices.unbind(dim=-1)]

    def embed(self, codes: list[Tensor], grid: tuple[int, int, int], fill: str) -> Tensor:
        """Quantised latent (B, d, h, w) from the codes of the first ``len(codes)`` depths, Σ_{k<m} e_k;
        with no code, ``fill`` at every position of ``grid`` = (B, h, w) (``HQVAE.embed_codes``)."""
        if codes:
            return sum(quantizer.embed(code) for quantizer, code in zip(self.quantizers, codes))
        batch, height, width = grid
        head = self.quantizers[0]
        device = head.weight.device
        if fill == "zero":
            return torch.zeros(batch, self.dim, height, width, device=device)
        expected = head.embed(torch.arange(head.codebook_size, device=device)).mean(dim=0)  # (d,)
        return expected.reshape(1, self.dim, 1, 1).expand(batch, -1, height, width)
