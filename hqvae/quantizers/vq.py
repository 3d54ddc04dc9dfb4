"""Deterministic vector quantizer (VQ-VAE, VQ-VAE-2, RQ-VAE baselines) — SPEC §1.1.

    k* = argmin_k ||ẑ − e_k||²,     z_q = ẑ + sg(e_k* − ẑ)          (straight-through)
    loss = β ||ẑ − sg(e_k*)||²  [+ ||sg(ẑ) − e_k*||² when the codebook is trained by gradient]

β (the commitment weight) acts on the encoder side only. With ``ema=True`` (the VQ-VAE-2
default) the codebook is not a parameter: it follows exponential moving averages of the
assigned encoder outputs, with Laplace-smoothed cluster sizes, and the codebook term is dropped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import (LazyInitFlag, Quantizer, QuantizerOutput, code_counts, flatten_latents, fp32_island,
    index_shape, l2_normalize, nearest_code, perplexity_of_counts, straight_through, upcast)
from .kmeans import kmeans
from hqvae.distributed import all_gather_rows, all_reduce_sum_, broadcast_


class VectorQuantizer(LazyInitFlag, Quantizer):
    """Nearest-neighbour quantizer with straight-through gradients.

    Args:
        dim: channel size of the input latents.
        codebook_size: number of codes K.
        beta: commitment weight (encoder side).
        ema: update the codebook by exponential moving averages (no codebook loss term).
        decay: EMA decay.
        eps: Laplace smoothing of the EMA cluster sizes.
        init: "normal" (N(0, 1) codes), "data" (random encoder outputs of the first training
            batch) or "kmeans" (k-means on the first training batch, gathered over DDP ranks).
        kmeans_iters: Lloyd iterations for ``init="kmeans"``.
        dead_code_threshold: after each training step, codes whose EMA usage (expected
            assignments per step) falls below this are replaced by encoder outputs of the batch;
            0 disables restarts.
        cosine: ℓ2-normalise codes and inputs (distances become cosine distances).
        codebook_dim: if set and different from ``dim``, codes live in this lower dimension:
            inputs are projected in by a linear map and the chosen code projected back out
            (factorised codes).
        channel_last: input layout (B, *S, C) instead of (B, C, *S).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        init: str = "kmeans",
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        cosine: bool = False,
        codebook_dim: int | None = None,
        channel_last: bool = False,
    ):
        super().__init__()
        if init not in ("normal", "data", "kmeans"):
            raise ValueError(f"init must be 'normal', 'data' or 'kmeans', got {init!r}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.beta = beta
        self.ema = ema
        self.decay = decay
        self.eps = eps
        self.init = init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.cosine = cosine
        self.channel_last = channel_last
        self.codebook_dim = codebook_dim or dim
        factorised = self.codebook_dim != dim
        self.project_in = nn.Linear(dim, self.codebook_dim) if factorised else nn.Identity()
        self.project_out = nn.Linear(self.codebook_dim, dim) if factorised else nn.Identity()

        codes = torch.randn(codebook_size, self.codebook_dim)
        if ema:
            self.register_buffer("weight", codes)
            self.register_buffer("weight_avg", codes.clone())
        else:
            self.weight = nn.Parameter(codes)
        # EMA of per-step assignment counts: the EMA cluster sizes, and the usage that dead-code
        # restarts look at (kept for gradient codebooks too).
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initialized", torch.tensor(init == "normal"))

    # ------------------------------------------------------------------ vocabulary

    @property
    def codebook(self) -> Tensor:
        """(K, codebook_dim) code vectors (in the projected space for factorised codes)."""
        return l2_normalize(self.weight) if self.cosine else self.weight

    def from_code_space(self, vectors: Tensor) -> Tensor:
        """(..., codebook_dim) -> (..., dim) through the output projection of factorised codes."""
        return self.project_out(vectors)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, codebook_dim={self.codebook_dim}, "
            f"beta={self.beta}, ema={self.ema}, cosine={self.cosine}"
        )

    # ------------------------------------------------------------------ forward

    def forward(self, z: Tensor, return_probs: bool = False) -> QuantizerOutput:
        """Quantize ``z`` (this quantizer's layout); ``return_probs`` is accepted for the common
        contract and ignored: a VQ posterior is the point mass on the code."""
        rows, restore = flatten_latents(z, self.dim, self.channel_last)
        batch = z.shape[0]
        with fp32_island(z.device):
            x = self.project_in(upcast(rows))  # (N, d_c)
            if self.cosine:
                x = l2_normalize(x)
            if self.training and not self.known_initialized():
                self._initialise(x.detach())
            codebook = self.codebook  # (K, d_c)
            indices = nearest_code(x.detach(), codebook)  # (N,)
            codes = F.embedding(indices, codebook)  # (N, d_c); gradient reaches a learnt codebook

            losses = {"commitment": self.beta * (x - codes.detach()).pow(2).sum() / batch}
            if not self.ema:
                losses["codebook"] = (x.detach() - codes).pow(2).sum() / batch

            counts = code_counts(indices, self.codebook_size)  # (K,)
            stats = {"perplexity": perplexity_of_counts(counts)}
            if self.training:
                self._update(x.detach(), indices, counts)

            z_q = self.project_out(straight_through(x, codes))  # (N, dim)
        return QuantizerOutput(
            z_q=restore(z_q).to(z.dtype),
            indices=indices.reshape(index_shape(z, self.channel_last)),
            losses=losses,
            stats=stats,
        )

    # ------------------------------------------------------------------ in a residual stack

    def share_codebook(self, source: "VectorQuantizer") -> None:
        """EMA codebooks share their buffers too (each depth then adds its own EMA step, as in
        vector-quantize-pytorch's shared ResidualVQ)."""
        for name in ("weight", "weight_avg", "cluster_size", "initialized") if self.ema else ("weight",):
            setattr(self, name, getattr(source, name))

    def residual_step(self, out: QuantizerOutput) -> Tensor:
        """The hard code: residuals are formed with sg(e), not the straight-through output."""
        return self.embed(out.indices).detach()

    def stack_output(self, z: Tensor, total: Tensor) -> Tensor:
        """One straight-through estimate z + sg(Σ_l e_l − z): the encoder gradient is not
        multiplied by the depth."""
        return straight_through(z, total)

    # ------------------------------------------------------------------ codebook state

    @torch.no_grad()
    def _initialise(self, x: Tensor) -> None:
        """Data or k-means initialisation from the first training batch; identical on every rank."""
        x = all_gather_rows(x)
        if self.init == "kmeans":
            codes, sizes = kmeans(x, self.codebook_size, self.kmeans_iters)
        else:
            codes = x[torch.randint(x.shape[0], (self.codebook_size,), device=x.device)]
            sizes = torch.ones(self.codebook_size, device=x.device)
        broadcast_(codes)
        broadcast_(sizes)
        self.weight.data.copy_(codes)
        self.cluster_size.copy_(sizes)
        if self.ema:
            self.weight_avg.copy_(codes * sizes[:, None])
        self.mark_initialized()

    @torch.no_grad()
    def _update(self, x: Tensor, indices: Tensor, counts: Tensor) -> None:
        """EMA codebook update (statistics summed over ranks first), then dead-code restarts."""
        counts = all_reduce_sum_(counts.clone())
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            sums = torch.zeros_like(self.weight).index_add_(0, indices, x)  # (K, d_c)
            all_reduce_sum_(sums)
            self.weight_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            # an unused code's average decays geometrically (0.99^t < 2^-126 after ~8,700 steps); its
            # subnormal entries then slow the N×K×d distance product by ~80× on a CPU, so they go to 0
            flush_subnormal_(self.weight_avg)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
            self.weight.copy_(self.weight_avg / smoothed[:, None])
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(x)

    @torch.no_grad()
    def _restart_dead_codes(self, x: Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold  # identical on every rank
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        replacements = broadcast_(x[torch.randint(x.shape[0], (num_dead,), device=x.device)])
        self.weight.data[dead] = replacements
        self.cluster_size[dead] = self.dead_code_threshold
        if self.ema:
            self.weight_avg[dead] = replacements * self.dead_code_threshold


def flush_subnormal_(x: Tensor) -> Tensor:
    """Set in place the entries of ``x`` below the smallest normal float of its dtype in magnitude to 0
    (|x| < 2^-126 in float32): arithmetic on subnormal floats is many times slower on CPUs."""
    return x.masked_fill_(x.abs() < torch.finfo(x.dtype).tiny, 0)
