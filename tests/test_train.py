"""Tests of hqvae.train and ``hqvae train``: the config (YAML, overrides, errors), the schedules and
the data order, the run folder, bitwise-exact resume, crash-safe checkpoints, the NaN guard and
a 2-process torchrun (gloo) run. Every run trains a tiny model on a tiny image folder."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import hqvae
import hqvae.io
from hqvae.cli import main
from hqvae.quantizers import StochasticQuantizer
from hqvae.runs import evaluate_run, open_run
from hqvae.train import checkpoint
from hqvae.train.config import TrainConfig, apply_overrides, load_config
from hqvae.train.tokenizer import recalibrate_run, train
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import RUN_INFO_VERSION, RUN_KIND
from hqvae.train.sampler import StepSampler
from hqvae.train.schedules import default_temperature_decay, learning_rate, temperature

from golden.make_golden import write_image_folder

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = 20  # 4 classes: 80 greyscale 16×16 images, 64 train, 8 val, 8 test


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: steady timings on a shared 2-core machine, and identical numerics in
    every run of a test (the resume comparisons need that)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """<root>/<class>/<n>.png: blurred random blobs, one brightness per class."""
    return write_image_folder(tmp_path_factory.mktemp("images"), PER_CLASS)


def tiny_overrides(image_folder: Path, model: str = "sqvae2", steps: int = 8, **extra) -> list[str]:
    settings = {
        "data.name": "image_folder", "data.root": str(image_folder),
        "data.options": "{channels: 1, cache: false}",
        "model.name": model, "model.overrides": "{hidden: 8, codebook_size: 16, dim: 8}",
        "train.steps": steps, "train.batch_size": 8, "train.log_every": 2, "train.val_every": 4,
        "train.checkpoint_every": 4, "train.device": "cpu", "logging.progress": "false",
        **extra,
    }
    return [f"{key}={value}" for key, value in settings.items()]


def tiny_config(image_folder: Path, model: str = "sqvae2", steps: int = 8, **extra) -> TrainConfig:
    return load_config(None, tiny_overrides(image_folder, model, steps, **extra))


def last_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(RunDir(run).checkpoint("last") / "model.safetensors")


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


# ---------------------------------------------------------------------------------------- config


def test_yaml_overrides_and_yaml12_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: vqvae2\n  overrides: {codebook_size: 64}\noptim:\n  lr: 1e-3\n"
                    "train:\n  steps: 100\n")
    config = load_config(path, ["optim.lr=3e-4", "model.overrides.dim=16", "optim.betas=[0.5, 0.9]",
                                "logging.tensorboard=true", "data.root=null"])
    assert config.model.name == "vqvae2"
    assert config.model.overrides == {"codebook_size": 64, "dim": 16}
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)
    assert config.optim.betas == (0.5, 0.9)
    assert config.train.steps == 100 and config.logging.tensorboard is True
    assert load_config(path).optim.lr == 1e-3  # plain PyYAML would read the string "1e-3"
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "valid keys: name, lr, betas"),
    ("optimiser.lr=1", "valid sections: data, model, optim, train, temperature, logging"),
    ("optim.lr=fast", "optim.lr must be a number"),
    ("train.steps=1.5", "train.steps must be an integer"),
    ("logging.progress=1", "logging.progress must be true or false"),
    ("optim.name=sgd", "optim.name must be one of adam, adamw"),
    ("train.steps.x=1", "not a mapping"),
    ("optim.lr", "expected section.key=value"),
    ("train.steps=0", "train.steps must be ≥ 1"),
    ("temperature.hard_from=-1", "temperature.hard_from must be ≥ 0 or null"),
    ("train.recalibrate_batchnorm=-1", "train.recalibrate_batchnorm must be ≥ 0"),
])
def test_bad_overrides_are_rejected_with_the_valid_choices(override, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, [override])


def test_unknown_yaml_key_lists_the_sections_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  step: 10\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['step'\] in section 'train'; valid keys: steps, epochs"):
        load_config(path)
    path.write_text("optim:\n  betas: [0.9]\n")
    with pytest.raises(ValueError, match="optim.betas must be a list of 2 numbers"):
        load_config(path)


def test_model_defaults_fill_only_what_the_config_leaves_null():
    config = load_config(None, ["optim.lr=5e-4"])
    resolved = config.with_model_defaults({"lr": 1e-3, "batch_size": 64, "epochs": 7, "temperature_decay": 1e-4})
    assert resolved.optim.lr == 5e-4 and resolved.train.batch_size == 64 and resolved.train.epochs == 7
    assert (resolved.temperature.init, resolved.temperature.decay, resolved.temperature.min) == (1.0, 1e-4, 0.0)
    assert config.train.batch_size is None  # a copy
    assert config.with_model_defaults({"epochs": 7}).temperature.decay is None  # the trainer sets it from the budget
    with pytest.raises(ValueError, match="set train.steps or train.epochs"):
        config.with_model_defaults({})


def test_apply_overrides_leaves_its_input_alone():
    data = {"model": {"name": "sqvae", "overrides": {"dim": 8}}}
    apply_overrides(data, ["model.overrides.dim=16"])
    assert data == {"model": {"name": "sqvae", "overrides": {"dim": 8}}}


DATASETS = ("fashion_mnist", "cifar10", "fsdd", "image_folder_64", "image_folder_256")


@pytest.mark.parametrize("dataset", DATASETS)
def test_data_set_configs_give_every_model_the_config_of_the_former_per_model_files(dataset):
    """configs/<dataset>.yaml model.name=<m> == the former configs/<dataset>/<m>.yaml, for all 45 pairs
    (tests/fixtures/configs.json holds what those files loaded to; keys added since are at their defaults)."""
    former = json.loads((REPO / "tests/fixtures/configs.json").read_text())
    assert sorted({key.split("/")[1] for key in former}) == sorted(hqvae.list_models())
    for name in hqvae.list_models():
        config = load_config(REPO / "configs" / f"{dataset}.yaml", [f"model.name={name}"])
        expected = TrainConfig.from_dict(former[f"{dataset}/{name}"])
        expected.temperature.decay = None  # changed on purpose since: the budget's (hqvae.train.schedules)
        assert config.to_dict() == expected.to_dict(), f"{dataset} {name}"
    assert load_config(REPO / "configs" / f"{dataset}.yaml", ["model.name=vqvae", "temperature.decay=0.5"]).temperature.decay == 0.5


def test_reference_config_is_the_sqvae_network():
    reference = load_config(REPO / "configs" / "cifar10.yaml", ["model.name=sqvae"])
    resolved = reference.with_model_defaults(hqvae.models.model_config("sqvae", 3, 32).train_defaults)
    assert (resolved.optim.name, resolved.optim.lr, resolved.train.batch_size) == ("adam", 1e-3, 32)
    assert resolved.model.overrides == {}  # the registry's 3×32×32 defaults are the SQ-VAE network


def test_model_choice_errors(tmp_path):
    dataset = REPO / "configs" / "cifar10.yaml"
    with pytest.raises(ValueError, match=r"choose the model with model.name=<name>.*valid names: vqvae, sqvae"):
        load_config(dataset)
    with pytest.raises(ValueError, match=r"unknown model.name 'sqvae3'; valid names: vqvae, sqvae"):
        load_config(dataset, ["model.name=sqvae3"])
    with pytest.raises(FileNotFoundError, match=r"use --config .*configs/cifar10.yaml model.name=sqvae2"):
        load_config(REPO / "configs" / "cifar10" / "sqvae2.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("models: {sqvea: {train: {steps: 3}}}\n")
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['sqvea'\]; valid names"):
        load_config(typo, ["model.name=sqvae"])
    merged = tmp_path / "merged.yaml"
    merged.write_text("train: {steps: 5, seed: 3}\nmodels: {sqvae: {train: {steps: 7}}, vqvae: {train: null}}\n")
    assert (load_config(merged, ["model.name=sqvae"]).train.steps, load_config(merged, ["model.name=sqvae"]).train.seed) == (7, 3)
    assert load_config(merged, ["model.name=sqvae", "train.steps=9"]).train.steps == 9  # the command line wins
    assert load_config(merged, ["model.name=vqvae"]).train.steps is None  # null: the section's defaults


# ---------------------------------------------------------------------------------------- schedules, data order


def test_learning_rate_warmup_and_cosine():
    optim = load_config(None, ["optim.lr=1.0", "optim.schedule=cosine", "optim.warmup_steps=4",
                               "optim.min_lr=0.1"]).optim
    lrs = [learning_rate(step, optim, 14) for step in range(14)]
    assert lrs[:4] == [0.25, 0.5, 0.75, 1.0]
    assert lrs[4] == 1.0 and math.isclose(lrs[-1], 0.1) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    constant = load_config(None, ["optim.lr=1.0"]).optim
    assert {learning_rate(step, constant, 10) for step in range(10)} == {1.0}


def test_codebook_settings_give_the_codebooks_their_own_adam_group():
    from hqvae.train.optim import build_optimizer
    model = hqvae.create_model("sqvae2", in_channels=1, image_size=28, hidden=8)
    codebooks = {id(q.weight) for q in model.modules() if isinstance(q, StochasticQuantizer)}
    plain = build_optimizer(model, load_config(None, ["optim.lr=1e-3", "optim.codebook_lr_scale=1"]).optim)
    assert len(plain.param_groups) == 2  # the layout that saved optimiser states hold
    split = build_optimizer(model, load_config(None, ["optim.lr=1e-3", "optim.codebook_lr_scale=1",
                                                      "optim.codebook_beta2=0.9"]).optim)
    *network, codebook_group = split.param_groups
    assert {id(p) for p in codebook_group["params"]} == codebooks and codebook_group["betas"] == (0.9, 0.9)
    assert codebook_group["lr"] == 1e-3 and codebook_group["lr_scale"] == 1.0
    faster = build_optimizer(model, load_config(None, ["optim.lr=1e-3", "optim.codebook_lr_scale=10"]).optim)
    assert [(g["lr"], g.get("lr_scale"), g["betas"]) for g in faster.param_groups] == [
        (1e-3, None, (0.9, 0.999)), (1e-3, None, (0.9, 0.999)), (1e-3 * 10, 10.0, (0.9, 0.999))]
    assert all(id(p) not in codebooks for group in network for p in group["params"])
    assert sum(len(g["params"]) for g in split.param_groups) == sum(len(g["params"]) for g in plain.param_groups)
    with pytest.raises(ValueError, match="optim.codebook_beta2"):
        load_config(None, ["optim.codebook_beta2=1"])
    with pytest.raises(ValueError, match="optim.codebook_lr_scale"):
        load_config(None, ["optim.codebook_lr_scale=0"])
    with pytest.raises(ValueError, match="with_model_defaults"):  # null is the model's to fill
        build_optimizer(model, load_config(None, ["optim.lr=1e-3"]).optim)


@pytest.mark.parametrize("name", hqvae.list_models())
def test_the_codebook_learning_rate_is_the_models_unless_set(name):
    model_defaults = hqvae.create_model(name, in_channels=1, image_size=28, hidden=8).config.train_defaults
    expected = 3.0 if name in ("sqvae", "sqvae2") else 1.0  # registry.SQ_CODEBOOK_LR_SCALE; rsqvae keeps 1
    resolved = load_config(None, ["train.steps=10"]).with_model_defaults(model_defaults)
    assert resolved.optim.codebook_lr_scale == expected
    chosen = load_config(None, ["train.steps=10", "optim.codebook_lr_scale=1"]).with_model_defaults(model_defaults)
    assert chosen.optim.codebook_lr_scale == 1.0
    # a run.json from before the key: its model's saved train_defaults have none, so 1 (as it trained)
    assert load_config(None, ["train.steps=10"]).with_model_defaults({}).optim.codebook_lr_scale == 1.0


def test_temperature_schedule():
    schedule = load_config(None, ["temperature.init=1", "temperature.decay=0.1", "temperature.min=0.5"]).temperature
    assert temperature(0, schedule) == 1.0
    assert math.isclose(temperature(3, schedule), math.exp(-0.3))
    assert temperature(100, schedule) == 0.5


def test_data_order_is_a_function_of_seed_and_step_and_shards_the_global_batch():
    single = StepSampler(50, 8, seed=3)
    assert single.batches_per_epoch == 6
    fresh = StepSampler(50, 8, seed=3)
    assert torch.equal(single.indices(13), fresh.indices(13))  # no history needed
    epoch = torch.cat([single.indices(step) for step in range(6)])
    assert len(set(epoch.tolist())) == 48
    assert not torch.equal(single.indices(0), single.indices(6))  # a new permutation each epoch
    ranks = [StepSampler(50, 4, seed=3, rank=r, world_size=2) for r in range(2)]
    for step in range(9):
        shards = torch.cat([sampler.indices(step) for sampler in ranks])
        assert sorted(shards.tolist()) == sorted(single.indices(step).tolist())


# ---------------------------------------------------------------------------------------- runs


def test_short_run_writes_the_run_folder(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out),
                 *tiny_overrides(image_folder, steps=6, **{"train.val_every": 3, "temperature.decay": "null"})]) == 0
    assert "finished 6 steps" in capsys.readouterr().out
    run = RunDir(out)
    info = run.read_info()
    assert info.status == "finished" and info.step == info.steps == 6
    assert info.model_type == "sqvae2" and info.world_size == 1
    assert info.config["optim"]["lr"] == 1e-3 and info.config["train"]["batch_size"] == 8
    assert info.config["temperature"] == {"init": 1.0, "decay": default_temperature_decay(6), "min": 0.0,  # null: the budget's
                                          "hard_from": None}
    assert "train split" in info.data["train"] and "64" in info.data["train"]
    assert info.torch_version == torch.__version__ and info.hqvae_version == hqvae.__version__
    assert info.best["step"] in (3, 6)

    train_records = list(run.read_metrics("train"))
    assert [r["step"] for r in train_records] == [2, 3, 4, 6]  # log_every 2, and before val / checkpoint
    first = train_records[0]
    assert {"recon", "mse", "discrete/0", "continuous/1"} <= set(first["terms"])
    assert {"perplexity/0", "variance/1"} <= set(first["logs"])
    assert first["img_per_s"] > 0 and 0 < first["temperature"] <= 1 and first["lr"] == 1e-3
    val_records = list(run.read_metrics("val"))
    assert [r["step"] for r in val_records] == [3, 6]
    assert {"loss", "rmse", "psnr", "perplexity/0", "perplexity/1", "usage/0"} <= set(val_records[0])

    state = torch.load(run.train_state_file, weights_only=True)
    assert state["step"] == 6 and state["world_size"] == 1 and len(state["rng"]) == 1
    assert state["data"]["batches_per_epoch"] == 8 and state["data"]["epoch"] == 0
    model = run.load_model("best")
    assert isinstance(model, hqvae.HQVAE) and model.config.hidden == 8
    assert not list((out / "checkpoints").glob(".*"))  # nothing staged is left behind


def test_a_run_json_without_version_opens_evaluates_and_resumes(image_folder, tmp_path):
    out = tmp_path / "run"
    written = train(tiny_config(image_folder, model="vqvae", steps=4), out)
    old = {  # the keys hqvae wrote before run.json had a version (and a kind)
        "status": "finished", "message": None, "step": 4, "steps": 4, "best": written.best, "wall_time_s": 1.5,
        "model_type": "vqvae", "model_config": written.model_config, "config": written.config,
        "data": written.data, "device": "cpu (1 threads)", "dtype": "fp32", "world_size": 1,
        "hqvae_version": "0.1.0", "torch_version": torch.__version__, "git_commit": None,
        "started_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:01:00+00:00", "resumed_at_steps": [],
    }
    (out / "run.json").write_text(json.dumps(old))
    info = RunDir(out).read_info()
    assert info.version == RUN_INFO_VERSION and info.kind == RUN_KIND and info.extra == {}
    assert {key: value for key, value in info.to_dict().items() if key in old} == old

    opened = open_run(out, "last")
    assert opened.describe()["status"] == "finished" and opened.checkpoint["step"] == 4 and opened.seed == 0
    results, _ = evaluate_run(str(out), out=str(tmp_path / "eval" / "results.json"), limit=4)
    assert results["run"]["model_type"] == "vqvae" and results["data"]["items"] == 4

    resumed = train(tiny_config(image_folder, model="vqvae", steps=6), out, resume=True)
    assert resumed.status == "finished" and resumed.resumed_at_steps == [4] and resumed.started_at == old["started_at"]
    assert json.loads((out / "run.json").read_text())["version"] == RUN_INFO_VERSION


def test_refuses_to_overwrite_a_run_and_reports_usage_errors(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out),
            *tiny_overrides(image_folder, model="vqvae", steps=2)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a run (status finished, step 2 of 2); pass --resume" in capsys.readouterr().err
    assert main([*args, "train.steps=3", "--force"]) == 0
    assert RunDir(out).read_info().steps == 3
    assert [r["step"] for r in RunDir(out).read_metrics("val")] == [3]  # the old records are gone
    capsys.readouterr()

    assert main(["train", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "hqvae train: error: " + str(tmp_path / "missing.yaml") + ": no such config file" in capsys.readouterr().err
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out",
                 str(tmp_path / "x"), "optim.lrr=1"]) == 2
    assert "valid keys: name, lr" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main(["train", "--config", str(REPO / "configs/image_folder_64.yaml"), "--out",
                 str(tmp_path / "y"), "model.name=vqvae", "data.root=null"]) == 2
    assert "needs root=" in capsys.readouterr().err
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist/vqvae.yaml"), "--out", str(tmp_path / "z")]) == 2
    assert "use --config " in capsys.readouterr().err


class Crash(Exception):
    pass


def crash_at_step(monkeypatch, step: int) -> None:
    """Make the trainer raise Crash when it asks for the batch of (0-based) ``step``."""
    original = StepSampler.indices

    def indices(self, s):
        if s == step:
            raise Crash(f"simulated crash at step {s}")
        return original(self, s)

    monkeypatch.setattr(StepSampler, "indices", indices)


@pytest.mark.parametrize("model, extra", [
    ("sqvae2", {"optim.schedule": "cosine", "optim.warmup_steps": 2}),
    ("vqvae2", {"model.overrides": "{hidden: 8, codebook_size: 16, dim: 8, dead_code_threshold: 0.5}",
                "optim.grad_clip": 1.0}),
])
def test_resume_reproduces_an_uninterrupted_run_bitwise(image_folder, tmp_path, monkeypatch, model, extra):
    steps = 12  # 8 batches per epoch: the resumed part crosses an epoch boundary
    straight = tmp_path / "straight"
    train(tiny_config(image_folder, model, steps, **extra), straight)

    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        crash_at_step(patch, 6)  # checkpoints at 4 (and 8, 12): resume redoes steps 5-6
        with pytest.raises(Crash):
            train(tiny_config(image_folder, model, steps, **extra), interrupted)
    info = RunDir(interrupted).read_info()
    assert info.status == "failed" and "Crash at step 7" in info.message and info.step == 4
    assert main(["train", "--out", str(interrupted), "--resume"]) == 0

    assert_bitwise_equal(last_weights(straight), last_weights(interrupted))
    if model == "vqvae2":
        assert any("weight_avg" in name or "cluster_size" in name for name in last_weights(straight))
    a, b = (torch.load(RunDir(run).train_state_file, weights_only=True) for run in (straight, interrupted))
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])
    assert_bitwise_equal(load_file(straight / "checkpoints/best/model.safetensors"),
                         load_file(interrupted / "checkpoints/best/model.safetensors"))
    records = [(r["step"], r["split"]) for r in RunDir(interrupted).read_metrics()]
    assert records == [(r["step"], r["split"]) for r in RunDir(straight).read_metrics()]  # no duplicates
    info = RunDir(interrupted).read_info()
    assert info.status == "finished" and info.resumed_at_steps == [4] and info.best == a["best"]


def test_channels_last_trains_the_same_model_and_resumes_across_layouts(image_folder, tmp_path):
    nchw, nhwc = tmp_path / "nchw", tmp_path / "nhwc"
    train(tiny_config(image_folder, "sqvae2", 4, **{"train.channels_last": "false"}), nchw)
    train(tiny_config(image_folder, "sqvae2", 4), nhwc)
    for name, value in last_weights(nchw).items():  # safetensors holds plain contiguous tensors
        # rounding differs, and Adam turns a sign flip of a near-zero gradient into an lr-sized step
        torch.testing.assert_close(last_weights(nhwc)[name], value, rtol=0, atol=2 * 1e-3 * 4)
    losses = [[r["loss"] for r in RunDir(run).read_metrics("train")] for run in (nchw, nhwc)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)

    # an NCHW run resumed in NHWC: the optimiser state takes the parameters' layout
    assert main(["train", "--out", str(nchw), "--resume", "train.steps=6", "train.channels_last=true"]) == 0
    state = torch.load(RunDir(nchw).train_state_file, weights_only=True)
    assert RunDir(nchw).read_info().step == 6 and state["step"] == 6
    assert all(math.isfinite(r["loss"]) for r in RunDir(nchw).read_metrics("train"))


def test_keep_freed_memory_and_layout_matching():
    from hqvae.train.performance import keep_freed_memory, match_parameter_layouts

    assert keep_freed_memory() in (True, False) and keep_freed_memory() is keep_freed_memory()
    weight = torch.nn.Parameter(torch.randn(4, 3, 2, 2).contiguous(memory_format=torch.channels_last))
    optimizer = torch.optim.Adam([weight])
    saved = torch.randn(4, 3, 2, 2)  # contiguous NCHW, as an NCHW run would have saved it
    optimizer.state[weight] = {"step": torch.tensor(1.0), "exp_avg": saved.clone()}
    match_parameter_layouts(optimizer)
    moment = optimizer.state[weight]["exp_avg"]
    assert moment.stride() == weight.stride() and torch.equal(moment, saved)


def test_atomic_writes_replace_whole_files_with_normal_permissions(tmp_path):
    from hqvae.io import atomic_write, atomic_write_json

    path = tmp_path / "results.json"
    atomic_write_json(path, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the 0o600 of a temporary file

    def dies_half_way(tmp):
        Path(tmp).write_text('{"a": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies_half_way)
    assert json.loads(path.read_text()) == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    saves = []
    original_write = hqvae.io.write_bytes

    def failing_write(path, data):
        if Path(path).name.startswith(".train_state.pt."):
            saves.append(path)
            if len(saves) == 2:  # the second train_state.pt: write a part of it, then "die"
                original_write(path, bytes(data)[:1000])
                raise OSError("No space left on device")
        return original_write(path, data)

    monkeypatch.setattr(hqvae.io, "write_bytes", failing_write)
    with pytest.raises(OSError, match="No space left"):
        train(tiny_config(image_folder, "sqvae", steps=8), out)
    monkeypatch.undo()

    run = RunDir(out)
    assert run.read_info().status == "failed"
    last = run.checkpoint("last")
    assert sorted(p.name for p in last.iterdir()) == ["config.json", "model.safetensors", "train_state.pt"]
    assert torch.load(run.train_state_file, weights_only=True)["step"] == 4
    hqvae.from_pretrained(last)  # loads
    assert main(["train", "--out", str(out), "--resume"]) == 0  # and the run can go on
    assert run.read_info().step == 8 and not list((out / "checkpoints").glob(".*"))


def test_an_interrupted_checkpoint_swap_is_recovered(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(tiny_config(image_folder, "vqvae", steps=4), out)
    run = RunDir(out)
    before = last_weights(out)
    renames = []
    original_rename = os.rename

    def rename(src, dst):
        renames.append(dst)
        if len(renames) == 2:  # the old folder is moved aside, the new one not yet in place
            raise KeyboardInterrupt
        original_rename(src, dst)

    model = hqvae.from_pretrained(run.checkpoint("last"))
    monkeypatch.setattr(checkpoint.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.stage(run, "last", model, {"step": 99})
        checkpoint.commit(run, "last")
    monkeypatch.undo()
    assert not run.checkpoint("last").exists()
    checkpoint.recover(run)
    assert_bitwise_equal(before, last_weights(out))
    assert checkpoint.load_train_state(run)["step"] == 4
    assert not list((out / "checkpoints").glob(".*"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(image_folder, tmp_path, monkeypatch,
                                                                        capsys):
    forward = hqvae.HQVAE.forward
    calls = []

    def poisoned(self, x):
        out = forward(self, x)
        if self.training:
            calls.append(1)
            if len(calls) == 6:
                out.loss = out.loss * float("nan")
                out.terms["recon"] = out.terms["recon"] * float("nan")
        return out

    monkeypatch.setattr(hqvae.HQVAE, "forward", poisoned)
    out = tmp_path / "run"
    code = main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out),
                 *tiny_overrides(image_folder, model="sqvae", steps=12, **{"train.log_every": 5})])
    assert code == 1
    error = capsys.readouterr().err
    assert "non-finite loss at step 6" in error and "terms/recon=nan" in error
    info = RunDir(out).read_info()
    assert info.status == "stopped_nan" and info.step == 4
    assert "checkpoints/last is the last good state (step 4)" in info.message
    assert torch.load(RunDir(out).train_state_file, weights_only=True)["step"] == 4
    assert all(torch.isfinite(t).all() for t in last_weights(out).values())
    assert max(r["step"] for r in RunDir(out).read_metrics()) == 5  # nothing logged from the bad window


def test_tensorboard_is_optional_and_validation_can_be_off(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(image_folder, "vqvae", steps=2, **{"logging.tensorboard": "true", "train.val_every": 0}), out)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert "tensorboard package is not installed" in capsys.readouterr().err
        assert not (out / "tensorboard").exists()
    else:
        assert any((out / "tensorboard").iterdir())
    info = RunDir(out).read_info()
    assert info.status == "finished" and info.best is None and info.data["val"] is None
    assert not RunDir(out).checkpoint("best").exists() and RunDir(out).load_model("last")


def test_two_processes_with_torchrun_log_once(image_folder, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               "-m", "hqvae", "train", "--config", str(REPO / "configs/fashion_mnist.yaml"),
               "--out", str(out), *tiny_overrides(image_folder, model="vqvae2", steps=6)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    info = RunDir(out).read_info()
    assert info.status == "finished" and info.world_size == 2 and info.step == 6
    records = [(r["split"], r["step"]) for r in RunDir(out).read_metrics()]
    assert records == [("train", 2), ("train", 4), ("val", 4), ("train", 6), ("val", 6)]
    state = torch.load(RunDir(out).train_state_file, weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    val = list(RunDir(out).read_metrics("val"))[-1]
    assert val["items"] == 8  # the whole val split, shared between the two ranks


def test_default_temperature_decay_follows_the_budget():
    from hqvae.train.schedules import LONG_BUDGET, SHORT_BUDGET

    def final_tau(steps):
        return math.exp(-default_temperature_decay(steps) * steps)
    # short runs reach the official 100-epoch run's final τ (exp(−1.563)); long ones decay at 1e-5 per step
    assert math.isclose(final_tau(500), math.exp(-1e-5 * 156_300)) and math.isclose(final_tau(SHORT_BUDGET), final_tau(500))
    assert default_temperature_decay(LONG_BUDGET) == default_temperature_decay(40_000) == 1e-5
    # continuous at both ends, and the final τ rises with the budget in between
    for edge in (SHORT_BUDGET, LONG_BUDGET):
        assert math.isclose(default_temperature_decay(edge - 1), default_temperature_decay(edge), rel_tol=1e-3)
    finals = [final_tau(steps) for steps in (2000, 3000, 5000, 8000, 12000, 15000)]
    assert finals == sorted(finals) and finals[0] < 0.25 and finals[-1] > 0.85


def test_hard_from_switches_the_sq_layers_to_the_straight_through_variant(image_folder, tmp_path, monkeypatch):
    calls = []
    original = StochasticQuantizer.set_temperature
    monkeypatch.setattr(StochasticQuantizer, "set_temperature",
                        lambda self, tau, hard=False: (calls.append(hard), original(self, tau, hard))[1])
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(tmp_path / "run"),
                 *tiny_overrides(image_folder, steps=4, **{"temperature.hard_from": 2})]) == 0
    assert calls[-8:] == [False, False, False, False, True, True, True, True]  # 2 SQ layers, steps 0..3


def test_the_codebooks_learning_rate_follows_the_schedule_times_its_scale(image_folder, tmp_path):
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(tmp_path / "run"),
                 *tiny_overrides(image_folder, steps=3, **{"optim.schedule": "cosine", "optim.min_lr": 1e-4,
                                                         "optim.codebook_lr_scale": 3})]) == 0
    groups = torch.load(tmp_path / "run/checkpoints/last/train_state.pt", weights_only=True)["optimizer"]["param_groups"]
    network_lr, codebook_lr = groups[0]["lr"], groups[-1]["lr"]
    assert len(groups) == 3 and 1e-4 <= network_lr < 1e-3 and math.isclose(codebook_lr, 3 * network_lr)



def test_a_run_records_the_models_codebook_lr_and_knows_when_the_registry_moved_on(image_folder, tmp_path):
    from hqvae.train.checkpoint import holds_the_current_model
    assert main(["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(tmp_path / "run"),
                 *tiny_overrides(image_folder, steps=2)]) == 0
    run = RunDir(tmp_path / "run")
    assert run.read_info().config["optim"]["codebook_lr_scale"] == 3.0  # sqvae2's, the YAML leaves it null
    groups = torch.load(run.train_state_file, weights_only=True)["optimizer"]["param_groups"]
    assert [group.get("lr_scale") for group in groups] == [None, None, 3.0]
    overrides = {"hidden": 8, "codebook_size": 16, "dim": 8}
    assert holds_the_current_model(run, "sqvae2", overrides)
    assert not holds_the_current_model(run, "sqvae2", {**overrides, "dim": 4})
    saved = run.checkpoint("last") / "config.json"  # as an hqvae before the codebook default wrote it
    config = json.loads(saved.read_text())
    del config["config"]["train_defaults"]["codebook_lr_scale"]
    saved.write_text(json.dumps(config))
    assert not holds_the_current_model(run, "sqvae2", overrides)

STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def test_training_ends_with_batchnorm_statistics_of_argmax_decodes(image_folder, tmp_path, capsys):
    """train.recalibrate_batchnorm: after the last step every BatchNorm layer's statistics are
    recomputed and run.json says so; no trained parameter changes; the final validation sees them;
    and ``hqvae recalibrate`` (recalibrate_run) of a run trained without it writes the same checkpoint."""
    plain, ending = tmp_path / "plain", tmp_path / "ending"
    train(tiny_config(image_folder, steps=6, **{"train.recalibrate_batchnorm": 0}), plain)
    train(tiny_config(image_folder, steps=6, **{"train.recalibrate_batchnorm": 3}), ending)
    assert RunDir(plain).read_info().batchnorm_recalibration is None
    assert RunDir(ending).read_info().batchnorm_recalibration == {"step": 6, "items": 3 * 8}

    a, b = last_weights(plain), last_weights(ending)
    statistics = [name for name in a if name.endswith(STATISTICS)]
    assert len(statistics) > 10
    assert_bitwise_equal({k: v for k, v in a.items() if k not in statistics},
                         {k: v for k, v in b.items() if k not in statistics})
    assert all(b[name].item() == 3 for name in statistics if name.endswith("num_batches_tracked"))
    moved = [name for name in statistics if name.endswith("running_var") and not torch.allclose(a[name], b[name])]
    assert len(moved) > len(statistics) // 6  # most layers' variances (a third of the names are variances)
    final_val = [list(RunDir(run).read_metrics("val"))[-1] for run in (plain, ending)]
    assert final_val[0]["step"] == final_val[1]["step"] == 6 and final_val[0]["rmse"] != final_val[1]["rmse"]

    assert main(["recalibrate", "--run", str(plain), "--batches", "0"]) == 2
    assert "--batches must be at least 1" in capsys.readouterr().err
    assert main(["recalibrate", "--run", str(plain), "--batches", "3", "--device", "cpu"]) == 0
    assert "recomputed on 24 training items" in capsys.readouterr().out
    info = RunDir(plain).read_info()
    assert info.batchnorm_recalibration == {"step": 6, "items": 3 * 8}
    assert info.config["train"]["recalibrate_batchnorm"] == 3
    assert_bitwise_equal(last_weights(plain), b)
    assert torch.load(RunDir(plain).train_state_file, weights_only=True)["step"] == 6  # the state kept


def test_recalibrate_run_refuses_an_unfinished_run(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        crash_at_step(patch, 5)
        with pytest.raises(Crash):
            train(tiny_config(image_folder, steps=6), out)
    with pytest.raises(ValueError, match="not a finished run"):
        recalibrate_run(out)
