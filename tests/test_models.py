"""Tests of hqvae.models: the registry contract on every named model, the SPEC §2–3 losses
computed by hand on tiny models, partial decoding, and save/load."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import hqvae
from hqvae.models import HQVAE, LayerConfig, ModelConfig, model_config
from hqvae.models.pretrained import model_class_for
from hqvae.models.registry import balanced_rate_weight
from hqvae.quantizers import ResidualQuantizer, StochasticQuantizer, VectorQuantizer
from hqvae.quantizers.registry import SQOptions, VQOptions

TINY = dict(hidden=16, codebook_size=16, dim=8)
PUBLIC_SQ_START = {"sq_init": "normal", "var_floor": True, "bounded_variance": False, "affine_codebook": False}  # the public SQ-VAE code's
SIZE = 16  # ÷8 top level -> 2×2 grids, enough for BatchNorm with batch 2
BATCH = 2
NAMES = [name for name in hqvae.list_models() if model_class_for(name) is HQVAE]  # PQ-VAE: tests/test_pqvae.py


def tiny(name: str, in_channels: int = 3, image_size=SIZE, **overrides) -> HQVAE:
    torch.manual_seed(0)
    return hqvae.create_model(name, in_channels=in_channels, image_size=image_size, **{**TINY, **overrides})


def batch(channels: int = 3, height: int = SIZE, width: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.rand(BATCH, channels, height, width, generator=torch.Generator().manual_seed(seed))


def trained_step(model: HQVAE, x: torch.Tensor) -> None:
    """One forward in training mode, so BatchNorm statistics and EMA codebooks move off their init."""
    model.train()
    model(x)


def capture_io(module: torch.nn.Module) -> dict:
    """Record the first positional input and the output of ``module`` on each call."""
    seen: dict = {}

    def hook(_, args, output):
        seen["input"], seen["output"] = args[0].detach(), output

    module.register_forward_hook(hook)
    return seen


def sum_of_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(value for key, value in terms.items() if key != "mse")


# ----------------------------------------------------------------------------- generic: every registered model
#
# One set of checks, run on every ``hqvae.list_models()`` name at a tiny size (timm style); other
# test files run them on models of their own (tests/test_quantizer_plugin.py). What differs
# between models is in ``MODEL_META``; the model-specific tests further down keep the rest.

PQ_TINY = dict(hidden=16, dim=8, depth=3, groups=2, codebook_size=8, code_dim=4)
MODEL_META: dict[str, dict] = {  # per model, only where it differs: "options" (create_model overrides)
    "pqvae": {"options": PQ_TINY},
    "global_rvq": {"options": PQ_TINY},
}


def generic_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return hqvae.create_model(name, in_channels=3, image_size=SIZE, **MODEL_META.get(name, {}).get("options", TINY))


def generic_input(model) -> torch.Tensor:
    return batch(model.config.in_channels, *model.config.image_size)


def check_forward_contract(name: str, tmp_path) -> None:
    """x̂ of the input's shape in [0, 1], codes one long (B, ...) tensor per layer in the shapes
    ``code_shapes`` says, loss = Σ terms except "mse", finite, a perplexity per layer; train and eval."""
    model = generic_model(name)
    x = generic_input(model)
    for training in (True, False):
        model.train(training)
        out = model(x)
        assert isinstance(out, hqvae.ModelOutput)
        assert out.x_hat.shape == x.shape and torch.isfinite(out.x_hat).all()
        assert out.x_hat.min() >= 0 and out.x_hat.max() <= 1
        assert isinstance(out.codes, list) and len(out.codes) == model.num_layers == len(model.config.layers)
        assert [tuple(code.shape) for code in out.codes] == [(BATCH, *shape) for shape in model.code_shapes()]
        assert all(code.dtype == torch.long and 0 <= code.min() and code.max() < 2**20 for code in out.codes)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        assert {"recon", "mse"} <= set(out.terms) and all(torch.isfinite(v) for v in out.terms.values())
        torch.testing.assert_close(out.loss.detach(), sum_of_terms(out.terms), rtol=1e-6, atol=1e-5)
        assert all(f"perplexity/{layer}" in out.logs for layer in range(model.num_layers))


def check_backward(name: str, tmp_path) -> None:
    """One backward gives every trainable parameter a finite gradient."""
    model = generic_model(name)
    model(generic_input(model)).loss.backward()
    for param_name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{param_name} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"


def check_encode_decode(name: str, tmp_path) -> None:
    """encode -> one code tensor per layer, the eval forward's codes; decode of them -> the eval
    forward's x̂; encode and decode leave the training flags and the state alone."""
    model = generic_model(name)
    x = generic_input(model)
    trained_step(model, x)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    codes = model.encode(x)
    decoded = model.decode(codes)
    assert model.training and all(module.training for module in model.modules())
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())
    model.eval()
    forward = model(x)
    assert len(codes) == model.num_layers and all(torch.equal(a, b) for a, b in zip(codes, forward.codes, strict=True))
    assert decoded.shape == x.shape
    # the straight-through ẑ + (e − ẑ) of a VQ layer differs from e by float rounding
    torch.testing.assert_close(decoded, forward.x_hat, rtol=0, atol=1e-6)


def check_decode_every_prefix(name: str, tmp_path) -> None:
    """decode(codes, upto=m) for m = 1..L: an image of the input's shape, the same as decoding the
    prefix codes[:m]; upto=L is the full decode."""
    model = generic_model(name)
    x = generic_input(model)
    trained_step(model, x)
    codes = model.encode(x)
    for upto in range(1, model.num_layers + 1):
        partial = model.decode(codes, upto=upto)
        assert partial.shape == x.shape and torch.isfinite(partial).all()
        assert torch.equal(partial, model.decode(codes[:upto]))
    assert torch.equal(model.decode(codes, upto=model.num_layers), model.decode(codes))


def check_save_load_round_trip(name: str, tmp_path) -> None:
    """save_pretrained / from_pretrained: the same config, weights and eval outputs, in eval mode."""
    model = generic_model(name)
    x = generic_input(model)
    trained_step(model, x)
    model.eval()
    expected = model(x)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["model_type"] == name and document["hqvae_version"] == hqvae.__version__
    loaded = hqvae.from_pretrained(tmp_path)
    assert type(loaded) is type(model) and not loaded.training and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    got = loaded(x)
    assert torch.equal(got.x_hat, expected.x_hat) and torch.equal(got.loss, expected.loss)
    assert all(torch.equal(a, b) for a, b in zip(got.codes, expected.codes, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(loaded.encode(x), model.encode(x), strict=True))


def check_eval_determinism(name: str, tmp_path) -> None:
    """In eval mode, forward and encode give the same result twice."""
    model = generic_model(name)
    x = generic_input(model)
    trained_step(model, x)
    model.eval()
    first, second = model(x), model(x)
    assert torch.equal(first.x_hat, second.x_hat) and torch.equal(first.loss, second.loss)
    assert all(torch.equal(a, b) for a, b in zip(first.codes, second.codes, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(model.encode(x), model.encode(x), strict=True))


def check_temperature(name: str, tmp_path) -> None:
    """set_temperature reaches every stochastic layer (τ ≤ 0 is refused); a no-op for deterministic
    models; training goes on at the new τ."""
    model = generic_model(name)
    model.set_temperature(0.25)
    if model.stochastic:
        tempered = [m for m in model.modules() if getattr(m, "stochastic", False) and hasattr(m, "temperature")]
        assert tempered and all(module.temperature == 0.25 for module in tempered)
        with pytest.raises(ValueError):
            model.set_temperature(0.0)
    model.train()
    assert torch.isfinite(model(generic_input(model)).loss)


GENERIC_CHECKS = [check_forward_contract, check_backward, check_encode_decode, check_decode_every_prefix,
                  check_save_load_round_trip, check_eval_determinism, check_temperature]


@pytest.mark.parametrize("check", GENERIC_CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", hqvae.list_models())
def test_generic(name, check, tmp_path):
    check(name, tmp_path)


# ----------------------------------------------------------------------------- registry-wide contract


def test_registry_names():
    assert NAMES == ["vqvae", "sqvae", "vqvae2", "sqvae2", "rqvae", "rsqvae", "hqvae"]
    with pytest.raises(ValueError, match="available"):
        hqvae.create_model("nope")


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_with_the_fix(name):
    model = tiny(name)
    with pytest.raises(ValueError, match=r"expected 3 input channel.*in_channels=1"):
        model(batch(channels=1))
    factor = model.config.max_downsample
    with pytest.raises(ValueError, match=rf"not divisible by {factor}.*multiple of {factor}"):
        model(batch(height=SIZE + 2))
    with pytest.raises(ValueError, match=r"multiple of"):
        model.encode(batch(width=SIZE - 2))
    with pytest.raises(ValueError, match=r"4-D batch.*unsqueeze"):
        model(batch()[0])
    with pytest.raises(ValueError, match=r"floating-point"):
        model((batch() * 255).long())


@pytest.mark.parametrize("name", NAMES)
def test_unknown_override_lists_valid_keys(name):
    with pytest.raises(ValueError, match=r"unknown override.*'no_such_key'.*valid keys:.*codebook_size.*hidden"):
        hqvae.create_model(name, no_such_key=1)


@pytest.mark.parametrize(
    "name, option, value",
    [("sqvae", "beta", 0.5), ("rsqvae", "ema", False), ("vqvae", "init_variance", 5.0), ("rqvae", "sq_init", "data"),
     ("pqvae", "beta", 0.5), ("global_rvq", "logit_scale", 5.0)],
)
def test_options_of_another_quantizer_kind_are_rejected_with_the_valid_list(name, option, value):
    with pytest.raises(ValueError, match=rf"\['{option}'\] are .*quantizer options.*valid keys: \[.*'hidden'"):
        hqvae.create_model(name, in_channels=1, image_size=16, **{option: value})


def test_quantizer_options_are_set_on_the_layers_of_their_kind():
    assert tiny("sqvae", init_variance=5.0).config.layers[0].options.init_variance == 5.0
    assert tiny("hqvae", quantizer="vq", beta=0.5).groups[0].quantizers[1].beta == 0.5
    with pytest.raises(ValueError, match=r"\['init_variance'\]"):
        tiny("hqvae", quantizer="vq", init_variance=5.0)
    layers = [LayerConfig(quantizer="vq", downsample=8), LayerConfig(quantizer="sq", downsample=4)]
    config = tiny("hqvae", layers=layers, beta=0.5, init_variance=5.0).config
    assert config.layers[0].options == VQOptions(beta=0.5) and config.layers[1].options == SQOptions(init_variance=5.0)


@pytest.mark.parametrize("name", NAMES)
def test_from_pretrained_rejects_another_models_weights(name, tmp_path):
    other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]
    tiny(name).save_pretrained(tmp_path / "a")
    tiny(other, hidden=8).save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises(ValueError, match=rf"do not belong.*model_type '{name}'.*(missing keys|unexpected keys|shape)"):
        hqvae.from_pretrained(tmp_path / "a")


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 80, 32)], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_dataset_sizes(name, shape):
    channels, height, width = shape
    model = tiny(name, in_channels=channels, image_size=(height, width))
    out = model(batch(channels, height, width))
    assert out.x_hat.shape == (BATCH, *shape) and torch.isfinite(out.loss)
    assert [tuple(c.shape[1:]) for c in out.codes] == model.code_shapes()


def test_size_defaults():
    assert model_config("sqvae", 1, 28).downsamples == [4]
    assert model_config("sqvae2", 1, 28).downsamples == [4, 2]
    assert model_config("sqvae2", 3, 32).downsamples == [8, 4]
    assert model_config("hqvae", 3, 32).downsamples == [8, 4] and len(model_config("hqvae").layers) == 4
    assert len(model_config("rsqvae").layers) == 4 and model_config("rsqvae").downsamples == [4]
    assert model_config("sqvae2", 3, 64).hidden == 128
    assert model_config("sqvae2", 3, 256).downsamples == [16, 8]
    assert model_config("sqvae2", 1, (80, 32)).downsamples == [8, 4]
    assert model_config("sqvae2", 3, 64, downsamples=(16, 8, 4)).downsamples == [16, 8, 4]
    with pytest.raises(ValueError, match="multiple of 4"):
        model_config("sqvae", 3, 30)


# ----------------------------------------------------------------------------- SQ losses by hand


def sq_layer_terms(z: torch.Tensor, quantizer: StochasticQuantizer, z_q: torch.Tensor | None = None):
    """(discrete, continuous, hard code) of one SQ layer, recomputed from its input z (B, d, h, w):
    P = softmax(−||z − e_k||² / 2s²); discrete = Σ P log P / B; continuous = Σ ||z − z_q||² / 2s² / B,
    with z_q the argmax code unless the (training) sample is given."""
    rows = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double()
    codebook = quantizer.weight.detach().double()
    s2 = 1.0 + quantizer.log_s2.detach().double().exp()  # var_floor: the public SQ-VAE parametrisation
    logits = -torch.cdist(rows, codebook).pow(2) / (2 * s2)
    probs = logits.softmax(-1)
    discrete = (probs * probs.log()).sum() / z.shape[0]
    hard = logits.argmax(-1)
    sample = codebook[hard] if z_q is None else z_q.permute(0, 2, 3, 1).reshape_as(rows).double()
    continuous = (rows - sample).pow(2).sum() / (2 * s2) / z.shape[0]
    return discrete, continuous, hard


def arelbo(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(D/2) · log(mean_batch Σ_pixels (x̂ − x)²)."""
    dims = x[0].numel()
    return 0.5 * dims * torch.log((x_hat.double() - x.double()).pow(2).sum((1, 2, 3)).mean())


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_sq_loss_is_the_sum_of_its_spec_parts(training):
    model = tiny("sqvae2", rate_weight=1.0, **PUBLIC_SQ_START)  # the ELBO's own terms, unweighted
    with torch.no_grad():  # distinct variances per layer: each layer must use its own
        model.groups[0].quantizer.log_s2.fill_(math.log(0.5))
        model.groups[1].quantizer.log_s2.fill_(math.log(3.0))
    seen = [capture_io(group.quantizer) for group in model.groups]
    x = batch()
    model.train(training)
    out = model(x)

    expected = {"recon": arelbo(out.x_hat.detach(), x)}
    for layer, record in enumerate(seen):
        z_q = record["output"].z_q.detach() if training else None
        discrete, continuous, hard = sq_layer_terms(record["input"], model.groups[layer].quantizer, z_q)
        expected[f"discrete/{layer}"] = discrete
        expected[f"continuous/{layer}"] = continuous
        assert torch.equal(out.codes[layer].flatten(), hard)
    assert set(out.terms) - {"mse"} == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(out.terms[key].double(), value, rtol=1e-5, atol=1e-4, msg=key)
    torch.testing.assert_close(out.loss.double(), sum(expected.values()), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(out.terms["mse"], F.mse_loss(out.x_hat.detach(), x))


def test_residual_sq_terms_use_each_layers_variance_and_the_summed_variance():
    model = tiny("rsqvae", depth=3, **PUBLIC_SQ_START)
    group = model.groups[0]
    variances = [0.5, 2.0, 7.0]  # exp(log_s2); s_l² = 1 + these
    with torch.no_grad():
        for quantizer, value in zip(group.quantizers, variances):
            quantizer.log_s2.fill_(math.log(value))
    seen = capture_io(group.quantizer)
    x = batch()
    model.eval()
    out = model(x)

    z = seen["input"].double()
    residual = z
    for depth, quantizer in enumerate(group.quantizers):
        discrete, _, hard = sq_layer_terms(residual, quantizer)
        torch.testing.assert_close(out.terms[f"discrete/{depth}"].double(), discrete, rtol=1e-5, atol=1e-4)
        assert torch.equal(out.codes[depth].flatten(), hard)
        residual = residual - quantizer.weight.detach().double()[out.codes[depth]].permute(0, 3, 1, 2)
    summed = sum(1.0 + v for v in variances)
    continuous = residual.pow(2).sum() / (2 * summed) / BATCH  # ||ẑ − Σ_l z_q,l||² / (2 Σ_l s_l²)
    torch.testing.assert_close(out.terms["continuous/2"].double(), continuous, rtol=1e-5, atol=1e-4)
    assert "continuous/0" not in out.terms and "continuous/1" not in out.terms
    last_only = residual.pow(2).sum() / (2 * (1.0 + variances[-1])) / BATCH
    assert not torch.isclose(out.terms["continuous/2"].double(), last_only, rtol=1e-2)
    expected = arelbo(out.x_hat, x) + sum(out.terms[f"discrete/{d}"] for d in range(3)) + continuous
    torch.testing.assert_close(out.loss.double(), expected.double(), rtol=1e-5, atol=1e-3)


def test_deterministic_loss_is_mean_reduced():
    """VQ-only: loss = mse + Σ_l β · mean ||ẑ_l − sg(e)||² (per-item sums divided by n_l·d_l)."""
    model = tiny("vqvae2")
    x = batch()
    trained_step(model, x)  # k-means initialisation happens on this first training batch
    seen = [capture_io(group.quantizer) for group in model.groups]
    model.eval()
    out = model(x)
    expected = F.mse_loss(out.x_hat, x)
    torch.testing.assert_close(out.terms["recon"], expected)
    for layer, (group, record) in enumerate(zip(model.groups, seen)):
        codes = group.quantizer.weight[out.codes[layer]].permute(0, 3, 1, 2)
        commitment = 0.25 * (record["input"] - codes).pow(2).mean()
        torch.testing.assert_close(out.terms[f"commitment/{layer}"], commitment)
        expected = expected + commitment
    torch.testing.assert_close(out.loss, expected)


# ----------------------------------------------------------------------------- partial decoding


@pytest.mark.parametrize("name", ["rqvae", "rsqvae"])
def test_decode_upto_m_is_the_decoded_partial_sum(name):
    model = tiny(name)
    x = batch()
    trained_step(model, x)
    codes = model.encode(x)
    quantizers = model.groups[0].quantizers
    assert len(codes) == len(quantizers) == 4
    partial = torch.zeros(BATCH, TINY["dim"], *codes[0].shape[1:])
    model.eval()
    for m in range(1, len(codes) + 1):
        partial = partial + quantizers[m - 1].codebook[codes[m - 1]].permute(0, 3, 1, 2)
        with torch.no_grad():
            expected = model.decode_latents([partial])
        torch.testing.assert_close(model.decode(codes, upto=m), expected, rtol=0, atol=1e-6)
        assert torch.equal(model.decode(codes, upto=m), model.decode(codes[:m]))
    progressive = model.decode_progressive(codes)
    assert len(progressive) == 4 and torch.equal(progressive[-1], model.decode(codes))


@pytest.mark.parametrize("fill", ["mean", "zero"])
def test_decode_fills_a_missing_injected_layer(fill):
    model = tiny("sqvae2")
    x = batch()
    model.eval()
    codes = model.encode(x)
    top, bottom = model.groups[0].quantizer, model.groups[1].quantizer
    expected_code = bottom.weight.mean(0) if fill == "mean" else torch.zeros(TINY["dim"])
    bottom_latent = expected_code.reshape(1, -1, 1, 1).expand(BATCH, -1, *codes[1].shape[1:])
    with torch.no_grad():
        expected = model.decode_latents([top.weight[codes[0]].permute(0, 3, 1, 2), bottom_latent])
    torch.testing.assert_close(model.decode(codes, upto=1, fill=fill), expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="upto"):
        model.decode(codes, upto=3)
    with pytest.raises(ValueError, match=r"codes\[1\] has shape"):
        model.decode([codes[0], codes[1][:, :1]])


# ----------------------------------------------------------------------------- configuration


def test_sqvae_matches_the_public_cifar10_network():
    assert model_config("sqvae").reference == ""  # the registry's SQ layers start from data
    config = model_config("sqvae", **PUBLIC_SQ_START)
    assert "sony/sqvae" in config.reference
    assert config.train_defaults["lr"] == 1e-3 and config.train_defaults["batch_size"] == 32
    model = HQVAE(config)
    # net_32 encoder 154,336 + decoder 154,147 + codebook 512×64 + log_s2 (counted by hand)
    assert sum(p.numel() for p in model.parameters()) == 154_336 + 154_147 + 512 * 64 + 1
    quantizer = model.groups[0].quantizer
    assert (quantizer.codebook_size, quantizer.dim, quantizer.var_floor) == (512, 64, True)
    assert quantizer.variance().item() == pytest.approx(21.0)
    assert model.code_shapes() == [(8, 8)]
    assert model_config("sqvae", hidden=32, **PUBLIC_SQ_START).reference == ""


def test_registry_sq_layers_start_from_data_and_saved_configs_keep_their_start():
    from hqvae.models.config import LayerConfig, ModelConfig
    from hqvae.models.registry import SQ_START

    for name in ("sqvae", "sqvae2", "rsqvae", "hqvae"):
        for layer in model_config(name).layers:
            assert {key: getattr(layer.options, key) for key in SQ_START} == SQ_START
    for layer in model_config("vqvae2").layers:
        assert layer.options.vq_init == "kmeans"
    assert {name: {layer.options.affine_codebook for layer in model_config(name).layers}
            for name in ("sqvae", "sqvae2", "rsqvae")} == {"sqvae": {True}, "sqvae2": {True}, "rsqvae": {False}}
    assert not model_config("sqvae", affine_codebook=False).layers[0].options.affine_codebook
    assert not any(layer.options.affine_codebook for layer in model_config("sqvae2", affine_codebook=False).layers)
    # a config.json written before these keys existed describes a model that started the public way
    old = model_config("sqvae", **PUBLIC_SQ_START).to_dict()
    for layer in old["layers"]:
        for key in ("sq_init", "bounded_variance", "init_noise", "init_variance_ratio"):
            del layer["options"][key]
    assert ModelConfig.from_dict(old).layers[0] == LayerConfig(**old["layers"][0])
    assert ModelConfig.from_dict(old).layers[0].options.sq_init == "normal"


def test_config_round_trip_and_unknown_keys():
    config = model_config("hqvae", 1, (80, 32), **TINY)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown ModelConfig key.*'colour'.*valid keys"):
        ModelConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match=r"unknown LayerConfig key.*'size'.*valid keys"):
        LayerConfig.from_dict({"size": 3})
    with pytest.raises(ValueError, match=r"unknown vq quantizer option\(s\) \['bta'\]; valid: \['beta', 'ema'"):
        LayerConfig.from_dict({"quantizer": "vq", "options": {"bta": 0.5}})
    with pytest.raises(ValueError, match=r"unknown vq quantizer option\(s\) \['affine_codebook', 'bounded_variance', 'init_noise'"):
        LayerConfig(quantizer="vq", options=SQOptions())  # another kind's
    # the flat format (every kind's options as layer keys) keeps the options of the layer's kind
    assert LayerConfig.from_dict({"quantizer": "vq", "beta": 0.5, "init_variance": 3.0}) == LayerConfig(
        quantizer="vq", options=VQOptions(beta=0.5))


def test_invalid_layer_lists_are_rejected():
    with pytest.raises(ValueError, match="first layer must be kind='injected'"):
        ModelConfig(layers=[LayerConfig(kind="residual", downsample=None)]).validate()
    with pytest.raises(ValueError, match="strictly decrease"):
        ModelConfig(layers=[LayerConfig(downsample=4), LayerConfig(downsample=8)]).validate()
    with pytest.raises(ValueError, match="same dim and quantizer"):
        ModelConfig(layers=[LayerConfig(), LayerConfig(kind="residual", downsample=None, quantizer="vq")]).validate()


def test_mixed_layer_list_via_overrides():
    layers = [LayerConfig(quantizer="vq", downsample=8), LayerConfig(quantizer="sq", downsample=4)]
    model = tiny("hqvae", layers=layers)
    assert model.stochastic and model.config.train_defaults["temperature_init"] == 1.0
    out = model(batch())
    assert {"commitment/0", "discrete/1", "continuous/1"} <= set(out.terms)
    torch.testing.assert_close(out.loss.detach(), sum_of_terms(out.terms), rtol=1e-5, atol=1e-4)
    vq_only = tiny("hqvae", quantizer="vq")
    assert not vq_only.stochastic and "temperature_init" not in vq_only.config.train_defaults


@pytest.mark.parametrize("name, layer", [("vqvae", 0), ("rsqvae", 3)])
def test_a_new_quantizer_loss_term_reaches_the_model_terms(name, layer, monkeypatch):
    """A term a quantizer adds (here "extra" = 7 on every layer, or on a residual stack as a whole)
    appears among the model's terms and in its loss: nothing is filtered by name."""
    kind = VectorQuantizer if name == "vqvae" else ResidualQuantizer
    forward = kind.forward

    def with_extra(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        out.losses["extra"] = out.z_q.new_tensor(7.0, dtype=torch.float32)
        return out

    monkeypatch.setattr(kind, "forward", with_extra)
    model = tiny(name)
    out = model(batch())
    plain = tiny(name)
    monkeypatch.setattr(kind, "forward", forward)
    reference = plain(batch())
    scale = 1.0 if model.stochastic else 1.0 / (4 * 4 * TINY["dim"])
    assert out.terms[f"extra/{layer}"].item() == pytest.approx(7.0 * scale)
    torch.testing.assert_close(out.loss.detach(), sum_of_terms(out.terms), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out.loss.detach(), reference.loss.detach() + 7.0 * scale, rtol=1e-6, atol=1e-5)


def test_set_temperature_reaches_every_sq_layer():
    model = tiny("hqvae")
    model.set_temperature(0.25)
    sq_layers = [m for m in model.modules() if isinstance(m, StochasticQuantizer)]
    assert len(sq_layers) == 4 and all(m.temperature == 0.25 for m in sq_layers)


# ----------------------------------------------------------------------------- save / load failures


@pytest.mark.parametrize("name", ["rqvae", "rsqvae"])
def test_shared_codebooks_round_trip(name, tmp_path):
    model = tiny(name, shared_codebook=True)
    x = batch()
    trained_step(model, x)
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = hqvae.from_pretrained(tmp_path)
    layers = loaded.groups[0].quantizers
    assert all(layer.weight is layers[0].weight for layer in layers)
    assert torch.equal(loaded(x).x_hat, model(x).x_hat)


def test_from_pretrained_reports_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        hqvae.from_pretrained(tmp_path / "absent")
    tiny("sqvae").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        hqvae.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        hqvae.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        hqvae.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "name, shape, expected",
    [
        # (C/2) / Σ_l ln K / f_l²: hqvae at 1×28×28 has two layers at each of ÷4 and ÷2, K = 512
        ("hqvae", (1, 28, 28), 0.5 / (2 * math.log(512) * (1 / 16 + 1 / 4))),
        ("rsqvae", (1, 28, 28), 0.5 / (4 * math.log(512) / 16)),
        ("rsqvae", (3, 32, 32), 1.5 / (4 * math.log(512) / 16)),
        ("sqvae", (1, 28, 28), 1.0),  # 0.5 / (ln 512 / 16) = 1.28, capped at the ELBO's 1
        ("hqvae", (3, 32, 32), 1.0),
        ("vqvae2", (1, 28, 28), 1.0),  # VQ-only models have no rate weight to balance
    ],
)
def test_registry_rate_weight_balances_latent_nats_against_half_the_data_dimension(name, shape, expected):
    config = model_config(name, shape[0], shape[1:])
    assert config.rate_weight == pytest.approx(min(1.0, expected), abs=5e-5)
    # a property of the channels, factors and codebooks, not of the image size (rsqvae: ÷4 up to 128)
    assert model_config("rsqvae", 1, 112).rate_weight == model_config("rsqvae", 1, 28).rate_weight


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 80, 128)])
def test_sqvae2_rate_weight_is_the_balanced_rule_capped_at_a_quarter(shape):
    config = model_config("sqvae2", shape[0], shape[1:])
    balanced = balanced_rate_weight(config)  # 0.2565 at 1×28×28, 1 at 3×32×32 and 1×80×128
    assert config.rate_weight == min(balanced, 0.25)
    assert model_config("sqvae2", shape[0], shape[1:], rate_weight=0.7).rate_weight == 0.7


def test_rate_weight_scales_every_latent_term_and_nothing_else():
    x = batch(channels=1)
    outputs = {}
    for weight in (1.0, 0.25):
        torch.manual_seed(0)
        model = tiny("sqvae2", in_channels=1, rate_weight=weight)
        model.set_temperature(0.5)
        torch.manual_seed(1)
        outputs[weight] = model(x)
    full, weighted = outputs[1.0], outputs[0.25]
    torch.testing.assert_close(weighted.terms["recon"], full.terms["recon"])
    latent = [key for key in full.terms if key not in ("recon", "mse")]
    assert latent and all(key.split("/")[0] in ("discrete", "continuous") for key in latent)
    for key in latent:
        torch.testing.assert_close(weighted.terms[key], 0.25 * full.terms[key])
    torch.testing.assert_close(weighted.loss, full.terms["recon"] + 0.25 * sum(full.terms[key] for key in latent))


def test_rate_weight_is_rejected_for_vq_only_models_and_must_be_positive():
    with pytest.raises(ValueError, match="stochastic models only"):
        model_config("vqvae2", 1, 28, rate_weight=0.5)
    with pytest.raises(ValueError, match="rate_weight must be > 0"):
        model_config("sqvae2", 1, 28, rate_weight=0.0)
    assert model_config("sqvae2", 1, 28, rate_weight=1.0).rate_weight == 1.0  # the ELBO on request


def test_configs_saved_before_the_rate_weight_load_as_the_elbo_they_were_trained_with():
    saved = model_config("hqvae", 1, 28).to_dict()
    assert saved.pop("rate_weight") == pytest.approx(0.1282)
    assert ModelConfig.from_dict(saved).rate_weight == 1.0  # resume and from_pretrained keep ρ = 1
