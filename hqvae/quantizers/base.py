"""The output contract every quantizer returns, and the small vocabulary they share.

Every quantizer maps continuous latents ``z`` to codebook vectors. Inputs come in one of two
layouts, chosen by a constructor argument:

* channel-first (default): ``(B, C, *spatial)`` — images ``(B, C, H, W)``, sequences ``(B, C, T)``;
* channel-last (``channel_last=True``): ``(B, *spatial, C)`` — tokens ``(B, N, C)``.

Internally everything is flattened to ``(N, d)`` rows (``N = B · prod(spatial)``) and the
distance / softmax / entropy math runs in float32 even under autocast ("fp32 islands").
``Quantizer`` is the base class of the one-layer kinds; ``QuantizerOutput`` what every quantizer
(residual stacks too) returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Distances are computed in row chunks so that no more than this many (N, K) entries exist at once.
DISTANCE_CHUNK_ELEMENTS = 1 << 24


@dataclass
class QuantizerOutput:
    """What every quantizer returns.

    z_q:      quantized latents, same shape and layout as the input.
    indices:  long codes, the input shape without the channel dim (``(B, *spatial)``);
              residual stacks add a trailing depth dim (``(B, *spatial, depth)``).
    losses:   the named loss terms, scalars with their gradients, each the batch mean of per-item
              sums (SPEC §1): VQ "commitment" (+ "codebook" for a gradient-trained codebook), SQ
              "discrete" and "continuous". A residual stack's own terms only (RSQ: the one
              "continuous" term of the whole stack); its depths' terms are in ``depths``.
    stats:    detached statistics: "perplexity" (of the hard codes); SQ "entropy" (mean posterior
              entropy, nats) and "variance" (s²) or "kappa" (vMF).
    probs:    stochastic quantizers only: the posterior P(k | z) as ``(N, K)`` rows (float32);
              for residual stacks a list with one entry per depth.
    partial_sums: residual stacks only, on request: ``z_q`` built from the first m layers,
              m = 1..depth, each in the input layout.
    depths:   residual stacks only: each depth's own output (its ``losses`` and ``stats``),
              coarse to fine.
    """

    z_q: Tensor
    indices: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)
    probs: Tensor | list[Tensor] | None = None
    partial_sums: list[Tensor] | None = None
    depths: list["QuantizerOutput"] | None = None

    @property
    def loss(self) -> Tensor:
        """Scalar: every depth's ``loss`` (coarse to fine), then each of ``losses``, summed in order."""
        terms = [depth.loss for depth in self.depths or ()] + list(self.losses.values())
        return sum(terms, self.z_q.new_zeros((), dtype=torch.float32))

    def per_depth(self) -> list[tuple[dict[str, Tensor], dict[str, Tensor]]]:
        """(losses, stats) of each depth, coarse to fine: one pair for a single quantizer; a
        residual stack's own terms join its last depth's (a name in both raises a ValueError,
        so that no term is lost)."""
        if self.depths is None:
            return [(self.losses, self.stats)]
        pairs = [(dict(depth.losses), depth.stats) for depth in self.depths]
        last = pairs[-1][0]
        clash = sorted(set(last) & set(self.losses))
        if clash:
            raise ValueError(f"loss term(s) {clash} of a residual stack clash with its last depth's")
        last.update(self.losses)
        return pairs


class Quantizer(nn.Module):
    """Base of the one-layer quantizers (``VectorQuantizer``, ``StochasticQuantizer``): what a
    residual stack and the models ask of a layer, answered by the layer's kind.

    Subclasses set ``dim``, ``codebook_size`` and ``channel_last``, define ``codebook`` (K, d_c)
    and ``forward(z, return_probs=False) -> QuantizerOutput``.
    """

    stochastic = False  # SQ layers: posteriors, a Gumbel temperature, the ARELBO model loss

    @property
    def codebook(self) -> Tensor:
        raise NotImplementedError

    def embed(self, indices: Tensor) -> Tensor:
        """(B, *S) long codes -> vectors in the input layout, (B, dim, *S) or (B, *S, dim)."""
        vectors = self.from_code_space(F.embedding(indices, self.codebook))  # (B, *S, dim)
        return vectors if self.channel_last else vectors.movedim(-1, 1)

    def from_code_space(self, vectors: Tensor) -> Tensor:
        """Codebook vectors (..., d_c) -> latents (..., dim); the identity unless codes are factorised."""
        return vectors

    def set_temperature(self, temperature: float, hard: bool = False) -> None:
        """Gumbel temperature τ of training-mode samples, and whether training decodes the argmax code
        straight through them (``hard``); deterministic kinds have neither (no-op)."""

    # ------------------------------------------------------------------ in a residual stack

    def check_stackable(self) -> None:
        """Raise a ValueError when this layer cannot be a depth of a residual stack."""

    def share_codebook(self, source: "Quantizer") -> None:
        """Use the codebook of ``source`` (depth 0 of a stack sharing one codebook)."""
        self.weight = source.weight

    def forward_in_stack(self, residual: Tensor, return_probs: bool = False) -> QuantizerOutput:
        """One depth of a residual stack: this layer on ``residual``, without the terms the
        stack computes once over all depths (``stack_losses``)."""
        return self(residual, return_probs=return_probs)

    def residual_step(self, out: QuantizerOutput) -> Tensor:
        """What a residual stack subtracts from the residual after this layer (input layout)."""
        return out.z_q

    def stack_losses(self, layers: list["Quantizer"], z: Tensor, total: Tensor) -> dict[str, Tensor]:
        """Loss terms of a stack of ``layers`` (this kind) over its input z and output sum ``total``."""
        return {}

    def stack_output(self, z: Tensor, total: Tensor) -> Tensor:
        """The stack's z_q from its input z and the sum of its depths' steps."""
        return total


class LazyInitFlag:
    """The ``initialized`` buffer of a quantizer that initialises its codebook from the first
    training batch. The flag is saved with the weights; it is read once and then remembered, so
    that training steps on a GPU do not synchronise with the host to read a flag that only ever
    turns from False to True. A checkpoint written before the flag existed counts as initialised
    (its weights were trained)."""

    _initialized_seen = False

    def known_initialized(self) -> bool:
        if not self._initialized_seen:
            self._initialized_seen = bool(self.initialized)
        return self._initialized_seen

    def mark_initialized(self) -> None:
        self.initialized.fill_(True)
        self._initialized_seen = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._initialized_seen = False  # read the loaded flag afresh
        key = prefix + "initialized"
        if key not in state_dict and any(name.startswith(prefix) for name in state_dict):
            state_dict[key] = torch.tensor(True)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# ----------------------------------------------------------------------------- layouts


def flatten_latents(z: Tensor, dim: int, channel_last: bool) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """(B, C, *S) or (B, *S, C) -> rows (N, C), plus the function that restores the layout.

    Raises a ValueError naming the expected layout when the channel size is not ``dim``.
    """
    if z.dim() < 2:
        raise ValueError(f"expected latents with a batch and a channel dim, got shape {tuple(z.shape)}")
    channel_axis = -1 if channel_last else 1
    if z.shape[channel_axis] != dim:
        layout = "(B, ..., C)" if channel_last else "(B, C, ...)"
        raise ValueError(
            f"expected {dim} channels in layout {layout}, got shape {tuple(z.shape)}; "
            f"pass channel_last={not channel_last} if your channels are on the other side"
        )
    if channel_last:
        lead = z.shape[:-1]
        return z.reshape(-1, dim), lambda rows: rows.reshape(*lead, rows.shape[-1])
    z_last = z.movedim(1, -1)  # (B, *S, C)
    lead = z_last.shape[:-1]

    def restore(rows: Tensor) -> Tensor:
        # contiguous, so that downstream convolutions see the same memory layout as any other input
        return rows.reshape(*lead, rows.shape[-1]).movedim(-1, 1).contiguous()

    return z_last.reshape(-1, dim), restore


def index_shape(z: Tensor, channel_last: bool) -> tuple[int, ...]:
    """The shape of one code per position: the input shape without its channel dim."""
    return tuple(z.shape[:-1]) if channel_last else (z.shape[0], *z.shape[2:])


def straight_through(x: Tensor, codes: Tensor) -> Tensor:
    """x + sg(codes − x): the value of ``codes`` with the gradient of ``x``. When ``x`` carries no
    gradient, sg(codes) itself — the same gradients (none), and eval outputs then equal
    ``embed(indices)`` exactly instead of up to rounding."""
    return x + (codes - x).detach() if x.requires_grad else codes.detach()


def fp32_island(device: torch.device):
    """Context in which autocast is off, so the quantizer math runs in float32."""
    return torch.autocast(device_type=device.type, enabled=False)


def upcast(x: Tensor) -> Tensor:
    """Half and bfloat16 -> float32; float32 and float64 stay as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


# ----------------------------------------------------------------------------- distances


def nearest_code(x: Tensor, codebook: Tensor, chunk_elements: int = DISTANCE_CHUNK_ELEMENTS) -> Tensor:
    """argmin_k ||x_n − e_k||² for rows x (N, d) against codebook (K, d) -> (N,) long.

    ``||x||²`` is constant per row, so only ``||e||² − 2 x·e`` is formed, chunk by chunk, so that
    at most ``chunk_elements`` distances exist at once (K = 65,536 against 262,144 rows fits).
    """
    with torch.no_grad():
        code_norms = codebook.pow(2).sum(-1)  # (K,)
        rows = max(1, chunk_elements // codebook.shape[0])
        out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        for start in range(0, x.shape[0], rows):
            block = x[start : start + rows]
            dist = torch.addmm(code_norms, block, codebook.t(), beta=1.0, alpha=-2.0)  # (n, K)
            out[start : start + rows] = dist.argmin(dim=-1)
    return out


# ----------------------------------------------------------------------------- information measures


def entropy(probs: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy in nats of distributions along ``dim`` (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(dim)


def perplexity_of_counts(counts: Tensor) -> Tensor:
    """exp(H(p)) for the histogram ``counts`` (K,), p = counts / sum."""
    total = counts.sum()
    if total <= 0:
        return torch.tensor(0.0, device=counts.device)
    return torch.exp(entropy(counts.float() / total))


def code_counts(indices: Tensor, codebook_size: int) -> Tensor:
    """Histogram of hard codes: (...,) long -> (K,) float32."""
    return torch.bincount(indices.reshape(-1), minlength=codebook_size).float()


def l2_normalize(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1, eps=1e-12)
