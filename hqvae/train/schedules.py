"""Learning rate and Gumbel temperature as pure functions of the step (so resuming needs only the step)."""
from __future__ import annotations

import math

from hqvae.train.config import OptimConfig, TemperatureConfig


def learning_rate(step: int, optim: OptimConfig, total_steps: int) -> float:
    """lr for optimiser step ``step`` (0-based): linear warm-up over ``warmup_steps`` from lr/warmup
    to lr, then constant, or cosine from lr to ``min_lr`` at ``total_steps − 1``."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return optim.lr
    span = max(total_steps - 1 - optim.warmup_steps, 1)
    progress = min((step - optim.warmup_steps) / span, 1.0)
    return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1 + math.cos(math.pi * progress))


def temperature(step: int, schedule: TemperatureConfig) -> float:
    """τ(step) = max(init · exp(−decay · step), min) (SPEC §1.2), kept > 0 for the quantizers."""
    return max(schedule.init * math.exp(-schedule.decay * step), schedule.min, 1e-30)
