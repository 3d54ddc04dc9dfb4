"""Progressive quantisation of global vectors into an ordered token sequence (SPEC §4).

Input: G global vectors per item, ``z`` of shape (B, G, D_g). For steps l = 1..L:

    r_0 = z
    u_l = normalize(W_in,l r_{l−1})              (B, G, d_c)   factorised codewords
    logits_l,k = κ_l · ⟨u_l, ê_l,k⟩               (B, G, K)     ê = e / ||e||, κ_l = exp(log κ_l)
    q_l = softmax(logits_l)                                      posterior over the step's codebook
    SQ, training:  w = softmax((log q_l + g) / τ), g ~ Gumbel(0, 1);   c_l = Σ_k w_k ê_l,k
    SQ, eval:      c_l = ê_l,k*,  k* = argmax_k logits_l,k
    z_l = W_out,l c_l                             (B, G, D_g)   the token's code image
    r_l = r_{l−1} − z_l

and the decoder reads Σ_{l≤m} z_l. Every step and group has its own codebook E_l ∈ R^{K×d_c}
and its own maps W_in,l (D_g → d_c) and W_out,l (d_c → D_g), all without bias.

Raw codewords (``code_dim`` None/0, SQ only) **(choice)**: no projections; logits
κ_l·cos(r_{l−1}, e_l,k) and the code image is e_l,k itself (its norm is learnt; the cosine keeps
the softmax from saturating at initialisation, which Gaussian distances in D_g dims would do).

VQ steps (the "global residual VQ" control, factorised codewords only): k* = argmax_k ⟨u_l, ê_l,k⟩
(the nearest normalised code), c_l = u_l + sg(ê_l,k* − u_l) (straight-through in code space), and
per item Σ_{l,g} β·||u_l − sg(ê_l,k*)||² (commitment) + ||sg(u_l) − ê_l,k*||² (codebook),
batch mean (SPEC §1.1, gradient-trained codebook: the factorised-code recipe of ViT-VQGAN).

All of it runs in float32 even under autocast (distances, softmax, entropies: SPEC §1.2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import fp32_island, l2_normalize, straight_through, upcast
from .relaxed import gumbel_noise
from .sq import StochasticQuantizer


@dataclass
class ProgressiveOutput:
    """images: (B, L, G, D_g) code images z_l (the relaxed mixture in SQ training).
    tokens: (B, L, G) long, the argmax / nearest codes.
    log_probs: (B, L, G, K) float32 log q_l (SQ), or None (VQ).
    commitment, codebook_loss: VQ scalars (batch means of per-item sums), or None (SQ)."""

    images: Tensor
    tokens: Tensor
    log_probs: Tensor | None = None
    commitment: Tensor | None = None
    codebook_loss: Tensor | None = None


class ProgressiveQuantizer(nn.Module):
    """L steps of residual quantisation of (B, G, D_g) vectors (module docstring).

    Args:
        depth: L.   groups: G.   group_size: D_g.   codebook_size: K.
        code_dim: d_c of factorised codewords; None or 0 for raw codewords in R^{D_g} (SQ only,
            checked by ``PQConfig.validate``).
        quantizer: "sq" or "vq".
        logit_scale: initial κ (SQ).
        beta: VQ commitment weight.
    """

    def __init__(
        self,
        depth: int,
        groups: int,
        group_size: int,
        codebook_size: int,
        code_dim: int | None,
        quantizer: str = "sq",
        logit_scale: float = 10.0,
        beta: float = 0.25,
    ):
        super().__init__()
        self.depth = depth
        self.groups = groups
        self.factorised = bool(code_dim)
        self.stochastic = quantizer == "sq"
        self.beta = beta
        width = code_dim if self.factorised else group_size
        if self.factorised:
            # one bias-free linear map per step and group, PyTorch's nn.Linear initialisation range
            self.project_in = nn.Parameter(_uniform((depth, groups, group_size, width), group_size))
            self.project_out = nn.Parameter(_uniform((depth, groups, width, group_size), width))
            self.weight = nn.Parameter(torch.randn(depth, groups, codebook_size, width))
        else:  # raw code images start at the scale of a unit-norm vector
            self.weight = nn.Parameter(torch.randn(depth, groups, codebook_size, width) / math.sqrt(width))
        if self.stochastic:
            self.log_scale = nn.Parameter(torch.full((depth,), math.log(logit_scale)))
        self.temperature = 1.0

    # ------------------------------------------------------------------ vocabulary

    set_temperature = StochasticQuantizer.set_temperature  # τ of the SQ steps' training samples

    def scale(self) -> Tensor:
        """κ_l, (L,) float32."""
        return upcast(self.log_scale).exp()

    def code_vectors(self, step: int) -> Tensor:
        """(G, K, d) the vectors a token of ``step`` stands for in code space: ê (factorised), e (raw)."""
        codebook = upcast(self.weight[step])
        return l2_normalize(codebook) if self.factorised else codebook

    def to_latent(self, step: int, vectors: Tensor) -> Tensor:
        """Code-space vectors (B, G, d) -> code images (B, G, D_g): W_out,l c (factorised) or c (raw)."""
        if not self.factorised:
            return vectors
        return torch.einsum("bgd,gdn->bgn", vectors, upcast(self.project_out[step]))

    def code_image(self, step: int, tokens: Tensor) -> Tensor:
        """tokens (B, G) long -> code images z_l (B, G, D_g) of ``step``, as eval mode makes them."""
        with fp32_island(tokens.device):
            vectors = self.code_vectors(step)[torch.arange(self.groups, device=tokens.device), tokens]
            return self.to_latent(step, vectors)

    # ------------------------------------------------------------------ forward

    def forward(self, z: Tensor) -> ProgressiveOutput:
        """z (B, G, D_g) -> ProgressiveOutput (training: relaxed SQ sample / straight-through VQ)."""
        with fp32_island(z.device):
            residual = upcast(z)
            images, tokens, log_probs, commitment, codebook_loss = [], [], [], [], []
            for step in range(self.depth):
                query = residual  # normalize(W_in,l r) (factorised) or normalize(r) (raw): (B, G, d)
                if self.factorised:
                    query = torch.einsum("bgn,gnd->bgd", residual, upcast(self.project_in[step]))
                query = l2_normalize(query)
                codes = l2_normalize(upcast(self.weight[step]))  # (G, K, d)
                similarity = torch.einsum("bgd,gkd->bgk", query, codes)  # cosines, (B, G, K)
                chosen = similarity.argmax(-1)  # (B, G)
                if self.stochastic:
                    log_q = torch.log_softmax(self.scale()[step] * similarity, dim=-1)
                    log_probs.append(log_q)
                    if self.training:
                        noise = gumbel_noise(tuple(log_q.shape), log_q.dtype, log_q.device)
                        sample = torch.softmax((log_q + noise) / self.temperature, dim=-1)
                        image = self.to_latent(step, torch.einsum("bgk,gkd->bgd", sample, self.code_vectors(step)))
                    else:
                        image = self.code_image(step, chosen)
                else:
                    selected = codes[torch.arange(self.groups, device=z.device), chosen]  # (B, G, d)
                    commitment.append(self.beta * (query - selected.detach()).pow(2).sum((1, 2)).mean())
                    codebook_loss.append((query.detach() - selected).pow(2).sum((1, 2)).mean())
                    image = self.to_latent(step, straight_through(query, selected) if self.training else selected)
                images.append(image)
                tokens.append(chosen)
                residual = residual - image
        return ProgressiveOutput(
            images=torch.stack(images, dim=1),
            tokens=torch.stack(tokens, dim=1),
            log_probs=torch.stack(log_probs, dim=1) if self.stochastic else None,
            commitment=torch.stack(commitment).sum() if not self.stochastic else None,
            codebook_loss=torch.stack(codebook_loss).sum() if not self.stochastic else None,
        )


def _uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)
