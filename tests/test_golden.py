"""Nothing a user measures changes: every registered model's loss, loss terms, statistics, codes,
reconstructions and gradients on a fixed input (train and eval mode), and the weights after a
short training run, match ``tests/fixtures/golden.safetensors`` (``tests/golden/make_golden.py``
says what is stored and rewrites it — only when a change of the numbers is intended).

"Match" holds on any CPU: float results depend on the kernels a CPU selects (SIMD width, oneDNN's
convolution, MKL's BLAS, the thread count), so the comparison (``tests/golden/compare.py``) allows,
per kind of quantity and relative to each tensor's own scale (with a floor for tensors that are
pure rounding noise), 10-100× the spread measured across 11 kernel selections on one CPU
(``tests/golden/spread.py`` → ``tests/golden/spread.json``; method and figures in
docs/golden-tolerances.md):

    kind       measured largest deviation    tolerance
    scalar     1.2e-5                        3e-4     (loss, terms, logs)
    recon      2.4e-6                        1e-4     (x̂, decode)
    grad       2.9e-4 (1.7e-4 above floor)   3e-3     (gradients and their fingerprints)
    train_run  2.0·lr·steps                  4·lr·steps + 1e-3 of the scale (Adam, 5 steps)
    codes      0 changed                     exact

The mutation checks below recompute one model with a real change and require the comparison to
report it: β 0.26 instead of 0.25 (vqvae), s² larger by 1e-3 (sqvae; a one-ulp change of s²,
≈1e-7 relative, moves every value less than the CPUs do and is not caught: no comparison that
holds across CPUs can), and two residual blocks of the encoder in swapped order (vqvae).
Bit-exact comparisons stay where both sides run on one machine (resume against an uninterrupted
run, compress against decompress: tests/test_reliability.py, tests/test_priors.py).
"""
from __future__ import annotations

import pytest
import torch

import hqvae

from golden import compare
from golden import make_golden as golden


@pytest.fixture(scope="module")
def stored() -> tuple[dict[str, torch.Tensor], dict]:
    return golden.load()


@pytest.fixture(scope="module")
def recomputed() -> dict[str, torch.Tensor]:
    return golden.compute()


def test_golden_file_covers_every_registered_model(stored):
    values, meta = stored
    assert meta["models"] == hqvae.list_models()
    assert meta["torch_version"] == torch.__version__, "golden values are pinned to one torch version"
    for name in hqvae.list_models():
        assert f"{name}/train/loss" in values and f"{name}/eval/loss" in values
    for model in meta["train_models"]:
        assert any(key.startswith(f"train_run/{model}/") for key in values)


def test_every_golden_key_has_a_kind_and_a_tolerance(stored):
    values, _ = stored
    kinds = {compare.kind(key) for key in values}
    assert kinds == set(compare.KINDS)
    assert all(compare.kind(key) == "codes" for key in values if "/codes/" in key or "/encode/" in key)
    assert all(not values[key].is_floating_point() for key in values if compare.kind(key) == "codes")


def test_recomputed_values_match_within_the_measured_tolerances(stored, recomputed):
    values, _ = stored
    problems = compare.compare(values, recomputed)
    assert not problems, f"{len(problems)} of {len(values)} golden tensors changed:\n" + "\n".join(problems[:40])


def test_comparison_reports_a_shape_a_dtype_a_missing_and_a_new_key(stored):
    values, _ = stored
    got = dict(values)
    got["vqvae/train/loss"] = values["vqvae/train/loss"].double()
    got["vqvae/train/x_hat"] = values["vqvae/train/x_hat"][:1]
    del got["vqvae/eval/loss"]
    got["vqvae/extra"] = torch.zeros(1)
    problems = "\n".join(compare.compare(values, got))
    for key in ("vqvae/train/loss", "vqvae/train/x_hat", "vqvae/eval/loss: missing", "vqvae/extra: new"):
        assert key in problems


def test_noise_at_rounding_level_passes_and_a_changed_code_fails(stored):
    """1e-6 of each tensor's scale (the spread of a CPU, 100× the float32 epsilon) passes; one code
    changed fails."""
    values, _ = stored
    generator = torch.Generator().manual_seed(0)
    noisy = {}
    for key, value in values.items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=generator, dtype=torch.float64).clamp(-1, 1)
            noisy[key] = (value.double() + 1e-6 * value.double().abs().max() * noise).to(value.dtype)
        else:
            noisy[key] = value
    assert compare.compare(values, noisy) == []
    codes = values["vqvae/eval/codes/0"].clone()
    codes.view(-1)[0] = (codes.view(-1)[0] + 1) % 16
    assert compare.compare(values, {**values, "vqvae/eval/codes/0": codes}) == [
        "vqvae/eval/codes/0 (codes): 1 codes changed > tolerance 0"]


# --- mutation checks: a real change of one model must fail the comparison ------------------------


def _beta_026(model: torch.nn.Module) -> None:
    changed = 0
    for module in model.modules():
        if getattr(module, "beta", None) == 0.25:
            module.beta, changed = 0.26, changed + 1
    assert changed, "no layer with β = 0.25"


def _s2_larger(model: torch.nn.Module, factor: float = 1 + 1e-3) -> None:
    """s²₀ (``variance_bound``) times ``factor``, right after the layer's data initialisation."""
    layers = [module for module in model.modules() if hasattr(module, "variance_bound")]
    assert layers, "no SQ layer"
    for layer in layers:
        def scale(layer=layer) -> None:
            with torch.no_grad():
                layer.variance_bound.mul_(factor)

        initialise = layer._initialise

        def initialise_then_scale(x, layer=layer, initialise=initialise, scale=scale) -> None:
            initialise(x)
            scale()

        layer._initialise = initialise_then_scale
        if bool(layer.initialized):
            scale()


def _swap_residual_blocks(model: torch.nn.Module) -> None:
    blocks = model.encoder.stages[0][-1]
    assert len(blocks) == 2 and type(blocks[0]) is type(blocks[1])
    blocks[0], blocks[1] = blocks[1], blocks[0]


MUTATIONS = {
    "beta 0.26 instead of 0.25": ("vqvae", _beta_026),
    "s2 1e-3 larger": ("sqvae", _s2_larger),
    "two encoder blocks swapped": ("vqvae", _swap_residual_blocks),
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_real_change_fails_the_comparison(stored, mutation):
    values, _ = stored
    name, change = MUTATIONS[mutation]
    expected = {key: value for key, value in values.items() if key.startswith(f"{name}/")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert compare.compare(expected, golden.model_values(name)) == []  # the model alone passes
        problems = compare.compare(expected, golden.model_values(name, change))
    finally:
        torch.set_num_threads(threads)
    assert problems, f"{mutation}: the golden comparison did not notice"
