"""The command line end to end on real data: train → eval → encode → decode → report, in-process."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hqvae.cli import main
from hqvae.codes_file import load_codes
from hqvae.data import load_dataset
from hqvae.train.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="needs the Debian package dataset-fashion-mnist (make data installs it)",
)


def train(model: str, out: Path) -> None:
    overrides = {
        "data.limit": 96, "model.overrides": "{hidden: 16, codebook_size: 32, dim: 8}",
        "train.steps": 6, "train.batch_size": 16, "train.log_every": 3, "train.val_every": 3,
        "train.val_batches": 2, "train.checkpoint_every": 3, "train.device": "cpu", "logging.progress": "false",
    }
    args = ["train", "--config", str(REPO / "configs/fashion_mnist.yaml"), "--out", str(out), f"model.name={model}"]
    assert main(args + [f"{k}={v}" for k, v in overrides.items()]) == 0


def test_train_eval_encode_decode_report(tmp_path, capsys):
    runs = {model: tmp_path / model for model in ("vqvae2", "sqvae2")}
    for model, out in runs.items():
        train(model, out)
        assert RunDir(out).read_info().status == "finished"

    # eval: SPEC §5 metrics per layer, written as JSON beside its figures
    results_path = tmp_path / "eval" / "results.json"
    assert main(["eval", "--run", str(runs["sqvae2"]), "--limit", "40", "--out", str(results_path)]) == 0
    results = json.loads(results_path.read_text())
    assert results["data"]["split"] == "test" and results["data"]["items"] == 40
    assert "Fashion-MNIST" in results["data"]["description"]
    assert len(results["layers"]) == 2 and all(1 <= layer["perplexity"] <= 32 for layer in results["layers"])
    assert 0 < results["reconstruction"]["rmse"] < 1 and results["rate"]["bits_per_item"] == (49 + 196) * 5
    for figure in ("reconstructions.png", "codebook_usage.png"):
        assert Image.open(results_path.parent / figure).size[0] > 0

    # encode -> decode reproduces the model's own reconstruction (to 8-bit PNG precision)
    codes_path = tmp_path / "codes.safetensors"
    assert main(["encode", "--run", str(runs["sqvae2"]), "--limit", "8", "--out", str(codes_path)]) == 0
    codes, labels, metadata = load_codes(codes_path)
    assert [tuple(c.shape) for c in codes] == [(8, 7, 7), (8, 14, 14)]
    assert labels.shape == (8,) and metadata["model_type"] == "sqvae2"
    images = tmp_path / "decoded"
    assert main(["decode", "--run", str(runs["sqvae2"]), "--codes", str(codes_path), "--out", str(images)]) == 0
    model = RunDir(runs["sqvae2"]).load_model("best")
    x = load_dataset("fashion_mnist", "test").get_batch(torch.arange(8))[0]
    with torch.no_grad():
        expected = (model.decode(model.encode(x)).clamp(0, 1) * 255).round().to(torch.uint8)
    first = torch.from_numpy(np.array(Image.open(images / "00000.png")))
    assert torch.equal(first, expected[0, 0])

    # report over both runs: HTML and Markdown that name them and carry their numbers
    report = tmp_path / "report"
    assert main(["report", "--run", str(runs["vqvae2"]), str(runs["sqvae2"]), "--limit", "40", "--out", str(report)]) == 0
    html, markdown = (report / "report.html").read_text(), (report / "report.md").read_text()
    for text in (html, markdown):
        assert "vqvae2" in text and "sqvae2" in text
    assert f"{results['reconstruction']['rmse']:.4f}"[:5] in markdown
