"""hqvae.evaluate and the eval / encode / decode / report commands, on tiny models trained for a few
steps on real Fashion-MNIST images (run folders built here by hand in the RunDir layout)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from skimage.metrics import structural_similarity

import hqvae
from hqvae.cli import main
from hqvae.codes_file import load_codes, save_codes
from hqvae.data import load_dataset
from hqvae.evaluate import evaluate
from hqvae.metrics import LPIPS, ReconstructionMetrics, load_lpips
from hqvae.models import from_pretrained
from hqvae.report.grids import reconstruction_grid, to_pil
from hqvae.report.plots import training_curves
from hqvae.train.run_dir import RunDir

FASHION = Path("/usr/share/datasets/fashion-mnist")
FSDD = Path(os.environ.get("HQVAE_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data") / "fsdd"
pytestmark = pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")

TINY = dict(hidden=16, codebook_size=16, dim=8)
ITEMS = 40  # evaluated items
SPEC_KEYS = {"schema", "model", "data", "settings", "reconstruction", "layers", "rate", "coarse_to_fine", "run",
             "checkpoint", "files", "hqvae_version", "created"}
LAYER_KEYS = {"layer", "kind", "quantizer", "grid", "positions", "codebook_size", "bits", "perplexity", "usage",
              "codes_used", "entropy_bits", "minibatch_perplexity", "minibatch_perplexity_batch_size", "counts",
              "marginal_entropy_bits", "conditional_entropy_bits", "information_bits", "information_bits_per_item"}


# ----------------------------------------------------------------------------- run folders


def write_run(root: Path, name: str, data: dict, model_overrides: dict, steps: int = 6, images=None,
              best: bool = True) -> Path:
    """Train ``name`` for a few steps on ``images`` by hand and write a run folder like ``hqvae train``."""
    torch.manual_seed(0)
    channels, height, width = images.shape[1:]
    model = hqvae.create_model(name, channels, (height, width), **model_overrides)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    run_dir = RunDir(root)
    model.train()
    for step in range(1, steps + 1):
        out = model(images[(step - 1) * 16 % len(images):][:16])
        optimiser.zero_grad()
        out.loss.backward()
        optimiser.step()
        run_dir.append_metrics({"step": step, "split": "train", "loss": out.loss.item(),
                                "terms": {k: v.item() for k, v in out.terms.items()},
                                "logs": {k: v.item() for k, v in out.logs.items()}, "lr": 1e-3,
                                "temperature": 1.0 if model.stochastic else None, "img_per_s": 100.0, "time_s": 0.1})
        if step % 3 == 0:
            run_dir.append_metrics({"step": step, "split": "val", "loss": out.loss.item() + 0.1, "rmse": 0.3,
                                    "psnr": 10.0 + step,
                                    "metrics": {f"perplexity/{l}": 2.0 + l for l in range(len(out.codes))}})
        if step == steps - 2 and best:
            model.save_pretrained(run_dir.checkpoint("best"))
    model.save_pretrained(run_dir.checkpoint("last"))
    run_dir.run_file.write_text(json.dumps(  # an early run.json: no version, "seed" and "dataset" elsewhere
        {"config": {"data": data, "model": {"name": name, "overrides": model_overrides}, "seed": 0},
         "model_type": name, "dataset": "Fashion-MNIST test split, 64 images (fixture)",
         "status": "finished", "step": steps, "wall_time_s": 1.0,
         "best": {"step": steps - 2, "loss": 1.0} if best else {}}))
    return root


@pytest.fixture(scope="session")
def fashion_test():
    return load_dataset("fashion_mnist", "test", root=FASHION)


@pytest.fixture(scope="session")
def runs(tmp_path_factory, fashion_test) -> dict[str, Path]:
    """Two runs: vqvae2 (injected 7×7 + 14×14) and rsqvae (two residual 7×7 layers)."""
    root = tmp_path_factory.mktemp("runs")
    images = fashion_test.images[-64:].float() / 255  # train on items that are not evaluated
    data = {"name": "fashion_mnist", "root": str(FASHION)}
    return {
        "vqvae2": write_run(root / "vqvae2", "vqvae2", data, TINY, images=images),
        "rsqvae": write_run(root / "rsqvae", "rsqvae", data, {**TINY, "depth": 2}, images=images),
    }


def first_items(dataset, count: int = ITEMS):
    return dataset.subset(torch.arange(count), dataset.split, f"{dataset.description}; first {count} items only")


def cli(*argv) -> int:
    return main([str(arg) for arg in argv])


def error_of(capsys, *argv) -> str:
    """stderr of a command that must fail with the dispatcher's usage-error status."""
    assert cli(*argv) == 2
    return capsys.readouterr().err


# ----------------------------------------------------------------------------- evaluate()


def entropy_perplexity(codes: torch.Tensor, size: int) -> float:
    p = torch.bincount(codes.flatten(), minlength=size).double()
    p = p[p > 0] / p.sum()
    return math.exp(-(p * p.log()).sum().item())


@pytest.mark.parametrize("name", ["vqvae2", "rsqvae"])
def test_evaluate_matches_the_metrics_on_the_same_reconstructions(runs, fashion_test, name):
    model = from_pretrained(runs[name] / "checkpoints" / "best")
    data = first_items(fashion_test)
    results = evaluate(model, data, batch_size=16, minibatch_perplexity_batch=8)  # chunks cross batch edges

    x = data.images.float() / 255
    codes = model.encode(x)
    x_hat = model.decode(codes).clamp(0, 1)
    assert results["data"]["items"] == ITEMS and results["data"]["split"] == "test"
    assert "first 40 items" in results["data"]["description"] and results["data"]["shape"] == [1, 28, 28]
    recon = results["reconstruction"]
    assert recon["rmse"] == pytest.approx((x_hat - x).square().mean().sqrt().item(), rel=1e-5)
    per_item_mse = (x_hat - x).square().flatten(1).mean(1)
    assert recon["psnr"] == pytest.approx((10 * torch.log10(1 / per_item_mse)).mean().item(), rel=1e-5)
    reference_ssim = np.mean([structural_similarity(x[i, 0].numpy(), x_hat[i, 0].numpy(), gaussian_weights=True,
                                                    sigma=1.5, use_sample_covariance=False, data_range=1)
                              for i in range(ITEMS)])
    assert recon["ssim"] == pytest.approx(reference_ssim, abs=1e-4)
    assert "lpips" not in recon  # never without user-supplied weights
    metrics = ReconstructionMetrics()
    metrics.update(x_hat, x)
    assert recon["rmse"] == pytest.approx(metrics.compute()["rmse"], rel=1e-6)

    sizes = [layer.codebook_size for layer in model.config.layers]
    assert len(results["layers"]) == len(codes) == 2
    for layer, code, size in zip(results["layers"], codes, sizes):
        assert set(layer) == LAYER_KEYS
        assert layer["grid"] == list(code.shape[1:]) and layer["positions"] == code[0].numel()
        assert layer["counts"] == torch.bincount(code.flatten(), minlength=size).tolist()
        assert layer["perplexity"] == pytest.approx(entropy_perplexity(code, size), rel=1e-9)
        assert layer["usage"] == len(code.unique()) / size
        assert layer["bits"] == code[0].numel() * math.log2(size)
        chunks = [entropy_perplexity(chunk, size) for chunk in code.split(8)]
        assert layer["minibatch_perplexity"] == pytest.approx(sum(chunks) / len(chunks), rel=1e-9)
        assert layer["minibatch_perplexity_batch_size"] == 8
    rate = results["rate"]
    assert rate["bits_per_item"] == sum(layer["bits"] for layer in results["layers"])
    assert rate["entropy_bits_per_item"] == pytest.approx(
        sum(l["positions"] * math.log2(l["perplexity"]) for l in results["layers"]), rel=1e-9)
    assert [point["layers"] for point in results["coarse_to_fine"]] == [1, 2]
    coarse = model.decode(codes, upto=1).clamp(0, 1)
    assert results["coarse_to_fine"][0]["rmse"] == pytest.approx((coarse - x).square().mean().sqrt().item(), rel=1e-5)
    assert results["coarse_to_fine"][-1]["rmse"] == recon["rmse"]
    json.dumps(results)  # JSON-ready


def test_evaluate_accepts_a_loader_and_restores_the_training_flag(runs, fashion_test):
    model = from_pretrained(runs["rsqvae"] / "checkpoints" / "best")
    data = first_items(fashion_test)
    from_dataset = evaluate(model, data, batch_size=16)
    model.train()
    from_loader = evaluate(model, [(x, y) for x, y in data.batches(16)], batch_size=16)
    assert model.training and all(m.training for m in model.modules())
    assert from_loader["reconstruction"] == pytest.approx(from_dataset["reconstruction"])
    assert from_loader["data"]["description"].startswith("unknown")  # a bare loader has no description


def ddp_worker(rank: int, init_file: str, model_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    data = first_items(load_dataset("fashion_mnist", "test", root=FASHION), 37)  # uneven shards: 19 + 18
    results = evaluate(from_pretrained(model_dir), data, batch_size=8)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def test_evaluate_under_ddp_equals_one_process(runs, fashion_test, tmp_path):
    model_dir = runs["vqvae2"] / "checkpoints" / "best"
    mp.spawn(ddp_worker, args=(str(tmp_path / "init"), str(model_dir), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    single = evaluate(from_pretrained(model_dir), first_items(fashion_test, 37), batch_size=8)
    for results in ranks:
        assert results["data"]["items"] == 37 and results["settings"]["world_size"] == 2
        assert results["reconstruction"] == pytest.approx(single["reconstruction"], rel=1e-6)
        for got, want in zip(results["coarse_to_fine"], single["coarse_to_fine"], strict=True):
            assert got == pytest.approx(want, rel=1e-6)
        for got, want in zip(results["layers"], single["layers"]):
            assert got["counts"] == want["counts"] and got["perplexity"] == pytest.approx(want["perplexity"])


# ----------------------------------------------------------------------------- hqvae eval


def test_eval_cli_writes_the_results_json_and_figures(runs, fashion_test, capsys):
    run = runs["rsqvae"]
    assert cli("eval", "--run", run, "--limit", ITEMS, "--batch-size", 16) == 0
    path = run / "eval" / "results.json"  # the default location, which hqvae report reads
    assert str(path) in capsys.readouterr().out
    results = json.loads(path.read_text())
    assert SPEC_KEYS <= set(results)
    assert results["checkpoint"]["which"] == "best" and results["checkpoint"]["step"] == 4
    assert results["run"]["seed"] == 0 and results["run"]["name"] == "rsqvae"
    assert results["data"]["items"] == ITEMS and "Fashion-MNIST" in results["data"]["description"]
    expected = evaluate(from_pretrained(run / "checkpoints" / "best"), first_items(fashion_test), batch_size=16)
    assert results["reconstruction"] == pytest.approx(expected["reconstruction"])
    assert set(results["files"]) == {"reconstructions", "codebook_usage", "coarse_to_fine"}
    for name in results["files"].values():
        with Image.open(path.parent / name) as picture:
            picture.verify()
    with Image.open(path.parent / results["files"]["reconstructions"]) as grid:
        assert grid.size[0] > 8 * 56  # 8 columns of enlarged 28×28 tiles


def test_eval_cli_out_images_dir_and_last_checkpoint(runs, tmp_path):
    out = tmp_path / "results" / "vq.json"
    assert cli("eval", "--run", runs["vqvae2"], "--checkpoint", "last", "--split", "test", "--limit", 20,
               "--out", out, "--images-dir", tmp_path / "figures") == 0
    results = json.loads(out.read_text())
    assert results["checkpoint"]["which"] == "last" and results["checkpoint"]["step"] == 6
    assert results["files"]["reconstructions"] == "../figures/reconstructions.png"
    assert (tmp_path / "figures" / "codebook_usage.png").is_file()


def test_a_run_without_best_falls_back_to_last_and_says_so(fashion_test, tmp_path):
    images = fashion_test.images[-32:].float() / 255
    run = write_run(tmp_path / "run", "vqvae", {"name": "fashion_mnist", "root": str(FASHION)}, TINY, steps=2,
                    images=images, best=False)
    assert cli("eval", "--run", run, "--limit", 16) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["checkpoint"]["which"] == "last" and "checkpoints/best is missing" in results["checkpoint"]["note"]
    assert len(results["coarse_to_fine"]) == 1 and "coarse_to_fine" not in results["files"]


# ----------------------------------------------------------------------------- encode / decode


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_encode_decode_round_trip_equals_the_eval_reconstruction(runs, fashion_test, tmp_path, suffix):
    run = runs["vqvae2"]
    codes_path = tmp_path / f"codes{suffix}"
    assert cli("encode", "--run", run, "--limit", 24, "--batch-size", 10, "--out", codes_path) == 0
    codes, labels, metadata = load_codes(codes_path)
    model = from_pretrained(run / "checkpoints" / "best")
    x = fashion_test.images[:24].float() / 255
    expected = model.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(codes, expected))
    assert torch.equal(labels, fashion_test.labels[:24])
    assert metadata["code_shapes"] == [[7, 7], [14, 14]] and metadata["codebook_sizes"] == [16, 16]
    assert metadata["model_type"] == "vqvae2" and "Fashion-MNIST" in metadata["dataset"]

    out = tmp_path / "decoded"
    assert cli("decode", "--run", run, "--codes", codes_path, "--out", out, "--batch-size", 7) == 0
    want = (model.decode(expected).clamp(0, 1) * 255).round().to(torch.uint8)
    for i in range(24):
        got = torch.from_numpy(np.array(Image.open(out / f"{i:05d}.png")))
        assert torch.equal(got, want[i, 0]), i
    with Image.open(out / "grid.png") as grid:
        grid.verify()

    coarse = tmp_path / "coarse"
    assert cli("decode", "--run", run, "--codes", codes_path, "--out", coarse, "--upto", 1, "--limit", 3) == 0
    want = (model.decode(expected, upto=1).clamp(0, 1) * 255).round().to(torch.uint8)
    assert sorted(p.name for p in coarse.glob("0*.png")) == ["00000.png", "00001.png", "00002.png"]
    assert torch.equal(torch.from_numpy(np.array(Image.open(coarse / "00002.png"))), want[2, 0])


def test_codes_files_store_small_integers(tmp_path):
    codes = [torch.randint(0, 16, (3, 2, 2)), torch.randint(0, 16, (3, 4, 4))]
    path = save_codes(tmp_path / "c.safetensors", codes, None, {"codebook_sizes": [16, 16]})
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert handle.get_tensor("layer_1").dtype == torch.int16 and "labels" not in handle.keys()
    loaded, labels, _ = load_codes(path)
    assert labels is None and all(torch.equal(a, b) for a, b in zip(loaded, codes))
    big = save_codes(tmp_path / "big.npz", codes, None, {"codebook_sizes": [70000, 16]})
    assert np.load(big)["layer_0"].dtype == np.int32


def test_a_pqvae_run_evaluates_encodes_and_decodes_step_by_step(fashion_test, tmp_path):
    images = fashion_test.images[-4:].float() / 255
    run = write_run(tmp_path / "pq", "pqvae", {"name": "fashion_mnist", "root": str(FASHION)},
                    dict(hidden=16, dim=8, depth=3, groups=2, codebook_size=8, code_dim=4), steps=3, images=images)
    assert cli("eval", "--run", run, "--limit", 16, "--probe-items", 40) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert [layer["grid"] for layer in results["layers"]] == [[2]] * 3 and results["rate"]["bits_per_item"] == 18
    assert [point["bits_per_item"] for point in results["coarse_to_fine"]] == [6, 12, 18]
    tokens = results["tokens"]
    assert len(tokens["tokens"]) == 6 and tokens["items"] == 16 and tokens["nominal_bits"] == 18
    assert tokens["total"]["mi_bits"] == pytest.approx(
        tokens["total"]["marginal_entropy_bits"] - tokens["total"]["cond_entropy_bits"])
    probe = results["linear_probe"]
    assert "40 evenly spaced items" in probe["train_data"]
    assert [p["prefix_len"] for p in probe["points"]] == [1, 2, 3] and [p["bits"] for p in probe["points"]] == [6, 12, 18]
    assert all(0 <= p["test_accuracy"] <= 1 for p in probe["points"])
    for key in ("rate_distortion", "probe"):
        assert (run / "eval" / results["files"][key]).read_bytes()[:4] == b"\x89PNG"
    assert cli("eval", "--run", run, "--limit", 16, "--probe-items", 0, "--out", tmp_path / "np.json") == 0
    assert "linear_probe" not in json.loads((tmp_path / "np.json").read_text())
    codes = tmp_path / "codes.npz"
    assert cli("encode", "--run", run, "--limit", 5, "--out", codes) == 0
    layers, _, metadata = load_codes(codes)
    model = from_pretrained(run / "checkpoints" / "best")
    tokens = model.encode(fashion_test.images[:5].float() / 255)
    assert metadata["code_shapes"] == [[2]] * 3 and all(torch.equal(a, b) for a, b in zip(layers, tokens, strict=True))
    assert cli("decode", "--run", run, "--codes", codes, "--out", tmp_path / "decoded", "--upto", 2) == 0
    want = (model.decode(tokens, upto=2).clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(torch.from_numpy(np.array(Image.open(tmp_path / "decoded" / "00004.png"))), want[4, 0])


# ----------------------------------------------------------------------------- report


def test_report_compares_runs_and_evaluates_the_missing_one(runs, tmp_path, capsys):
    vq, rsq = runs["vqvae2"], runs["rsqvae"]
    assert cli("eval", "--run", rsq, "--limit", ITEMS, "--batch-size", 16) == 0  # rsqvae has results, vqvae2 not
    (vq / "eval" / "results.json").unlink(missing_ok=True)
    out = tmp_path / "report"
    assert cli("report", "--run", vq, rsq, "--out", out, "--limit", 30, "--title", "VQ vs RSQ") == 0
    assert "evaluating" in capsys.readouterr().out
    assert not (vq / "eval" / "results.json").exists()  # evaluated into the report folder, run left alone
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    assert [run["name"] for run in report["runs"]] == ["vqvae2", "rsqvae"]
    for run in report["runs"]:
        results = run["results"]
        for text in (html, md):
            assert run["name"] in text
            assert f"{results['reconstruction']['rmse']:.4f}" in text
            assert f"{results['reconstruction']['psnr']:.2f}" in text
            assert f"{results['layers'][0]['perplexity']:.1f}" in text
    assert report["runs"][0]["results"]["data"]["items"] == 30 and report["runs"][1]["results"]["data"]["items"] == 40
    assert "<table>" in html and "| run |" in md and "VQ vs RSQ" in html
    assert "Caution: the runs were not evaluated on the same items" in md  # 30 vs 40 items
    linked = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert "coarse_to_fine.png" in linked and "rsqvae/training_curves.png" in linked
    assert "vqvae2/reconstructions.png" in linked and "rsqvae/coarse_to_fine.png" in linked
    for link in linked:
        assert f'src="{link}"' in html
        with Image.open(out / link) as picture:
            picture.verify()


def test_training_curves_tolerate_missing_fields(tmp_path):
    records = [{"step": 1, "split": "train", "loss": 2.0}, {"split": "train", "loss": 1.0}, {"step": 2},
               {"step": 3, "split": "val", "logs": {"variance/0": 3.0}, "metrics": {"perplexity/0": 4.0}}]
    assert training_curves(records, tmp_path / "curves.png") is not None
    assert training_curves([{"step": 1}], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_grids_draw_spectrograms_in_colour_with_low_frequencies_at_the_bottom():
    spectrogram = torch.zeros(1, 8, 16)
    spectrogram[0, 0] = 1  # lowest mel band loud
    picture = to_pil(spectrogram, spectrogram=True)
    assert picture.mode == "RGB" and picture.size == (16, 8)
    assert np.array(picture)[-1].mean() > np.array(picture)[0].mean()
    grid = reconstruction_grid(torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28), columns=2)
    assert grid.mode == "L" and grid.size == (2 * 86 + 2, 4 * 86 + 2)  # 28 px tiles enlarged 3× (≥ 64) + 2 px gaps


@pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"{FSDD} not present")
def test_eval_and_decode_of_a_spectrogram_run_write_wavs(tmp_path):
    from hqvae.data import read_wav

    clips = load_dataset("fsdd", "val", root=FSDD)
    run = write_run(tmp_path / "audio", "vqvae", {"name": "fsdd", "root": str(FSDD)}, {**TINY, "hidden": 8}, steps=1,
                    images=clips.images[:4])
    assert cli("eval", "--run", run, "--split", "test", "--limit", 4, "--wavs", 1) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert "Free Spoken Digit" in results["data"]["description"]
    assert results["files"]["audio"] == ["audio/00_original.wav", "audio/00_reconstruction.wav"]
    samples, rate = read_wav(run / "eval" / results["files"]["audio"][1])
    assert rate == 8000 and samples.shape == (1, 127 * 64)
    codes = tmp_path / "codes.npz"
    assert cli("encode", "--run", run, "--limit", 1, "--out", codes) == 0
    assert cli("decode", "--run", run, "--codes", codes, "--out", tmp_path / "decoded") == 0
    assert (tmp_path / "decoded" / "00000.wav").is_file()
    with Image.open(tmp_path / "decoded" / "grid.png") as grid:
        assert grid.mode == "RGB"


def lpips_weight_files(folder: Path) -> tuple[Path, Path]:
    """Randomly initialised AlexNet LPIPS weights in the layout of the real files (for plumbing tests only)."""
    torch.manual_seed(0)
    network = LPIPS("alex")
    backbone, linear = folder / "alexnet.pth", folder / "alex.pth"
    torch.save({f"features.{k}": v for k, v in network.features.state_dict().items()}, backbone)
    torch.save({f"lin{i}.model.1.weight": lin.weight.abs() for i, lin in enumerate(network.lins)}, linear)
    return backbone, linear


def test_lpips_is_reported_only_with_weight_files_and_checked_on_the_image_size(runs, tmp_path, capsys):
    backbone, linear = lpips_weight_files(tmp_path)
    network = load_lpips(backbone, linear)
    torch.manual_seed(0)
    model = hqvae.create_model("vqvae", 3, 32, **TINY)
    x = torch.rand(6, 3, 32, 32)
    results = evaluate(model, [x[:4], x[4:]])
    assert "lpips" not in results["reconstruction"]
    results = evaluate(model, [x[:4], x[4:]], lpips=network)
    x_hat = model.decode(model.encode(x)).clamp(0, 1)
    assert results["reconstruction"]["lpips"] == pytest.approx(network(x_hat, x).mean().item(), rel=1e-5)
    err = error_of(capsys, "eval", "--run", runs["vqvae2"], "--limit", 4, "--out", tmp_path / "r.json",
                   "--lpips-weights", backbone, linear)
    assert "AlexNet needs at least 32×32 pixels" in err and not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------------------- errors


def test_clear_errors(runs, tmp_path, capsys):
    vq, rsq = runs["vqvae2"], runs["rsqvae"]
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir(empty).run_file.write_text(json.dumps({"config": {"data": {"name": "fashion_mnist"}}}))
    err = error_of(capsys, "eval", "--run", empty)
    assert err.startswith("hqvae eval: error:") and "no checkpoint" in err and "train" in err
    assert "not an hqvae run" in error_of(capsys, "eval", "--run", tmp_path)
    assert "no such run folder" in error_of(capsys, "encode", "--run", tmp_path / "nope", "--out", tmp_path / "c.npz")
    assert "must end in .safetensors or .npz" in error_of(capsys, "encode", "--run", vq, "--out", tmp_path / "c.pt")

    codes = tmp_path / "vq.safetensors"
    assert cli("encode", "--run", vq, "--limit", 4, "--out", codes) == 0
    err = error_of(capsys, "decode", "--run", rsq, "--codes", codes, "--out", tmp_path / "x")
    assert "do not fit this 'rsqvae' model" in err and "'vqvae2'" in err and "re-encode" in err
    assert cli("decode", "--run", vq, "--codes", codes, "--out", tmp_path / "x", "--checkpoint", "last") == 0
    assert "encoded with other weights" in capsys.readouterr().err  # a warning: best and last differ
    for upto in (0, 3):
        err = error_of(capsys, "decode", "--run", vq, "--codes", codes, "--out", tmp_path / "x", "--upto", upto)
        assert "--upto must be between 1 and 2" in err

    loaded, labels, metadata = load_codes(codes)
    loaded[1][0, 0, 0] = 16  # beyond K = 16
    bad = save_codes(tmp_path / "bad.npz", loaded, labels, metadata)
    assert "codebook has 16 entries" in error_of(capsys, "decode", "--run", vq, "--codes", bad, "--out", tmp_path / "x")

    for name in ("garbage.safetensors", "garbage.npz"):
        (tmp_path / name).write_bytes(b"not a codes file at all")
        err = error_of(capsys, "decode", "--run", vq, "--codes", tmp_path / name, "--out", tmp_path / "x")
        assert "not a readable hqvae codes file" in err and "hqvae encode" in err
    assert "no such codes file" in error_of(capsys, "decode", "--run", vq, "--codes", tmp_path / "missing.npz",
                                            "--out", tmp_path / "x")
    err = error_of(capsys, "eval", "--run", vq, "--limit", 4, "--out", tmp_path / "r.json",
                   "--lpips-weights", tmp_path / "alex.pth", tmp_path / "lin.pth")
    assert "alex.pth: no such LPIPS weight file (--lpips-weights)" in err
    assert not (tmp_path / "r.json").exists()
