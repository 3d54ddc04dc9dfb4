"""A quantizer kind added from outside the package: a sign quantizer registered here with
``hqvae.quantizers.register_quantizer``, a model of it registered with ``register_model``, run
through the generic model checks of tests/test_models.py and through ``hqvae train`` / ``hqvae eval``.

The registrations live for this module only (``plugin`` restores the tables), so that the other
test files see the package's own models and kinds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import hqvae
from hqvae.cli import main
from hqvae.models import LayerConfig, ModelConfig, register_model
from hqvae.models import config as model_config_module
from hqvae.models import registry, topdown
from hqvae.quantizers import Quantizer, QuantizerOutput, register_quantizer
from hqvae.quantizers.base import code_counts, perplexity_of_counts, straight_through
from hqvae.train.run_dir import RunDir

from golden.make_golden import write_image_folder
from test_models import GENERIC_CHECKS, MODEL_META

KIND, NAME = "sign", "signvae"


class SignQuantizer(Quantizer):
    """Binary codes: each of the ``dim`` channels quantised to ±1, so K = 2^dim codes; index =
    Σ_c [z_c > 0]·2^c. A commitment term β·‖z − sg(e)‖² (batch mean of per-item sums), no
    codebook to learn (the ±1 vectors are a buffer named ``weight``, as models ask of a codebook)."""

    def __init__(self, dim: int, codebook_size: int, beta: float):
        super().__init__()
        if codebook_size != 2**dim:
            raise ValueError(f"a sign quantizer of dim {dim} has codebook_size {2**dim}, got {codebook_size}")
        self.dim, self.codebook_size, self.channel_last, self.beta = dim, codebook_size, False, beta
        bits = (torch.arange(codebook_size)[:, None] >> torch.arange(dim)) & 1  # (K, d)
        self.register_buffer("weight", bits.float() * 2 - 1)
        self.register_buffer("powers", 2 ** torch.arange(dim))

    @property
    def codebook(self) -> torch.Tensor:
        return self.weight

    def forward(self, z: torch.Tensor, return_probs: bool = False) -> QuantizerOutput:
        positive = z.movedim(1, -1) > 0  # (B, *S, d)
        indices = (positive.long() * self.powers).sum(-1)
        codes = self.embed(indices)
        commitment = self.beta * (z - codes.detach()).pow(2).sum() / z.shape[0]
        perplexity = perplexity_of_counts(code_counts(indices, self.codebook_size))
        return QuantizerOutput(straight_through(z, codes), indices, {"commitment": commitment},
                               {"perplexity": perplexity})


def build_sign(layer: LayerConfig) -> SignQuantizer:
    return SignQuantizer(layer.dim, layer.codebook_size, layer.beta)


def signvae(in_channels: int, image_size: tuple[int, int], *, depth: int = 2, dim: int = 4, hidden: int = 16,
            beta: float = 0.25) -> ModelConfig:
    """One injected sign layer at ÷4 and ``depth − 1`` residual sign layers."""
    layer = dict(quantizer=KIND, codebook_size=2**dim, dim=dim, beta=beta)
    layers = [LayerConfig(kind="injected", downsample=4, **layer)]
    layers += [LayerConfig(kind="residual", downsample=None, **layer) for _ in range(depth - 1)]
    return ModelConfig(name=NAME, in_channels=in_channels, image_size=image_size, hidden=hidden, layers=layers,
                       train_defaults={"lr": 1e-3, "batch_size": 8, "epochs": 1})


@pytest.fixture(scope="module", autouse=True)
def plugin():
    """Register the kind and the model for this module; put every table back afterwards."""
    tables = [topdown.QUANTIZER_BUILDERS, model_config_module.QUANTIZER_OPTIONS, registry._REGISTRY, MODEL_META]
    saved = [dict(table) for table in tables]
    stochastic = set(model_config_module.STOCHASTIC_KINDS)
    register_quantizer(KIND, build_sign, options=["beta"])
    register_model(NAME, option_keys=())(signvae)
    MODEL_META[NAME] = {"options": {"hidden": 16, "dim": 4}}
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)
    model_config_module.STOCHASTIC_KINDS.intersection_update(stochastic)


@pytest.mark.parametrize("check", GENERIC_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_generic_checks_pass_on_a_registered_quantizer(check, tmp_path):
    check(NAME, tmp_path)


def test_the_plugin_model_uses_the_registered_quantizer():
    model = hqvae.create_model(NAME, in_channels=1, image_size=16, depth=3)
    assert [type(q) for q in model.groups[0].quantizers] == [SignQuantizer] * 3
    assert not model.stochastic and model.num_layers == 3 and {layer.codebook_size for layer in model.config.layers} == {16}
    x = torch.rand(2, 1, 16, 16)
    codes = model.encode(x)
    assert [tuple(code.shape) for code in codes] == [(2, 4, 4)] * 3 and max(code.max() for code in codes) < 16


def test_config_validation_knows_the_registered_kind_and_its_options():
    layers = [LayerConfig(quantizer=KIND, codebook_size=16, dim=4, downsample=8),
              LayerConfig(quantizer="sq", codebook_size=16, dim=4, downsample=4)]
    config = hqvae.models.model_config("hqvae", 1, 16, layers=layers, hidden=16, beta=0.5, init_variance=5.0)
    assert (config.layers[0].beta, config.layers[0].init_variance) == (0.5, LayerConfig.init_variance)
    assert (config.layers[1].beta, config.layers[1].init_variance) == (LayerConfig.beta, 5.0)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"\['beta'\] are (sign/vq|vq/sign) quantizer options"):
        hqvae.create_model("sqvae", beta=0.5)
    with pytest.raises(ValueError, match=r"must be one of \('vq', 'sq', 'sign'\).*register_quantizer.*'sgn'"):
        ModelConfig(layers=[LayerConfig(quantizer="sgn")]).validate()
    with pytest.raises(ValueError, match="'sign' is already registered"):
        register_quantizer(KIND, build_sign)
    with pytest.raises(ValueError, match=r"\['levels'\] are not LayerConfig fields; valid: \['kind', 'quantizer'"):
        register_quantizer("fsq", build_sign, options=["levels"])


def test_train_and_eval_a_plugin_model_from_the_command_line(tmp_path, capsys):
    images = write_image_folder(tmp_path / "images", 6)
    config = tmp_path / "signvae.yaml"
    config.write_text(
        f"data: {{name: image_folder, root: {str(images)!r}, options: {{channels: 1, cache: false}}}}\n"
        f"model: {{name: {NAME}, overrides: {{hidden: 8}}}}\n"
        "train: {steps: 4, batch_size: 4, log_every: 2, val_every: 2, checkpoint_every: 2, device: cpu}\n"
        "logging: {progress: false}\n"
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert "finished 4 steps" in capsys.readouterr().out
    model = RunDir(out).load_model("best")
    assert model.config.name == NAME and isinstance(model.groups[0].quantizers[0], SignQuantizer)
    results = tmp_path / "results.json"
    assert main(["eval", "--run", str(out), "--limit", "8", "--out", str(results)]) == 0
    assert Path(results).is_file()
