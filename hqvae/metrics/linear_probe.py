"""Multinomial logistic regression on frozen features, in torch: the linear probe.

Features are standardised with the training set's per-feature mean and standard deviation
(features that are constant on the training set are left centred, not divided by zero), then

    minimise  mean_i CE(W x_i + b, y_i) + (l2 / 2)·||W||²            (bias not penalised)

by full-batch L-BFGS with a strong-Wolfe line search from W = 0, b = 0 (the problem is convex,
so the result does not depend on a seed).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LinearProbe:
    """A fitted probe: ``predict(features)`` standardises and takes the argmax class."""

    mean: Tensor  # (D,)
    scale: Tensor  # (D,)
    weight: Tensor  # (classes, D)
    bias: Tensor  # (classes,)

    def predict(self, features: Tensor) -> Tensor:
        return (((features.float() - self.mean) / self.scale) @ self.weight.t() + self.bias).argmax(-1)

    def accuracy(self, features: Tensor, labels: Tensor) -> float:
        return float((self.predict(features) == labels).float().mean())


def fit_linear_probe(features: Tensor, labels: Tensor, num_classes: int | None = None, l2: float = 1e-4,
                     max_iter: int = 500) -> LinearProbe:
    """Fit the probe on features (N, D) and int labels (N,) (module docstring)."""
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"expected features (N, D) and labels (N,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    features, labels = features.float(), labels.long()
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    mean = features.mean(0)
    std = features.std(0, unbiased=False)
    scale = torch.where(std > 1e-6 * std.max().clamp_min(1e-12), std, torch.ones_like(std))
    inputs = (features - mean) / scale
    weight = torch.zeros(classes, features.shape[1], requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(inputs @ weight.t() + bias, labels) + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return LinearProbe(mean, scale, weight.detach(), bias.detach())
