"""Nothing a user measures changes: every registered model's loss, loss terms, statistics, codes,
reconstructions and gradients on a fixed input (train and eval mode), and the weights after a
short training run, are bit-identical to ``tests/fixtures/golden.safetensors`` on the CPU
(``tests/golden/make_golden.py`` says what is stored and rewrites it — only when a change of the
numbers is intended)."""
from __future__ import annotations

import pytest
import torch

import hqvae

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


def test_recomputed_values_are_bit_identical(stored, recomputed):
    values, _ = stored
    assert sorted(recomputed) == sorted(values), (
        f"missing: {sorted(set(values) - set(recomputed))}, new: {sorted(set(recomputed) - set(values))}"
    )
    differ = []
    for key, expected in values.items():
        got = recomputed[key]
        if got.dtype != expected.dtype or got.shape != expected.shape:
            differ.append(f"{key}: {got.dtype}{tuple(got.shape)} != {expected.dtype}{tuple(expected.shape)}")
        elif not torch.equal(got, expected):
            gap = (got.double() - expected.double()).abs().max().item()
            differ.append(f"{key}: max |difference| {gap:.3g}")
    assert not differ, f"{len(differ)} of {len(values)} golden tensors changed:\n" + "\n".join(differ[:40])
