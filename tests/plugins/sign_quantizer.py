"""A quantizer kind from outside the package, in one file with one registration: "sign", binary
codes (each of the ``dim`` channels quantised to ±1, so K = 2^dim codes; index = Σ_c [z_c > 0]·2^c),
a commitment term β·‖z − sg(e)‖² (batch mean of per-item sums), no codebook to learn (the ±1
vectors are a buffer named ``weight``, as models ask of a codebook). Layers use it with
``LayerConfig(quantizer="sign", beta=...)``."""
from __future__ import annotations

import torch

from hqvae.quantizers import Quantizer, QuantizerOutput, register_quantizer
from hqvae.quantizers.base import code_counts, perplexity_of_counts, straight_through


class SignQuantizer(Quantizer):
    def __init__(self, dim: int, codebook_size: int, beta: float):
        super().__init__()
        if codebook_size != 2**dim:
            raise ValueError(f"a sign quantizer of dim {dim} has codebook_size {2**dim}, got {codebook_size}")
        self.dim, self.codebook_size, self.channel_last, self.beta = dim, codebook_size, False, beta
        bits = (torch.arange(codebook_size)[:, None] >> torch.arange(dim)) & 1  # (K, d)
        self.register_buffer("weight", bits.float() * 2 - 1)
        self.register_buffer("powers", 2 ** torch.arange(dim))

    @property
    def codebook(self) -> torch.Tensor:
        return self.weight

    def forward(self, z: torch.Tensor, return_probs: bool = False) -> QuantizerOutput:
        positive = z.movedim(1, -1) > 0  # (B, *S, d)
        indices = (positive.long() * self.powers).sum(-1)
        codes = self.embed(indices)
        commitment = self.beta * (z - codes.detach()).pow(2).sum() / z.shape[0]
        perplexity = perplexity_of_counts(code_counts(indices, self.codebook_size))
        return QuantizerOutput(straight_through(z, codes), indices, {"commitment": commitment},
                               {"perplexity": perplexity})


register_quantizer("sign", lambda layer: SignQuantizer(layer.dim, layer.codebook_size, layer.beta), options=["beta"])
