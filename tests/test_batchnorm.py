"""``recalibrate_batchnorm``: running statistics from eval-mode (argmax) forwards, nothing else touched."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hqvae
from hqvae.models import recalibrate_batchnorm

SIZE = 16
TINY = {"hidden": 16, "codebook_size": 16, "dim": 8}


def model_after_one_training_step(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = hqvae.create_model(name, in_channels=1, image_size=SIZE, **TINY)
    model.train()
    model(torch.rand(8, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))  # data init, EMA, BN move
    return model


def batches(count: int = 3, size: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return [torch.rand(size, 1, SIZE, SIZE, generator=generator) for _ in range(count)]


def batchnorm_inputs(model: nn.Module, xs: list[torch.Tensor], quantizers_train: bool = False) -> dict[str, list[torch.Tensor]]:
    """Every BatchNorm layer's input on forwards of ``xs`` with the BatchNorm layers normalising by
    their batch's statistics and the rest of the model in eval mode (argmax codes) or, with
    ``quantizers_train``, in training mode (relaxed samples), recorded by hooks."""
    seen: dict[str, list[torch.Tensor]] = {}
    model = copy.deepcopy(model).train(quantizers_train)
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
            hooks.append(m.register_forward_pre_hook(lambda m, args, name=name: seen.setdefault(name, []).append(args[0])))
    with torch.no_grad():
        for x in xs:
            model(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("name", ["sqvae2", "rsqvae", "vqvae2", "rqvae"])
def test_running_statistics_are_the_average_of_the_argmax_forwards_batch_statistics(name):
    model = model_after_one_training_step(name)
    xs = batches()
    seen = batchnorm_inputs(model, xs)
    assert recalibrate_batchnorm(model, xs) == 12
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert layers
    for layer_name, layer in layers:
        inputs = seen[layer_name]
        mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for x in inputs]).mean(0)
        torch.testing.assert_close(layer.running_mean, mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(layer.running_var, var, rtol=1e-4, atol=1e-6)
        assert layer.momentum == 0.1  # restored


def test_sq_statistics_come_from_argmax_codes_not_relaxed_samples():
    """After an SQ layer the relaxed samples of a training forward have other statistics than the
    argmax codes: the recalibrated statistics are the argmax ones."""
    model = model_after_one_training_step("sqvae2")
    xs = batches()
    relaxed = batchnorm_inputs(model, xs, quantizers_train=True)
    recalibrate_batchnorm(model, xs)
    after_quantizer = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and n.startswith("decoder")]
    gaps = [(model.get_submodule(n).running_var - torch.stack([x.transpose(0, 1).flatten(1).var(dim=1)
                                                                for x in relaxed[n]]).mean(0)).abs().max()
            for n in after_quantizer]
    assert max(gaps) > 1e-3


@pytest.mark.parametrize("name", ["sqvae2", "rqvae"])  # SQ; EMA VQ codebooks, which only training moves
def test_nothing_but_the_batchnorm_statistics_changes_and_the_flags_are_restored(name):
    model = model_after_one_training_step(name)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, batches())
    statistics = {f"{n}.{b}" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
                  for b in ("running_mean", "running_var", "num_batches_tracked")}
    after = model.state_dict()
    assert {k for k in before if not torch.equal(before[k], after[k])} <= statistics
    assert any(not torch.equal(before[k], after[k]) for k in statistics)
    assert all(m.training for m in model.modules())


def test_no_batches_or_an_error_leave_the_statistics_as_they_were():
    model = model_after_one_training_step("sqvae2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert recalibrate_batchnorm(model, []) == 0
    with pytest.raises(ValueError, match="input channel"):
        recalibrate_batchnorm(model, [batches(1)[0], torch.rand(2, 3, 5, 5)])  # wrong channels on the 2nd batch
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_sample_gathers_the_relaxed_samples_statistics_and_leaves_vq_codebooks_alone():
    """``sample=True``: the statistics of training's relaxed forwards (the same Gumbel draws), what
    training's running averages estimate; VQ layers (EMA codebooks) stay in eval mode."""
    model = model_after_one_training_step("sqvae2")
    xs = batches()
    torch.manual_seed(3)
    relaxed = batchnorm_inputs(model, xs, quantizers_train=True)
    torch.manual_seed(3)
    recalibrate_batchnorm(model, xs, sample=True)
    for layer_name, inputs in relaxed.items():
        layer = model.get_submodule(layer_name)
        mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.transpose(0, 1).flatten(1).var(dim=1) for x in inputs]).mean(0)
        torch.testing.assert_close(layer.running_mean, mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(layer.running_var, var, rtol=1e-4, atol=1e-6)
    vq = model_after_one_training_step("rqvae")
    before = {k: v.clone() for k, v in vq.state_dict().items() if "running_" not in k and "num_batches_tracked" not in k}
    recalibrate_batchnorm(vq, xs, sample=True)
    assert all(torch.equal(v, vq.state_dict()[k]) for k, v in before.items())
