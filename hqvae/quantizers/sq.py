"""Stochastic quantizer of SQ-VAE (Takida et al., 2022) — SPEC §1.2.

Gaussian form: with a learnt variance s², the posterior over codes at one position is

    P(k | ẑ) = softmax_k( −||ẑ − e_k||² / (2 s²) )                                   (logits ℓ)

Training draws a relaxed sample w = softmax((log P + g) / τ), g ~ Gumbel(0, 1), and outputs the
soft mixture z_q = Σ_k w_k e_k — no straight-through, no stop-gradient. Evaluation takes
argmax_k ℓ_k (or a categorical sample on request). Per item, summed over positions:

    discrete   = Σ_k P log P                      (negative entropy; ≤ 0, the n·log K constant dropped)
    continuous = ||ẑ − z_q||² / (2 s²)            (one-sample estimate; the log s² terms cancel)

and ``loss`` is the batch mean of their sum. s² is trained by the same loss (self-annealing).

Variance types: "gaussian_1" one learnt scalar; "gaussian_2" / "gaussian_3" / "gaussian_4" add an
externally predicted log-variance per item / per position / per position and channel:
s² = exp(log_var) + exp(log_s2). ``var_floor=True`` adds 1 (s² = 1 + ...), as in the public
SQ-VAE vision code. ``bounded_variance=True`` uses s² = c·s²₀·sigmoid(θ) instead, c =
``variance_bound_ratio`` (θ starts where c·sigmoid(θ) = 1, so s² starts at s²₀ and stays in (0, c·s²₀));
c = 2 is the SQ-VAE authors' later minimal code (θ starts at 0). "vmf":
codes and ẑ are ℓ2-normalised, logits κ⟨ẑ, ē_k⟩, continuous term κ Σ (1 − ⟨ẑ, z_q⟩),
κ = 1 + exp(log_kappa).

Initialisation (SPEC §1.2): ``init="normal"`` starts from an N(0, 1) codebook and s² from
``init_variance`` (the public SQ-VAE code). ``init="data"`` gives the layer the same kind of start
as the k-means VQ baselines: on the first training forward, the codebook becomes K random rows of
the layer's own inputs plus ``init_noise``·σ Gaussian noise (σ² the inputs' mean per-dimension
variance v), and s² becomes ``init_variance_ratio``·v. ``init="kmeans"`` starts the codebook where the
VQ baselines start theirs, at the centroids of Lloyd's k-means on those rows (``kmeans_iters``
iterations), plus the same noise (which separates codes that started from one row: identical codes
get identical gradients and would never part); s² as for "data". Under DDP rank 0 draws and broadcasts. The
``initialized`` flag is saved with the weights, so resumed and loaded models never re-initialise.

``affine_codebook=True`` re-parametrises the codebook as e_k = a ⊙ w_k + b with a, b ∈ R^d shared by
all codes (a = 1, b = 0 at the start; the affine re-parametrisation of Huh et al., ICML 2023). The
model and its loss are unchanged; what changes is the optimisation: a code's own gradient is
proportional to the posterior mass it holds, so a code that loses the first batches stays where the
start put them (docs/dead-codes.md), while a and b move with the gradients of every code in use and
carry the unused ones along as the latents contract.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import (DISTANCE_CHUNK_ELEMENTS, LazyInitFlag, Quantizer, QuantizerOutput, code_counts,
    flatten_latents, fp32_island, index_shape, l2_normalize, perplexity_of_counts, upcast)
from hqvae.distributed import all_gather_rows, broadcast_
from .relaxed import RelaxedGaussianSample, gumbel_noise
from .kmeans import kmeans

VARIANCE_TYPES = ("gaussian_1", "gaussian_2", "gaussian_3", "gaussian_4", "vmf")
VARIANCE_MIN = 1e-10
INITS = ("normal", "data", "kmeans")


class StochasticQuantizer(LazyInitFlag, Quantizer):
    """SQ layer: Gumbel-softmax relaxed mixture in training, argmax in eval.

    Args:
        dim: channel size of the input latents (and of the codes).
        codebook_size: number of codes K.
        variance: one of "gaussian_1" (default), "gaussian_2", "gaussian_3", "gaussian_4", "vmf".
        init_variance: initial exp(log_s2) for the Gaussian forms (s² = [1 +] exp(log_s2)); with
            ``bounded_variance``, the initial s² = s²₀ itself. Unused with ``init="data"`` / "kmeans".
        var_floor: add 1 to the variance (the public SQ-VAE vision parametrisation).
        bounded_variance: s² = c·s²₀·sigmoid(θ), c = ``variance_bound_ratio`` (Gaussian types; not
            with ``var_floor``).
        init: "normal" (N(0, 1) codebook, s² from ``init_variance``), "data" or "kmeans" (codebook
            and s² from the first training batch, see the module docstring).
        init_noise: "data" / "kmeans" init: noise added to the chosen rows or centroids, in units of
            the inputs' std.
        kmeans_iters: Lloyd iterations for ``init="kmeans"``.
        init_variance_ratio: "data" / "kmeans" init: s² starts at this multiple of the inputs' mean
            per-dimension variance (the Gaussian forms; with ``var_floor`` the floor's 1 is
            part of it, and the learnt part is clamped at 1e-3·s² when the ratio asks for less).
        init_kappa: initial concentration κ for "vmf".
        temperature: initial Gumbel temperature τ (see ``set_temperature``).
        eval_sample: in eval mode draw a categorical sample instead of the argmax.
        channel_last: input layout (B, *S, C) instead of (B, C, *S).
        fused: train types I–III with the fused posterior-and-sample op (``relaxed.py``); False
            runs the same math through autograd (slower, for checking).
        affine_codebook: codes e_k = a ⊙ w_k + b with a shared scale a and shift b (d,) (module
            docstring).
        variance_bound_ratio: c > 1, the bound of ``bounded_variance`` in units of its start s²₀.
    """

    stochastic = True

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        variance: str = "gaussian_1",
        init_variance: float = 20.0,
        var_floor: bool = False,
        bounded_variance: bool = False,
        init: str = "normal",
        init_noise: float = 0.2,
        kmeans_iters: int = 10,
        init_variance_ratio: float = 1.0,
        init_kappa: float = 10.0,
        temperature: float = 1.0,
        eval_sample: bool = False,
        channel_last: bool = False,
        fused: bool = True,
        affine_codebook: bool = False,
        variance_bound_ratio: float = 2.0,
    ):
        super().__init__()
        if variance not in VARIANCE_TYPES:
            raise ValueError(f"variance must be one of {VARIANCE_TYPES}, got {variance!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if bounded_variance and (var_floor or variance == "vmf"):
            raise ValueError("bounded_variance replaces var_floor and applies to the Gaussian forms; "
                             "pass only one of them, and not with variance='vmf'")
        if not (init_variance > 0 and init_variance_ratio > 0 and init_noise >= 0):
            raise ValueError(f"need init_variance > 0, init_variance_ratio > 0 and init_noise ≥ 0, got "
                             f"{init_variance}, {init_variance_ratio} and {init_noise}")
        self.dim = dim
        self.codebook_size = codebook_size
        self.variance_type = variance
        self.var_floor = var_floor
        self.bounded_variance = bounded_variance
        self.init = init
        self.init_noise = init_noise
        self.kmeans_iters = kmeans_iters
        self.init_variance_ratio = init_variance_ratio
        if not variance_bound_ratio > 1:
            raise ValueError(f"variance_bound_ratio must be > 1 (s² starts at s²₀, below its bound c·s²₀), "
                             f"got {variance_bound_ratio}")
        self.variance_bound_ratio = float(variance_bound_ratio)
        self.eval_sample = eval_sample
        self.fused = fused
        self.channel_last = channel_last
        self.weight = nn.Parameter(torch.randn(codebook_size, dim))
        self.affine_codebook = affine_codebook
        if affine_codebook:
            self.codebook_scale = nn.Parameter(torch.ones(dim))  # a
            self.codebook_shift = nn.Parameter(torch.zeros(dim))  # b
        if variance == "vmf":
            self.log_kappa = nn.Parameter(torch.tensor(math.log(max(init_kappa - 1.0, 1e-6))))
        elif bounded_variance:
            self.register_buffer("variance_bound", torch.tensor(float(init_variance)))  # s²₀
            self.variance_logit = nn.Parameter(torch.full((), self._start_logit()))  # θ
        else:
            self.log_s2 = nn.Parameter(torch.tensor(math.log(init_variance)))
        self.register_buffer("initialized", torch.tensor(init == "normal"))
        self.owns_codebook = True  # False for the deeper depths of a residual stack sharing one codebook
        self.is_vmf = variance == "vmf"
        self.needs_log_var = variance in ("gaussian_2", "gaussian_3", "gaussian_4")  # forward takes log_var
        self.set_temperature(temperature)

    # ------------------------------------------------------------------ vocabulary

    @property
    def codebook(self) -> Tensor:
        """(K, dim) code vectors: a ⊙ w_k + b with ``affine_codebook``; ℓ2-normalised for vMF."""
        codes = torch.addcmul(self.codebook_shift, self.weight, self.codebook_scale) if self.affine_codebook \
            else self.weight
        return l2_normalize(codes) if self.is_vmf else codes

    def set_temperature(self, temperature: float, hard: bool = False) -> None:
        """Gumbel temperature τ > 0 used by training-mode samples; ``hard``: training decodes the
        argmax code, straight through the relaxed sample (``RelaxedGaussianSample``; a variant,
        not SQ-VAE's estimator)."""
        if not temperature > 0:
            raise ValueError(f"the Gumbel temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.hard = hard

    def variance(self, log_var_rows: Tensor | None = None) -> Tensor:
        """s² as a scalar, or per row ((N, 1) or (N, dim)) for types II–IV, in float32."""
        if self.bounded_variance:
            s2 = self.variance_bound_ratio * upcast(self.variance_bound) * torch.sigmoid(upcast(self.variance_logit))
        else:
            s2 = upcast(self.log_s2).exp()
        if log_var_rows is not None:
            s2 = s2 + upcast(log_var_rows).exp()
        if self.var_floor:
            s2 = s2 + 1.0
        return s2.clamp_min(VARIANCE_MIN)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, codebook_size={self.codebook_size}, variance={self.variance_type!r}, "
            f"var_floor={self.var_floor}, bounded_variance={self.bounded_variance}, init={self.init!r}, "
            f"affine_codebook={self.affine_codebook}, temperature={self.temperature:.4g}"
        )

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        z: Tensor,
        log_var: Tensor | None = None,
        continuous_loss: bool = True,
        return_probs: bool = False,
    ) -> QuantizerOutput:
        """Quantize ``z``.

        Args:
            z: latents in this quantizer's layout.
            log_var: types II–IV only: predicted log-variance in the input layout with the channel
                dim of size 1 (types II, III; type II constant over positions) or ``dim`` (IV).
            continuous_loss: include the continuous term (residual stacks compute it once,
                over the whole stack, and pass False).
            return_probs: also return P(k | ẑ) as (N, K) rows in eval mode (always in training).
        """
        rows, restore = flatten_latents(z, self.dim, self.channel_last)
        batch = z.shape[0]
        log_var_rows = self._log_var_rows(z, log_var)
        with fp32_island(z.device):
            x = upcast(rows)  # (N, d)
            if self.training and not self.known_initialized():
                self._initialise(x.detach())
            codebook = upcast(self.codebook)  # (K, d)
            if self.is_vmf:
                x = l2_normalize(x)
                scale = 1.0 + upcast(self.log_kappa).exp()  # κ
            else:
                scale = self.variance(log_var_rows)  # scalar, (N, 1) or (N, d)

            if self.training and self.fused and not self.is_vmf and self.variance_type != "gaussian_4":
                z_q, neg_entropy_rows, probs, indices = RelaxedGaussianSample.apply(
                    x, codebook, 0.5 / scale, self.temperature, self.hard
                )
            elif not self.training and not torch.is_grad_enabled():
                indices, neg_entropy_rows, probs = self._hard_codes_in_chunks(x, codebook, scale, return_probs)
                z_q = F.embedding(indices, codebook)
            else:
                logits = self._logits(x, codebook, scale)  # (N, K), up to a row constant
                log_probs = torch.log_softmax(logits, dim=-1)
                probs = log_probs.exp()
                neg_entropy_rows = (probs * log_probs).sum(-1)  # (N,)
                if self.training:
                    noise = gumbel_noise(tuple(log_probs.shape), log_probs.dtype, log_probs.device)
                    sample = torch.softmax((log_probs + noise) / self.temperature, dim=-1)
                    indices = logits.argmax(-1)
                    z_q = (F.embedding(indices, codebook) + (sample - sample.detach()) @ codebook.detach()
                           if self.hard else sample @ codebook)
                else:
                    indices = torch.multinomial(probs, 1).squeeze(-1) if self.eval_sample else logits.argmax(-1)
                    z_q = F.embedding(indices, codebook)

            losses = {"discrete": neg_entropy_rows.sum() / batch}
            if continuous_loss:  # batch mean of Σ_rows ||x − z_q||² / (2 s²); vMF: κ Σ_rows (1 − ⟨x, z_q⟩)
                losses["continuous"] = (scale * (1.0 - (x * z_q).sum(-1)).sum() / batch if self.is_vmf
                                        else ((x - z_q).pow(2) * (0.5 / scale)).sum() / batch)
            stats = {
                "entropy": -neg_entropy_rows.detach().mean(),
                "perplexity": perplexity_of_counts(code_counts(indices, self.codebook_size)),
                "kappa" if self.is_vmf else "variance": scale.detach().mean(),
            }

        return QuantizerOutput(
            z_q=restore(z_q).to(z.dtype),
            indices=indices.reshape(index_shape(z, self.channel_last)),
            losses=losses,
            stats=stats,
            probs=probs if (self.training or return_probs) else None,
        )

    # ------------------------------------------------------------------ in a residual stack

    def check_stackable(self) -> None:
        if self.is_vmf or self.needs_log_var:
            raise ValueError("residual SQ stacks take gaussian_1 layers (vMF residuals are not defined)")

    def share_codebook(self, source: "StochasticQuantizer") -> None:
        super().share_codebook(source)
        if self.affine_codebook != source.affine_codebook:
            raise ValueError("the depths of a stack sharing one codebook need the same affine_codebook")
        if self.affine_codebook:
            self.codebook_scale, self.codebook_shift = source.codebook_scale, source.codebook_shift
        self.owns_codebook = False  # data initialisation: depth 0 fills the shared codebook

    def forward_in_stack(self, residual: Tensor, return_probs: bool = False) -> QuantizerOutput:
        """Without the continuous term (``stack_losses`` computes it once for the stack); the step
        is the soft mixture in training and the hard code in eval, with no stop-gradient."""
        return self(residual, continuous_loss=False, return_probs=return_probs)

    def stack_losses(self, layers: list["StochasticQuantizer"], z: Tensor, total: Tensor) -> dict[str, Tensor]:
        """The stack's continuous term: batch mean of Σ_rows ||ẑ − Σ_l z_q,l||² / (2 Σ_l s_l²)."""
        with fp32_island(z.device):
            summed_variance = sum(layer.variance() for layer in layers)
            diff, _ = flatten_latents(upcast(z - total), self.dim, self.channel_last)
            return {"continuous": (diff.pow(2) * (0.5 / summed_variance)).sum() / z.shape[0]}

    @torch.no_grad()
    def _initialise(self, x: Tensor) -> None:
        """Codebook and s² from the rows x (N, d) of the first training batch (gathered over DDP
        ranks; rank 0 draws, every rank receives the same values)."""
        x = all_gather_rows(x)
        variance = x.var(dim=0, unbiased=False).mean()  # v: mean per-dimension variance
        if self.init == "kmeans":
            rows, _ = kmeans(x, self.codebook_size, self.kmeans_iters)
        else:
            rows = x[torch.randint(x.shape[0], (self.codebook_size,), device=x.device)]
        codes = rows + self.init_noise * variance.sqrt() * torch.randn_like(rows)
        broadcast_(codes)
        broadcast_(variance)
        if self.owns_codebook:
            self.weight.data.copy_(codes)
            if self.affine_codebook:
                self.codebook_scale.data.fill_(1.0)
                self.codebook_shift.data.zero_()
        if not self.is_vmf:
            target = self.init_variance_ratio * variance  # the s² to start from
            if self.bounded_variance:
                self.variance_bound.copy_(target)
                self.variance_logit.data.fill_(self._start_logit())
            else:
                learnt = target - 1.0 if self.var_floor else target
                self.log_s2.data.copy_(learnt.clamp_min(1e-3 * target).log())
        self.mark_initialized()

    # ------------------------------------------------------------------ helpers

    def _start_logit(self) -> float:
        """θ with ratio · sigmoid(θ) = 1, so that s² starts at s²₀ (0 for the ratio 2)."""
        return -math.log(self.variance_bound_ratio - 1.0)

    def _logits(self, x: Tensor, codebook: Tensor, scale: Tensor) -> Tensor:
        """(N, d) rows, codebook (K, d) -> (N, K) logits up to a row constant; ``scale`` is κ (vMF) or s²
        (scalar, (N, 1) or (N, d)). Gaussian forms: −Σ_j p_j (x_j − e_kj)² without the row constant
        Σ_j p_j x_j², p = 1 / (2 s²)."""
        if self.is_vmf:
            return scale * (x @ codebook.t())
        precision = 0.5 / scale
        if precision.dim() == 2 and precision.shape[1] > 1:  # type IV: per-dimension weights
            return 2.0 * (x * precision) @ codebook.t() - precision @ codebook.pow(2).t()
        code_norms = codebook.pow(2).sum(-1)  # (K,)
        return precision * torch.addmm(code_norms, x, codebook.t(), beta=-1.0, alpha=2.0)

    def _hard_codes_in_chunks(
        self, x: Tensor, codebook: Tensor, scale: Tensor, return_probs: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Eval without gradients: (indices (N,), Σ_k P log P per row (N,), P (N, K) on request),
        computed over row chunks so that, unless P is asked for, no more than
        DISTANCE_CHUNK_ELEMENTS logits exist at once."""
        rows = max(1, DISTANCE_CHUNK_ELEMENTS // self.codebook_size)
        indices = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        neg_entropy = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
        probs = x.new_empty(x.shape[0], self.codebook_size) if return_probs else None
        per_row = scale.dim() == 2
        for start in range(0, x.shape[0], rows):
            part = slice(start, start + rows)
            log_probs = torch.log_softmax(self._logits(x[part], codebook, scale[part] if per_row else scale), dim=-1)
            part_probs = log_probs.exp()
            neg_entropy[part] = (part_probs * log_probs).sum(-1)
            if probs is not None:
                probs[part] = part_probs
            indices[part] = torch.multinomial(part_probs, 1).squeeze(-1) if self.eval_sample else log_probs.argmax(-1)
        return indices, neg_entropy, probs

    def _log_var_rows(self, z: Tensor, log_var: Tensor | None) -> Tensor | None:
        """Validate the external log-variance and flatten it to (N, 1) or (N, dim) rows."""
        if not self.needs_log_var:
            if log_var is not None:
                raise ValueError(f"variance={self.variance_type!r} takes no log_var; use gaussian_2/3/4")
            return None
        if log_var is None:
            raise ValueError(f"variance={self.variance_type!r} needs the predicted log_var argument")
        channels = self.dim if self.variance_type == "gaussian_4" else 1
        channel_axis = -1 if self.channel_last else 1
        expected = list(z.shape)
        expected[channel_axis] = channels
        if list(log_var.shape) != expected:
            if self.variance_type == "gaussian_2" and log_var.shape[0] == z.shape[0] and log_var[0].numel() == 1:
                log_var = log_var.reshape(z.shape[0], *[1] * (z.dim() - 1)).expand(expected)
            else:
                raise ValueError(
                    f"log_var for {self.variance_type!r} must have shape {tuple(expected)} "
                    f"(the latents' shape with {channels} channel(s)), got {tuple(log_var.shape)}"
                )
        return flatten_latents(log_var, channels, self.channel_last)[0]
