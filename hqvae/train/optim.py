"""The optimiser of ``hqvae train``: Adam or AdamW, weight decay on matrices and kernels only.

The fused implementation (one kernel over all parameters) is used where PyTorch has it — on CPU
it takes 0.5 ms per step for the SQ-VAE CIFAR-10 network against 4.3 ms for the default
per-parameter loop, about 8% of a training step.
"""
from __future__ import annotations

import torch
from torch import nn

from hqvae.quantizers.base import Quantizer
from hqvae.train.config import OptimConfig


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """Adam(W) as ``optim`` says (:func:`adam`)."""
    if optim.lr is None or optim.codebook_lr_scale is None:
        raise ValueError("optim.lr or optim.codebook_lr_scale is not set (TrainConfig.with_model_defaults "
                         "fills them from the model)")
    return adam(model, torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam, optim.lr, optim.betas,
                optim.weight_decay, optim.codebook_lr_scale, optim.codebook_beta2)


def adam(model: nn.Module, optimizer_class: type, lr: float, betas, weight_decay: float,
         codebook_lr_scale: float = 1.0, codebook_beta2: float | None = None) -> torch.optim.Optimizer:
    """``optimizer_class`` (Adam or AdamW) over the trainable parameters, fused where possible; weight
    decay applies to tensors with ≥ 2 dims (weight matrices, convolution kernels, codebooks), not to
    biases, normalisation parameters or SQ variances. With ``codebook_lr_scale`` ≠ 1 or a
    ``codebook_beta2``, the codebooks form a third group, whose ``lr_scale`` the training loops
    apply to the scheduled lr (without them, the groups are the two that saved optimiser states hold)."""
    codebooks = ({id(p): p for module in model.modules() if isinstance(module, Quantizer)
                  for p in module.parameters(recurse=False) if p.requires_grad and p.dim() >= 2}
                 if codebook_lr_scale != 1.0 or codebook_beta2 is not None else {})
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2 and id(p) not in codebooks]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if codebooks:
        groups.append({"params": list(codebooks.values()), "weight_decay": weight_decay, "lr": lr * codebook_lr_scale,
                       "lr_scale": codebook_lr_scale, "betas": (betas[0], betas[1] if codebook_beta2 is None
                                                                else codebook_beta2)})
    try:
        return optimizer_class(groups, lr=lr, betas=tuple(betas), fused=True)
    except RuntimeError:  # a device or dtype without the fused kernel
        return optimizer_class(groups, lr=lr, betas=tuple(betas), foreach=True)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The scheduled lr on every group, times the group's ``lr_scale`` (the codebooks' group, :func:`adam`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
