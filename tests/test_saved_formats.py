"""Runs written by an earlier hqvae still load and resume. ``tests/fixtures/old_runs`` was written by
the code of commit 366a9d1 (then main): ``run``, a 2-step ``hqvae train`` of an HQ-VAE with one VQ layer
(β 0.5) and one SQ layer (s²₀ 5) on the 16×16 image folder of ``golden.make_golden`` (6 images per
class), whose configs hold every quantizer kind's options as flat layer fields; ``prior``, a 2-step
``hqvae prior train`` on it (d_model 16, 1 block, 2 heads). Only the prior's ``tokenizer.run`` was
edited, from the folder it was written in to "run" (relative, as the test copies both side by side)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hqvae
from hqvae.cli import main
from hqvae.priors import load_prior
from hqvae.quantizers.registry import SQOptions, VQOptions
from hqvae.train.run_dir import RunDir

from golden.make_golden import write_image_folder

OLD = Path(__file__).resolve().parent / "fixtures" / "old_runs"


@pytest.fixture
def old_runs(tmp_path, monkeypatch) -> Path:
    shutil.copytree(OLD, tmp_path, dirs_exist_ok=True)
    write_image_folder(tmp_path / "images", 6)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_flat_layer_config_loads(old_runs):
    flat = json.loads((OLD / "run/checkpoints/last/config.json").read_text())["config"]["layers"]
    assert "beta" in flat[1] and "init_variance" in flat[0]  # every kind's options on every layer
    model = hqvae.from_pretrained("run/checkpoints/last")
    assert [layer.options for layer in model.config.layers] == [VQOptions(beta=0.5), SQOptions(init_variance=5.0)]
    vq, sq = model.groups[0].quantizer, model.groups[1].quantizer
    assert (vq.beta, vq.init, sq.var_floor, sq.init) == (0.5, "kmeans", True, "normal")
    assert hqvae.models.HQVAE(model.config).groups[1].quantizer.log_s2.exp().item() == pytest.approx(5.0)
    stored = load_file(OLD / "run/checkpoints/last/model.safetensors")
    assert all(torch.equal(value, stored[name]) for name, value in model.state_dict().items())


def test_an_old_tokenizer_run_and_its_prior_resume(old_runs):
    prior = load_prior("prior/checkpoints/last")
    assert (prior.config.d_model, prior.config.n_layer, prior.config.n_head, prior.config.kind) == (16, 1, 2, "flat")
    assert main(["prior", "train", "--out", "prior", "--resume", "train.steps=4"]) == 0
    assert main(["train", "--out", "run", "--resume", "train.steps=4"]) == 0
    for folder in ("prior", "run"):
        info = RunDir(folder).read_info()
        assert (info.status, info.step, info.resumed_at_steps) == ("finished", 4, [2])
    assert RunDir("run").read_info().model_config["layers"][0]["options"]["beta"] == 0.5  # written nested now
