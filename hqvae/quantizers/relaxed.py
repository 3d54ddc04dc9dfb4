"""The SQ training step as one fused op: Gaussian posterior, its entropy, and the Gumbel-softmax
relaxed sample, with a hand-written backward. SPEC §1.2, for variances that are one scalar or
one value per row (types I–III).

    ℓ      = p · (2 x·e_kᵀ − ||e_k||²)            p = 1 / (2 s²); ℓ differs from −||x − e_k||²/(2s²)
                                                   by a row constant, to which softmax is blind
    log P  = log_softmax(ℓ)                       neg_entropy = Σ_k P log P       (per row)
    w      = softmax((log P + g) / τ)             g ~ Gumbel(0, 1)
    z_q    = w · E

Autograd would keep a dozen (N, K) intermediates and walk each several times; here the forward
makes one exp pass for P, reuses the noise buffer for the sample, folds p into the (N, d+1) rows
of the distance product, and floors exp's arguments out of the denormal range (``EXP_FLOOR``);
the backward uses that the gradient with respect to the logits of any function of a softmax has
zero row sums, folds 1/τ and p into the small operands of its products, so

    ∂/∂ℓ  = (w ⊙ (∂w − ⟨w, ∂w⟩)) / τ  +  g_H · P ⊙ (log P − Σ P log P)  +  P ⊙ (∂P − ⟨P, ∂P⟩)
    ∂/∂p  = ⟨∂ℓ, log P⟩ / p    (rows; summed for a scalar p)
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# exp() of an argument below about −87.3 (float32's smallest normal number is 2^−126 ≈ e^−87.3)
# returns a denormal or 0 through a path this CPU runs ~20× slower than the normal one (exp of a
# (2,048, 512) block: 1.4 ms with the arguments floored, 23–31 ms with sharp rows; the same for
# arguments of −104, −200 and −inf). Softmax numerators e^a, a ≤ 0 the logit minus its row's
# maximum, are therefore formed from max(a, EXP_FLOOR) and the floored entries then set to exactly 0.
# What that drops is exact to rounding: every dropped entry is < e^−64 ≈ 1.6e-28 of the row's
# largest (which is 1), so each softmax row sum (≥ 1) and each P log P sum loses less than
# K·1e-26, far below float32's resolution of 6e-8; a dropped entry's own gradient is of the same
# order (≤ 1e-25 times the largest), which Adam, with its ε = 1e-8, turns into a step of less than
# 1e-17·lr. It also keeps (N, K) products of the backward clear of denormals.
EXP_FLOOR = -64.0
EXP_FLOOR_VALUE = math.exp(EXP_FLOOR) * (1 + 1e-5)  # just above what exp returns at the floor (float32, float64)


def exponential_noise(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """i.i.d. Exp(1) samples E, from which ``gumbel_noise`` forms g = −log(E + 1e-10).

    On CPU, NumPy's ziggurat draws E (one RNG pass, against torch's uniform draw and a log); its
    seed is drawn from torch's generator, so ``torch.manual_seed`` still makes runs reproducible.
    Elsewhere E = −log(u + 1e-10), u ~ U(0, 1) from torch.
    """
    if device.type == "cpu" and dtype in (torch.float32, torch.float64):
        seed = int(torch.randint(0, 2**62, (1,)).item())
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        exponential = np.empty(shape, dtype=np_dtype)
        np.random.default_rng(seed).standard_exponential(out=exponential, dtype=np_dtype, method="zig")
        return torch.from_numpy(exponential)
    u = torch.rand(shape, dtype=dtype, device=device)
    return -torch.log(u + 1e-10)


def gumbel_noise(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """i.i.d. Gumbel(0, 1) samples g = −log(E + 1e-10), E ~ Exp(1) (``exponential_noise``): on CPU
    one RNG pass and one log; elsewhere −log(−log u), both with the 1e-10 guards of SPEC §1.2."""
    return exponential_noise(shape, dtype, device).add_(1e-10).log_().neg_()


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Σ_k a_nk b_nk -> (N,). A plain product and sum: measured faster on CPU than N batched
    (1×K)·(K×1) products (7× at N = 2,048, K = 512) and than ``linalg.vecdot``."""
    return (a * b).sum(-1)


def floored_exp(shifted: Tensor, out: Tensor | None = None) -> Tensor:
    """exp(a) for (N, K) arguments a ≤ 0 (a row's maximum subtracted), with every entry whose
    argument is ≤ ``EXP_FLOOR`` returned as exactly 0.

    Written as exp(max(a, EXP_FLOOR)) followed by zeroing what the floor produced, so that exp never
    sees an argument below float32's normal range (``EXP_FLOOR`` docstring). ``out`` may be
    ``shifted`` itself (in place).
    """
    out = torch.clamp_min(shifted, EXP_FLOOR, out=out) if out is not None else torch.clamp_min(shifted, EXP_FLOOR)
    return F.threshold_(out.exp_(), EXP_FLOOR_VALUE, 0.0)


class RelaxedGaussianSample(torch.autograd.Function):
    """(x (N, d), codebook (K, d), precision () or (N, 1), τ, hard) ->
    (z_q (N, d), neg_entropy (N,), probs (N, K), indices (N,)).

    ``indices`` are the argmax codes (not differentiable); ``probs`` is differentiable. With
    ``hard`` (the straight-through variant), z_q = (onehot(indices) − sg(w) + w) · E: the value
    is the argmax code, w's gradient is the relaxed sample's, the codebook's that of the code.

    The logits are one product of augmented operands with the precision folded into the rows,
    ℓ = x_aug · codes_augᵀ with x_aug = p·[x, −1] (N, d+1) and codes_aug = [2E, ||E||²] (K, d+1),
    so the forward has no (N, K) pass for p and the backward's products with codes_aug and x_aug
    give ∂x and ∂E directly.
    """

    @staticmethod
    def forward(ctx, x: Tensor, codebook: Tensor, precision: Tensor, temperature: float, hard: bool = False):
        ctx.set_materialize_grads(False)
        minus_ones = torch.full((x.shape[0], 1), -1.0, dtype=x.dtype, device=x.device)
        x_aug = torch.cat([x, minus_ones], dim=1).mul_(precision)  # (N, d+1)
        codes_aug = torch.cat([2.0 * codebook, codebook.pow(2).sum(-1, keepdim=True)], dim=1)  # (K, d+1)
        logits = x_aug @ codes_aug.t()  # (N, K)
        row_max, indices = logits.max(dim=-1, keepdim=True)
        log_probs = logits.sub_(row_max)  # shifted logits, in place
        probs = floored_exp(log_probs)  # (N, K)
        row_sum = probs.sum(-1, keepdim=True)
        probs.div_(row_sum)
        log_probs.sub_(row_sum.log_())  # now log P
        neg_entropy = _rowdot(probs, log_probs)  # (N,)

        # (log P + g) / τ with g = −log(E + 1e-10), E ~ Exp(1): the buffer of E becomes the sample
        sample = exponential_noise(tuple(log_probs.shape), log_probs.dtype, log_probs.device)
        sample = torch.sub(log_probs, sample.add_(1e-10).log_(), out=sample).div_(temperature)
        sample = floored_exp(sample.sub_(sample.amax(-1, keepdim=True)), out=sample)
        sample.div_(sample.sum(-1, keepdim=True))  # w = softmax((log P + g) / τ)
        indices = indices.squeeze(-1)
        z_q = codebook[indices] if hard else sample @ codebook  # (N, d)

        ctx.save_for_backward(x_aug, codebook, codes_aug, precision, log_probs, probs, sample, neg_entropy, indices)
        ctx.temperature, ctx.hard = temperature, hard
        ctx.mark_non_differentiable(indices)
        return z_q, neg_entropy, probs, indices

    @staticmethod
    def backward(ctx, grad_z_q, grad_neg_entropy, grad_probs, _grad_indices):
        x_aug, codebook, codes_aug, precision, log_probs, probs, sample, neg_entropy, indices = ctx.saved_tensors
        grad_logits = torch.zeros_like(log_probs) if grad_z_q is None else None
        grad_codebook = None
        if grad_z_q is not None:  # (K, d): through z_q = w · E, or the argmax code's rows
            grad_codebook = (torch.zeros_like(codebook).index_add_(0, indices, grad_z_q) if ctx.hard
                             else sample.t() @ grad_z_q)
            grad_sample = (grad_z_q / ctx.temperature) @ codebook.t()  # (N, K): ∂w / τ
            inner = _rowdot(sample, grad_sample)
            grad_logits = grad_sample.sub_(inner[:, None]).mul_(sample)
        if grad_neg_entropy is not None:  # g_H · P ⊙ (log P − Σ P log P)
            centred = torch.addcmul((-neg_entropy * grad_neg_entropy)[:, None], log_probs, grad_neg_entropy[:, None])
            grad_logits.addcmul_(probs, centred)
        if grad_probs is not None:
            inner = _rowdot(probs, grad_probs)
            grad_logits.addcmul_(probs, grad_probs - inner[:, None])

        grad_precision = _rowdot(grad_logits, log_probs)[:, None] / precision  # (N, 1)
        if precision.dim() == 0:
            grad_precision = grad_precision.sum()
        grad_x = (grad_logits @ codes_aug[:, :-1]).mul_(precision)  # ∂ℓ/∂x = p · 2E
        grad_codes_aug = grad_logits.t() @ x_aug  # (K, d+1)
        grad_from_logits = 2.0 * (grad_codes_aug[:, :-1] + grad_codes_aug[:, -1:] * codebook)
        grad_codebook = grad_from_logits if grad_codebook is None else grad_codebook + grad_from_logits
        return grad_x, grad_codebook, grad_precision, None, None
