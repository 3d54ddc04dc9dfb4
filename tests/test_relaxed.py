"""The fused SQ training step (``hqvae/quantizers/relaxed.py``) is exact to rounding: its floored
exponentials drop only what float32 cannot hold, its hand-written backward is the gradient
(float64 gradcheck), and on real CIFAR-10 batches the models' loss and every parameter gradient
are as exact as those of the plain autograd path (``fused=False``), also with posteriors
sharp enough that the floor drops most entries — measured against the same model in float64."""
from __future__ import annotations

import copy
import math
import pytest
import torch

import hqvae
from hqvae.data import load_dataset
from hqvae.quantizers import StochasticQuantizer
from hqvae.quantizers import relaxed
from hqvae.quantizers.relaxed import EXP_FLOOR, RelaxedGaussianSample, floored_exp

from conftest import shared_data_root

needs_cifar_copy = pytest.mark.skipif(not (shared_data_root() / "cifar10-jpeg-q75.tar.gz").is_file(),
                                      reason="CIFAR-10 JPEG copy not present")


def test_floored_exp_is_exp_above_the_floor_and_exactly_zero_below():
    a = torch.tensor([0.0, -1.0, -63.9, EXP_FLOOR, -64.5, -90.0, -200.0, -math.inf])
    got = floored_exp(a)
    assert torch.equal(got[:3], torch.exp(a[:3]))
    assert torch.equal(got[3:], torch.zeros(5))
    assert EXP_FLOOR > math.log(torch.finfo(torch.float32).tiny)  # exp never leaves the normal range
    inplace = a.clone()
    assert floored_exp(inplace, out=inplace) is inplace and torch.equal(inplace, got)


@pytest.mark.parametrize("per_row_precision", [False, True])
def test_fused_op_backward_passes_gradcheck_in_float64(per_row_precision):
    """Every output's gradient, with sharp rows so that the floor is active for part of them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    codebook = (3 * torch.randn(6, 3, dtype=torch.float64, generator=g)).requires_grad_(True)
    precision = (torch.rand(5, 1, dtype=torch.float64, generator=g) + 1.0 if per_row_precision
                 else torch.tensor(1.5, dtype=torch.float64)).requires_grad_(True)
    weights = [torch.randn(shape, dtype=torch.float64, generator=g) for shape in ((5, 3), (5,), (5, 6))]

    def outputs(x, codebook, precision):
        torch.manual_seed(1)  # the same Gumbel noise at every evaluation
        z_q, neg_entropy, probs, _ = RelaxedGaussianSample.apply(x, codebook, precision, 0.7)
        return (z_q * weights[0]).sum() + (neg_entropy * weights[1]).sum() + (probs * weights[2]).sum()

    with torch.no_grad():  # the case the floor is there for: some logits far below their row's maximum
        torch.manual_seed(1)
        _, _, probs, _ = RelaxedGaussianSample.apply(x, codebook, precision, 0.7)
    assert (probs == 0).any() and (probs > 0).sum() > 5
    assert torch.autograd.gradcheck(outputs, (x, codebook, precision))


def _loss_and_grads(model, x, fused: bool, seed: int):
    for module in model.modules():
        if isinstance(module, StochasticQuantizer):
            module.fused = fused
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = model(x)
    out.loss.backward()
    grads = {name: p.grad.double() for name, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach().double(), grads


@needs_cifar_copy
@pytest.mark.parametrize("name", ["sqvae", "rsqvae"])
@pytest.mark.parametrize("sharpen", [1.0, 30.0])
def test_fused_step_on_real_cifar10_batches_is_exact_to_rounding(name, sharpen, cifar10_jpeg_subset, monkeypatch):
    """Against the same model in float64 (the same Gumbel noise), the fused float32 step's loss and
    parameter gradients are as close as the plain autograd path's in float32 (the median tensor
    within a factor 2, 5 when sharpened; the worst within 5):
    its error is float32 rounding. Relative errors are per tensor, to the tensor's largest entry;
    gradients that are rounding noise in float64 too (conv biases before BatchNorm) are left out.
    ``sharpen`` divides the layers' s²: at 30 the floor zeroes most posterior entries."""
    draw = relaxed.exponential_noise
    monkeypatch.setattr(relaxed, "exponential_noise", lambda shape, dtype, device: draw(shape, torch.float32, device).to(dtype))
    data = load_dataset("cifar10_folder", "test", root=cifar10_jpeg_subset)
    x = data.get_batch(torch.arange(32))[0]
    torch.manual_seed(0)
    model = hqvae.create_model(name, 3, 32).train()
    torch.manual_seed(1)
    model(x)  # data initialisation of the SQ layers
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, StochasticQuantizer):
                module.variance_bound.div_(sharpen)
                module.set_temperature(0.5)
    exact_loss, exact = _loss_and_grads(copy.deepcopy(model).double(), x.double(), False, seed=2)
    floored = []  # per SQ layer: the fraction of posterior entries the floor set to 0
    hooks = [m.register_forward_hook(lambda m, args, out: floored.append(float((out.probs == 0).float().mean())))
             for m in model.modules() if isinstance(m, StochasticQuantizer)]
    fused_loss, fused = _loss_and_grads(model, x, True, seed=2)
    for hook in hooks:
        hook.remove()
    plain_loss, plain = _loss_and_grads(model, x, False, seed=2)

    if sharpen > 1:
        assert min(floored) > 0.5  # most posterior entries below the floor
    # the loss sums ~10⁵ float32 terms: allow a few ulps (eps 1.2e-7) whatever the plain path's luck (under
    # ATEN_CPU_CAPABILITY=default the plain path landed 1.4e-8 from float64 and the fused one 1.7e-7)
    assert abs(fused_loss - exact_loss) <= 2 * abs(plain_loss - exact_loss) + 1e-6 * abs(exact_loss)
    top = max(g.abs().max() for g in exact.values())
    kept = [key for key, g in exact.items() if g.abs().max() > 1e-4 * top]
    assert len(kept) > len(exact) // 3

    def errors(grads):
        return sorted(float((grads[k] - exact[k]).abs().max() / exact[k].abs().max()) for k in kept)

    fused_errors, plain_errors = errors(fused), errors(plain)
    assert fused_errors[-1] <= 5 * plain_errors[-1] + 1e-5  # the worst tensor (one noisy number)
    middle = len(kept) // 2
    # the median tensor; at sharpen 30 (s² ~ 1e-7) both float32 paths are 4-11% off float64 and the
    # factor between them depends on the CPU's kernels (rsqvae: 3.1x under ATEN_CPU_CAPABILITY=default)
    assert fused_errors[middle] <= (2 if sharpen == 1 else 5) * plain_errors[middle] + 1e-6


def test_hard_variant_decodes_the_argmax_code_with_the_relaxed_gradient():
    """``set_temperature(τ, hard=True)``: training outputs the argmax code, and the fused op's loss and
    gradients equal those of the autograd path's (onehot − sg(w) + w)·E in float64 (same noise)."""
    torch.manual_seed(0)
    quantizer = StochasticQuantizer(4, 6, init_variance=2.0).double().train()
    quantizer.set_temperature(0.7, hard=True)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    weights = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    results = []
    for fused in (True, False):
        quantizer.fused = fused
        quantizer.zero_grad(set_to_none=True)
        z = x.clone().requires_grad_(True)
        torch.manual_seed(1)
        out = quantizer(z)
        assert torch.equal(out.z_q, quantizer.embed(out.indices))  # the value is the argmax code
        (out.loss + (out.z_q * weights).sum()).backward()
        results.append([out.loss.detach(), z.grad, quantizer.weight.grad, quantizer.log_s2.grad])
    for fused_value, plain_value in zip(*results):
        torch.testing.assert_close(fused_value, plain_value, rtol=1e-10, atol=1e-12)
    assert results[0][2].abs().sum() > 0 and results[0][1].abs().sum() > 0
