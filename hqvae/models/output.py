"""The output contract of every model's forward pass."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutput:
    """What ``model(x)`` returns.

    x_hat: reconstruction, (B, C, H, W), in [0, 1].
    codes: one long index tensor per latent layer, coarse to fine, each (B, h_l, w_l);
        a residual group contributes one entry per depth. In training mode the codes of SQ
        layers are the argmax of the posterior (the decoder sees the relaxed sample).
    loss: scalar to minimise; ``loss == Σ_k terms[k]`` over every key except "mse".
    terms: the loss parts, detached: "recon" (the reconstruction term actually used),
        "mse" (mean squared error, for logging only, not part of the sum), and per layer l
        (0-based, as in ``codes``) "discrete/l", "continuous/l" (SQ layers; a residual SQ
        group's single continuous term is filed under its last layer), "commitment/l" and,
        for gradient-trained codebooks, "codebook/l" (VQ layers).
    logs: detached per-layer statistics: "perplexity/l" (of the batch's hard codes), and for
        SQ layers "entropy/l" (mean posterior entropy, nats) and "variance/l" (s²).
    """

    x_hat: Tensor
    codes: list[Tensor]
    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, Tensor] = field(default_factory=dict)
