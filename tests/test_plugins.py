"""Extensions from outside the package, each one file with one registration (tests/plugins/): a
quantizer kind (sign_quantizer.py), a prior kind (independent_prior.py) and a data set
(blobs_dataset.py). Each process that uses them imports them (tests/plugins/run.py, as a user's
entry point would), so no test patches the package: the runs go through ``hqvae train``, ``eval``,
``prior train``, ``prior eval``, ``encode``, ``compress`` and ``decompress`` in subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from hqvae.codes_file import load_codes

TESTS = Path(__file__).resolve().parent
PLUGINS, REPO = TESTS / "plugins", TESTS.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def hqvae(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(PLUGINS / "run.py"), *map(str, args)], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


CHECKS = """
import sys, tempfile
from pathlib import Path
sys.path[:0] = sys.argv[1:3]
import pytest
import sign_quantizer
import hqvae
from hqvae.models import LayerConfig, ModelConfig, register_model
from hqvae.quantizers import register_quantizer
from test_models import GENERIC_CHECKS, MODEL_META

def signvae(in_channels, image_size, *, depth=2, dim=4, hidden=16, beta=0.25):
    layer = dict(quantizer="sign", codebook_size=2**dim, dim=dim, beta=beta)
    layers = [LayerConfig(kind="injected", downsample=4, **layer)]
    layers += [LayerConfig(kind="residual", downsample=None, **layer) for _ in range(depth - 1)]
    return ModelConfig(name="signvae", in_channels=in_channels, image_size=image_size, hidden=hidden, layers=layers,
                       train_defaults={"lr": 1e-3, "batch_size": 8, "epochs": 1})

register_model("signvae", option_keys=())(signvae)
MODEL_META["signvae"] = {"options": {"hidden": 16, "dim": 4}}
for check in GENERIC_CHECKS:
    check("signvae", Path(tempfile.mkdtemp()))
model = hqvae.create_model("signvae", in_channels=1, image_size=16, depth=3)
assert [type(q) for q in model.groups[0].quantizers] == [sign_quantizer.SignQuantizer] * 3 and not model.stochastic
assert [(i.kind, i.quantizer, i.grid, i.codebook_size) for i in model.layer_info()] == [
    ("injected", "sign", (4, 4), 16), ("residual", "sign", (4, 4), 16), ("residual", "sign", (4, 4), 16)]
layers = [LayerConfig(quantizer="sign", codebook_size=16, dim=4, downsample=8),
          LayerConfig(quantizer="sq", codebook_size=16, dim=4, downsample=4)]
config = hqvae.models.model_config("hqvae", 1, 16, layers=layers, hidden=16, beta=0.5, init_variance=5.0)
assert (config.layers[0].beta, config.layers[0].init_variance) == (0.5, LayerConfig.init_variance)
assert (config.layers[1].beta, config.layers[1].init_variance) == (LayerConfig.beta, 5.0)
with pytest.raises(ValueError, match=r"\\['beta'\\] are (sign/vq|vq/sign) quantizer options"):
    hqvae.create_model("sqvae", beta=0.5)
with pytest.raises(ValueError, match=r"must be one of \\('vq', 'sq', 'sign'\\).*register_quantizer.*'sgn'"):
    ModelConfig(layers=[LayerConfig(quantizer="sgn")]).validate()
with pytest.raises(ValueError, match="'sign' is already registered"):
    register_quantizer("sign", lambda layer: None)
register_quantizer("fsq", lambda layer: None, options=["levels"])
with pytest.raises(ValueError, match=r"reads options \\['levels'\\] that are not LayerConfig fields"):
    ModelConfig(layers=[LayerConfig(quantizer="fsq")]).validate()
print(len(GENERIC_CHECKS), "checks")
"""


def test_the_quantizer_kind_passes_the_generic_model_checks():
    result = subprocess.run([sys.executable, "-c", CHECKS, str(PLUGINS), str(TESTS)], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "checks" in result.stdout, result.stderr[-3000:]


def test_a_plugin_quantizer_prior_and_data_set_train_evaluate_and_compress(tmp_path):
    layer = "{kind: injected, quantizer: sign, codebook_size: 16, dim: 4, downsample: 4, beta: 0.5}"
    config = tmp_path / "blobs.yaml"
    config.write_text(
        "data: {name: blobs}\n"
        f"model: {{name: hqvae, overrides: {{hidden: 8, layers: [{layer}, {layer.replace('injected', 'residual').replace(', downsample: 4', '')}]}}}}\n"
        "train: {steps: 4, batch_size: 8, log_every: 2, val_every: 2, checkpoint_every: 2, device: cpu}\n"
        "logging: {progress: false}\n")
    run, prior = tmp_path / "run", tmp_path / "prior"
    assert "finished 4 steps" in hqvae("train", "--config", config, "--out", run).stdout
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["train"] == "blobs, train split, 48 images"
    assert [layer["quantizer"] for layer in info["model_config"]["layers"]] == ["sign", "sign"]
    hqvae("eval", "--run", run, "--limit", 8, "--out", tmp_path / "results.json")
    results = json.loads((tmp_path / "results.json").read_text())
    assert [layer["quantizer"] for layer in results["layers"]] == ["sign", "sign"]

    hqvae("prior", "train", "--run", run, "--out", prior, "model.kind=independent", "train.steps=6",
          "train.batch_size=8", "train.val_every=3", "train.checkpoint_every=3", "optim.warmup_steps=0",
          "optim.lr=0.1", "train.device=cpu", "logging.progress=false")
    info = json.loads((prior / "run.json").read_text())
    assert info["prior_kind"] == "independent" and info["status"] == "finished"
    assert info["best"]["val_bits_per_item"] < info["uniform_bits_per_item"]  # it learnt the marginals
    hqvae("prior", "eval", "--prior", prior, "--out", tmp_path / "prior-eval.json")
    assert json.loads((tmp_path / "prior-eval.json").read_text())["items"] == 8

    hqvae("encode", "--run", run, "--out", tmp_path / "codes.safetensors")
    hqvae("compress", "--prior", prior, tmp_path / "codes.safetensors", "--out", tmp_path / "codes.hqz",
          "--coding-batch", 4)
    hqvae("decompress", tmp_path / "codes.hqz", "--out", tmp_path / "decoded")
    encoded, _, _ = load_codes(tmp_path / "codes.safetensors")
    decoded, _, _ = load_codes(tmp_path / "decoded" / "codes.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(encoded, decoded, strict=True))
    assert (tmp_path / "decoded" / "00007.png").is_file()
