"""PQ-VAE: progressive quantisation of a global latent vector into an ordered 1-D token sequence.

    x ─ Encoder ─▶ f (B, c, h, w) ─ flatten ─▶ z (B, G, c·h·w/G) ─ L residual steps ─▶ L × tokens (B, G)
                                               Σ_{l≤m} z_l ─ reshape (B, c, h, w) ─ Decoder ─▶ x̂

(``hqvae.quantizers.progressive`` has the token math.) ``encode`` gives one (B, G) token tensor
per step, and the first m steps decode to a coarse reconstruction at m·G·log2 K bits.

Loss (SPEC §4), every part a batch mean of per-item values:

    loss = recon(x̂_L)                                              "recon"
         + λ_pre · recon(x̂_m),  m ~ U{1..L} per item                "prefix_recon"
         + λ_h · sign · Σ_l Σ_g E_batch H(q_l,g)                    "cond_entropy"    sign = +1 "pq", −1 "elbo"
         − λ_h · γ · Σ_l Σ_g H(E_batch q_l,g)                       "marginal_entropy"
         + Σ_l Σ_g β·||u − sg(ê)||² + ||sg(u) − ê||²               "commitment", "codebook"   (VQ only)

``terms`` holds each weighted part, so ``loss == Σ terms`` over every key but "mse" (as for
HQ-VAE); the unweighted entropies (nats per item) are in ``logs``. In eval mode the prefix
lengths are the deterministic stratification m_b = 1 + (b mod L) over the batch **(choice)**,
so that validation losses are reproducible.

Reconstruction (``recon_loss``, ``base.reconstruction``) **(choice, measured: see
benchmarks/results/pqvae-*.md)**: "sse" Σ_pixels (x̂ − x)² per item (default), "arelbo"
(D/2)·log(mean_batch Σ_pixels (x̂ − x)²) (SPEC §2), or "mse".
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..quantizers.base import code_counts, fp32_island, perplexity_of_counts
from .backbone import Decoder, Encoder, init_weights
from .base import DiscreteAutoencoder, ModelOutput, as_pair, evaluating, reconstruction
from .config import PQConfig
from ..quantizers.progressive import ProgressiveOutput, ProgressiveQuantizer


def entropy_terms(log_probs: Tensor) -> tuple[Tensor, Tensor]:
    """log q (B, L, G, K) -> per step (L,): conditional entropy Σ_g mean_b H(q_b,l,g) and marginal
    entropy Σ_g H(mean_b q_b,l,g), in nats. ``log_probs`` must be finite (as log_softmax of
    finite logits is), so that q·log q is 0, not NaN, where q underflows to 0; likewise the
    marginal's log is floored at 1e-30, so that a code no item can pick has a finite gradient."""
    probs = log_probs.exp()
    conditional = -(probs * log_probs).sum(-1).mean(0).sum(-1)
    marginal_probs = probs.mean(0)
    marginal = -(marginal_probs * marginal_probs.clamp_min(1e-30).log()).sum(-1).sum(-1)
    return conditional, marginal


class PQVAE(DiscreteAutoencoder):
    """PQ-VAE built from a ``PQConfig`` (see ``config.py``); inputs (B, in_channels, H, W) with
    (H, W) = ``config.image_size``. Its layers are its L steps: ``encode`` gives one (B, G) token
    tensor per step, and the first m of them decode to the coarse reconstruction Σ_{l≤m} z_l."""

    config_class = PQConfig
    capabilities = frozenset({"token_statistics"})

    def __init__(self, config: PQConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = Encoder(config.in_channels, config.hidden, [config.downsample], config.num_res_blocks,
                               config.batch_norm)
        self.to_latent = nn.Conv2d(config.hidden, config.dim, 1)
        self.quantizer = ProgressiveQuantizer(config.depth, config.groups, config.group_size,
                                              config.codebook_size, config.code_dim, config.quantizer,
                                              config.logit_scale, config.beta)
        self.from_latent = nn.Conv2d(config.dim, config.hidden, 1)
        self.decoder = Decoder(config.hidden, config.in_channels, config.downsample, config.num_res_blocks,
                               config.batch_norm)
        if config.init_std is not None:
            init_weights(self, config.init_std)

    # ------------------------------------------------------------------ description

    def code_shapes(self, image_size: int | Sequence[int] | None = None) -> list[tuple[int]]:
        """(G,) per step: the shape of each entry of ``ModelOutput.codes`` without the batch dim.
        ``image_size`` must be the configured size if given (the token layout depends on it)."""
        if image_size is not None and as_pair(image_size) != tuple(self.config.image_size):
            raise ValueError(f"a PQ-VAE takes {self.config.image_size} inputs only, got {image_size}")
        return [(self.config.groups,)] * self.config.depth

    def set_temperature(self, temperature: float, hard: bool = False) -> None:
        """Gumbel temperature τ of the SQ steps (ignored by VQ steps); PQ-VAE has no ``hard`` variant."""
        if hard:
            raise ValueError("temperature.hard_from applies to HQ-VAE models' SQ layers, not to PQ-VAE")
        self.quantizer.set_temperature(temperature)

    # ------------------------------------------------------------------ training forward

    def forward(self, x: Tensor) -> ModelOutput:
        """x (B, C, H, W) in [0, 1] -> ModelOutput: x̂ from all L steps, codes (one (B, G) tensor
        per step), loss and its parts (module docstring)."""
        self.check_input(x)
        config = self.config
        out = self.quantizer(self.global_vectors(x))
        x_hat = self.decode_latents(self._latent(out.images.sum(1)))
        recon, mse = reconstruction(x_hat, x, config.recon_loss)
        terms = {"recon": recon, "prefix_recon": torch.zeros_like(recon)}
        if config.lambda_prefix:
            prefix = self._prefix_mask(x.shape[0], x.device)  # (B, L)
            x_prefix = self.decode_latents(self._latent((out.images * prefix[:, :, None, None]).sum(1)))
            terms["prefix_recon"] = config.lambda_prefix * reconstruction(x_prefix, x, config.recon_loss)[0]
        logs = self._statistics(out)
        if self.stochastic:
            conditional, marginal = entropy_terms(out.log_probs)
            sign = 1.0 if config.entropy_sign == "pq" else -1.0
            terms["cond_entropy"] = config.lambda_h * sign * conditional.sum()
            terms["marginal_entropy"] = -config.lambda_h * config.gamma * marginal.sum()
        else:
            terms.update(commitment=out.commitment, codebook=out.codebook_loss)
        loss = sum(terms.values())
        terms = {key: value.detach() for key, value in terms.items()}
        terms["mse"] = mse.detach()
        codes = [code.contiguous() for code in out.tokens.unbind(dim=1)]
        return ModelOutput(x_hat=x_hat, codes=codes, loss=loss, terms=terms, logs=logs)

    def global_vectors(self, x: Tensor) -> Tensor:
        """x -> z (B, G, c·h·w / G): the encoder output flattened channel-major, cut into G chunks.
        Runs in the model's current mode."""
        f = self.to_latent(self.encoder(x)[self.config.downsample])  # (B, c, h, w)
        return f.reshape(f.shape[0], self.config.groups, -1)

    def _latent(self, vectors: Tensor) -> Tensor:
        """(B, G, c·h·w / G) -> the decoder's input grid (B, c, h, w)."""
        return vectors.reshape(vectors.shape[0], self.config.dim, *self.config.grid)

    def _prefix_mask(self, batch: int, device: torch.device) -> Tensor:
        """(B, L) float, 1 for the first m_b steps: m_b ~ U{1..L} in training, 1 + (b mod L) in eval."""
        depth = self.config.depth
        lengths = (torch.randint(1, depth + 1, (batch,), device=device) if self.training
                   else torch.arange(batch, device=device) % depth + 1)
        return (torch.arange(depth, device=device)[None, :] < lengths[:, None]).float()

    def _statistics(self, out: ProgressiveOutput) -> dict[str, Tensor]:
        """Detached logs: per step the batch perplexity of the hard codes (pooled over groups); for
        SQ per step and in total the conditional and marginal entropy (nats per item) and MI."""
        logs, size = {}, self.config.codebook_size
        with torch.no_grad(), fp32_island(out.tokens.device):
            for step, tokens in enumerate(out.tokens.unbind(1)):
                logs[f"perplexity/{step}"] = perplexity_of_counts(code_counts(tokens, size))
            if self.stochastic:
                conditional, marginal = entropy_terms(out.log_probs.detach())
                for step in range(self.config.depth):
                    logs[f"cond_entropy/{step}"] = conditional[step]
                    logs[f"marginal_entropy/{step}"] = marginal[step]
                logs["cond_entropy"] = conditional.sum()
                logs["marginal_entropy"] = marginal.sum()
                logs["mi"] = marginal.sum() - conditional.sum()
                logs["kappa"] = self.quantizer.scale().mean()
        return logs

    # ------------------------------------------------------------------ codes

    def encode(self, x: Tensor) -> list[Tensor]:
        """x (B, C, H, W) -> tokens, one (B, G) long tensor per step (argmax / nearest code, in eval mode)."""
        return [step.contiguous() for step in self.token_posteriors(x).tokens.unbind(1)]

    def token_posteriors(self, x: Tensor) -> ProgressiveOutput:
        """x -> the eval-mode quantiser output: tokens (B, L, G), code images (B, L, G, D_g) and,
        for SQ steps, log q (B, L, G, K) — each step's posterior given the item and the earlier
        hard tokens. Eval mode, no gradients, training flags restored."""
        self.check_input(x)
        with evaluating(self):
            return self.quantizer(self.global_vectors(x))

    def embed_codes(self, codes: Sequence[Tensor], upto: int | None = None) -> Tensor:
        """tokens (a prefix of ``encode``'s list, each (B, G)) -> the decoder input Σ_{l≤upto} z_l
        as a grid (B, c, h, w)."""
        groups, size = self.config.groups, self.config.codebook_size
        upto = self.check_codes(codes, upto)
        for step, code in enumerate(codes):
            if code.dim() != 2 or code.shape[1] != groups or code.dtype != torch.long:
                raise ValueError(f"codes[{step}] must be long tokens of shape (B, {groups}) as from encode, "
                                 f"got {code.dtype} {tuple(code.shape)}")
            if code.shape[0] != codes[0].shape[0]:
                raise ValueError(f"codes[{step}] has {code.shape[0]} items, codes[0] {codes[0].shape[0]}")
            if code.min() < 0 or code.max() >= size:
                raise ValueError(f"codes[{step}]: tokens must lie in [0, {size})")
        images = torch.stack([self.quantizer.code_image(step, codes[step]) for step in range(upto)], dim=1)
        return self._latent(images.sum(1))

    def decode_latents(self, latent: Tensor) -> Tensor:
        """Decoder input grid (B, c, h, w) -> x̂. Runs in the model's current mode, with gradients."""
        return self.decoder(self.from_latent(latent.to(self.from_latent.weight.dtype)))

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError naming the fix when ``x`` cannot go through this model."""
        height, width = self.config.image_size
        self.check_image_batch(x, f"{height}, {width}")
        if tuple(x.shape[2:]) != (height, width):
            raise ValueError(
                f"input size {x.shape[2]}×{x.shape[3]} differs from the model's {height}×{width}: a PQ-VAE "
                f"flattens its whole latent grid into one vector, so its input size is fixed; resize the input, "
                f"or create the model with image_size=({x.shape[2]}, {x.shape[3]})"
            )
