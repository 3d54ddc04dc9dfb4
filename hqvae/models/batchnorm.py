"""BatchNorm statistics of the model that is evaluated: ``recalibrate_batchnorm``.

A BatchNorm layer's running mean and variance are averaged over *training* forwards. After an SQ
layer, a training forward decodes the relaxed Gumbel-softmax sample (a mixture of codewords under
a broad posterior) while evaluation, encoding and the codec decode the argmax code: the layers
after the quantizer see inputs with another mean and variance than the ones they are normalised
with. A VQ layer decodes its nearest code in both modes, so its statistics differ only by the
running average's lag. Recomputing the statistics on eval-mode forwards over training data
(the "BN recalibration" of network compression and architecture search) changes no trained
parameter; measured in ``benchmarks/bn_recalibration.py`` for both kinds. (``torch.optim.swa_utils.update_bn``
does the same averaging but puts the whole model in training mode, where SQ layers sample.)
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..quantizers.base import Quantizer

BATCHNORM = nn.modules.batchnorm._BatchNorm


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], sample: bool = False) -> int:
    """Replace every BatchNorm layer's running statistics by their plain average over ``batches``
    (each (B, C, H, W), the model's inputs) forwarded with the rest of the model in eval mode, so
    that every quantizer decodes its argmax code; returns the number of items seen (0: the model
    has no BatchNorm, or ``batches`` was empty — then nothing changed). ``sample``: stochastic
    quantizers decode training's relaxed sample instead (at their set temperature), so the result is
    what training's running averages estimate, without their lag.

    Per layer, over N batches with batch means μ_n and (unbiased) variances σ²_n:
    running_mean = mean_n μ_n, running_var = mean_n σ²_n (PyTorch's ``momentum=None``). Trained
    parameters, other buffers and the modules' train/eval flags are left as they were.
    """
    layers = [m for m in model.modules() if isinstance(m, BATCHNORM) and m.track_running_stats]
    if not layers:
        return 0
    flags = {m: m.training for m in model.modules()}
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    model.eval()
    if sample:
        for m in model.modules():
            if isinstance(m, Quantizer) and m.stochastic:
                m.train()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    items, done = 0, False
    try:
        for x in batches:
            model(x)
            items += x.shape[0]
        done = items > 0
    finally:
        for m, (momentum, mean, var, count) in zip(layers, saved):
            m.momentum = momentum
            if not done:  # an empty iterable or an error: the statistics as they were
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        for m, training in flags.items():
            m.train(training)
    return items
