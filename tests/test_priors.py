"""Priors over codes: the transformer, sampling, training, evaluation and real compression."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hqvae
import hqvae.hqz
from hqvae.cli import main
from hqvae.codes_file import load_codes, save_codes
from hqvae.priors import CodeLayout, CodePrior, PriorConfig, build_prior, decode_layers, sample
from hqvae.priors.coding import coding_copy, decode_tokens, encode_tokens
from hqvae.priors.images import write_items
from hqvae.priors.config import load_prior_config
from hqvae.priors.sampling import filter_logits, run_steps
from hqvae.priors.base import WEIGHTS_NAME

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fashion_mnist = pytest.mark.skipif(not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                                         reason="needs the Debian package dataset-fashion-mnist")
HQ_TINY = dict(hidden=16, codebook_size=16, dim=8)
PQ_TINY = dict(hidden=16, dim=8, depth=3, groups=2, codebook_size=8, code_dim=4)
# hierarchical, residual, PQ; without BatchNorm, whose running statistics after 4 steps would map every
# item to the same codes
FAMILIES = {name: {**overrides, "batch_norm": False} for name, overrides in
            {"sqvae2": HQ_TINY, "rsqvae": {**HQ_TINY, "hidden": 32, "dim": 16, "depth": 2}, "pqvae": PQ_TINY}.items()}
PRIOR_TINY = ["model.d_model=32", "model.n_layer=2", "model.n_head=2", "train.steps=6", "train.batch_size=8",
              "train.log_every=3", "train.val_every=3", "train.checkpoint_every=3", "data.limit=64",
              "data.val_items=16", "train.device=cpu", "logging.progress=false"]


def tiny_overrides(name: str) -> dict:
    return PQ_TINY if name in ("pqvae", "global_rvq") else ({**HQ_TINY, "depth": 2} if name in ("rqvae", "rsqvae")
                                                             else HQ_TINY)


def tiny_prior(layout: CodeLayout, num_classes: int = 0, seed: int = 0) -> CodePrior:
    torch.manual_seed(seed)
    return CodePrior(PriorConfig([list(s) for s in layout.code_shapes], list(layout.codebook_sizes), d_model=32,
                                 n_layer=2, n_head=2, num_classes=num_classes))


def cli(*argv) -> int:
    return main([str(arg) for arg in argv])


def error_of(capsys, *argv) -> str:
    capsys.readouterr()
    assert cli(*argv) == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------------ every model


@pytest.mark.parametrize("kind", ["flat", "depth"])
@pytest.mark.parametrize("name", hqvae.list_models())
def test_the_prior_models_the_codes_of_every_registered_model(name, kind):
    torch.manual_seed(0)
    model = hqvae.create_model(name, in_channels=1, image_size=16, **tiny_overrides(name)).eval()
    x = torch.rand(3, 1, 16, 16)
    layers = model.encode(x)
    layout = CodeLayout.from_codes(model, layers)
    tokens = layout.flatten(layers)
    assert all(torch.equal(a, b) for a, b in zip(layout.unflatten(tokens), layers))
    tokens = torch.cat([torch.randint(0, k, (3, n)) for n, k in zip(layout.lengths, layout.codebook_sizes)], 1)
    config = PriorConfig([list(s) for s in layout.code_shapes], list(layout.codebook_sizes), d_model=32, n_layer=2,
                         n_head=2, kind=kind)
    if kind == "depth" and len(set(layout.code_shapes)) > 1:
        with pytest.raises(ValueError, match="share one grid.*model.kind=flat"):
            build_prior(config)
        return
    prior = build_prior(config).double().eval()
    logits = prior(tokens)
    assert [tuple(l.shape) for l in logits] == [(3, n, k) for n, k in zip(layout.lengths, layout.codebook_sizes)]
    bits = prior.nll_bits(tokens)
    assert bits.shape == (3, layout.num_layers) and torch.isfinite(bits).all()
    # the KV-cached steps, in the prior's generation order, give the logits of the full causal pass
    steps, order = [], prior.order
    run_steps(prior, torch.full((3,), prior.no_class), lambda t, step: (steps.append(step), tokens[:, order[t]])[1])
    assert sorted(order.tolist()) == list(range(layout.length))
    full = torch.cat(logits, 1)  # (3, T, K): every tiny model has one K for all its layers
    assert torch.allclose(torch.stack(steps, 1), full[:, order], atol=1e-10)
    # the coder gives back the tokens, spending their NLL
    [words] = encode_tokens(coding_copy(prior), tokens, coding_batch=2)
    assert torch.equal(decode_tokens(coding_copy(prior), [words], 3, 2), tokens)
    assert 32 * words.size <= bits.sum() + 64
    # samples are valid codes of the model: they decode to images of the input's shape
    drawn = layout.unflatten(sample(prior.float(), 2, temperature=0.8, top_k=4, seed=1))
    layout.check_layers(drawn)
    assert decode_layers(model, drawn).shape == (2, 1, 16, 16)


def test_filtering_keeps_top_k_and_the_top_p_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.01)).tolist() == [[True, False, False, False]]
    assert torch.allclose(filter_logits(logits, temperature=2.0), logits / 2)


def test_the_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ValueError, match="valid keys: kind, depth_layers, d_model"):
        load_prior_config(["model.width=3"])
    with pytest.raises(ValueError, match="train.steps must be an integer"):
        load_prior_config(["train.steps=abc"])
    assert load_prior_config(["optim.lr=3e-4"]).optim.lr == 3e-4
    # the transformer's checks (declared once, on hqvae.priors.base.TransformerConfig) run when the config loads
    with pytest.raises(ValueError, match="model.d_model=30 must be divisible by model.n_head=4"):
        load_prior_config(["model.d_model=30"])
    with pytest.raises(ValueError, match="model.depth_layers must be ≥ 1, got 0"):
        load_prior_config(["model.depth_layers=0"])


# ------------------------------------------------------------------------------ coding


def test_the_coded_size_is_within_one_percent_of_the_nll():
    """Range coding with the prior spends its NLL (float32 teacher forcing) within 1% + a few words."""
    layout = CodeLayout.of([[4, 4], [32]], [8, 32])
    prior = tiny_prior(layout, seed=3)
    with torch.no_grad():  # peaked, context-dependent distributions, far from uniform
        for head in prior.heads:
            head.weight.mul_(40)
        prior.token_embedding.weight.mul_(20)
    prior.eval()
    tokens = sample(prior, 300, seed=5)  # codes that the prior finds likely, as trained priors do
    with torch.no_grad():
        nll = float(prior.nll_bits(tokens).sum())
    [words] = encode_tokens(coding_copy(prior), tokens, coding_batch=64)
    coded = 32 * words.size
    assert nll < 0.4 * 300 * layout.uniform_bits()
    assert abs(coded - nll) <= 0.01 * nll + 64, (coded, nll)
    assert torch.equal(decode_tokens(coding_copy(prior), [words], 300, 64), tokens)
    # a coder with other probabilities (uniform) would be far off
    assert 300 * layout.uniform_bits() > 2.5 * coded


# ------------------------------------------------------------------------------ the command line


def train_run(name: str, out: Path) -> Path:
    overrides = {"data.limit": 64, "model.overrides": json.dumps(FAMILIES[name]), "train.steps": 4,
                 "train.batch_size": 16, "train.val_every": 4, "train.val_batches": 1, "train.checkpoint_every": 4,
                 "train.device": "cpu", "logging.progress": "false"}
    assert cli("train", "--config", REPO / "configs/fashion_mnist.yaml", "--out", out, f"model.name={name}",
               *[f"{k}={v}" for k, v in overrides.items()]) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(tokenizer run, prior) for one model of each family, trained a few steps on Fashion-MNIST
    (rsqvae twice: flat and depth priors)."""
    root = tmp_path_factory.mktemp("priors")
    pairs = {}
    for name in FAMILIES:
        run = train_run(name, root / f"run-{name}")
        kind = ["model.kind=flat"] if name == "rsqvae" else []  # the default would be the depth prior
        assert cli("prior", "train", "--run", run, "--out", root / f"prior-{name}", *PRIOR_TINY, *kind) == 0
        pairs[name] = (run, root / f"prior-{name}")
    run = pairs["rsqvae"][0]  # and the default for a residual stack: the RQ-Transformer-style prior
    assert cli("prior", "train", "--run", run, "--out", root / "prior-rsqvae-depth", *PRIOR_TINY) == 0
    pairs["rsqvae-depth"] = (run, root / "prior-rsqvae-depth")
    kinds = {name: json.loads((prior / "run.json").read_text())["prior_kind"] for name, (_, prior) in pairs.items()}
    assert kinds == {"sqvae2": "flat", "rsqvae": "flat", "pqvae": "flat", "rsqvae-depth": "depth"}
    return pairs


COMPRESS_SCRIPT = """
import sys
from hqvae.cli import main
root = sys.argv[1]
for name in sys.argv[2:]:
    assert main(["compress", "--prior", f"{root}/prior-{name}", f"{root}/codes-{name}.safetensors",
                 "--out", f"{root}/{name}.hqz", "--coding-batch", "4"]) == 0
"""
DECOMPRESS_SCRIPT = """
import sys
from hqvae.cli import main
root = sys.argv[1]
for name in sys.argv[2:]:
    assert main(["decompress", f"{root}/{name}.hqz", "--out", f"{root}/out-{name}", "--batch-size", "2"]) == 0
"""


@needs_fashion_mnist
def test_prior_train_eval_sample_and_resume(trained, tmp_path, capsys):
    run, prior = trained["sqvae2"]
    info = json.loads((prior / "run.json").read_text())
    assert info["kind"] == "hqvae-prior" and info["status"] == "finished" and info["step"] == 6
    assert info["tokenizer"]["model_type"] == "sqvae2" and info["tokens_per_item"] == 49 + 196
    records = [json.loads(line) for line in (prior / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "val"} and all(np.isfinite(r["bits_per_item"]) for r in records)
    assert (prior / "checkpoints" / "best" / WEIGHTS_NAME).is_file()
    assert torch.load(prior / "checkpoints" / "last" / "train_state.pt", weights_only=True)["step"] == 6

    assert cli("prior", "eval", "--prior", prior, "--limit", 24) == 0
    results = json.loads((prior / "eval" / "test.json").read_text())
    assert results["items"] == 24 and len(results["layers"]) == 2
    assert results["uniform_bits_per_item"] == pytest.approx(245 * 4)
    assert results["nll_bits_per_item"] == pytest.approx(sum(layer["nll_bits"] for layer in results["layers"]))
    assert 0 < results["histogram_bits_per_item"] <= results["uniform_bits_per_item"] + 1e-6

    assert cli("sample", "--prior", prior, "--num", 3, "--out", tmp_path / "s", "--top-p", 0.9, "--seed", 2) == 0
    codes, _, metadata = load_codes(tmp_path / "s" / "codes.safetensors")
    assert [tuple(c.shape) for c in codes] == [(3, 7, 7), (3, 14, 14)] and (tmp_path / "s" / "grid.png").is_file()
    assert cli("decode", "--run", run, "--codes", tmp_path / "s" / "codes.safetensors", "--out", tmp_path / "d") == 0
    assert np.array_equal(np.array(Image.open(tmp_path / "d" / "00002.png")),
                          np.array(Image.open(tmp_path / "s" / "00002.png")))

    # bit-exact resume on CPU (class-conditional: the label dropout draws random numbers)
    common = [*PRIOR_TINY, "optim.schedule=constant", "optim.warmup_steps=0", "model.class_conditional=true",
              "model.dropout=0.1"]
    assert cli("prior", "train", "--run", run, "--out", tmp_path / "a", *common) == 0
    assert cli("prior", "train", "--run", run, "--out", tmp_path / "b", *common, "train.steps=3") == 0
    assert cli("prior", "train", "--out", tmp_path / "b", "--resume", "train.steps=6") == 0
    assert ((tmp_path / "a" / "checkpoints" / "last" / WEIGHTS_NAME).read_bytes()
            == (tmp_path / "b" / "checkpoints" / "last" / WEIGHTS_NAME).read_bytes())
    assert "valid keys" in error_of(capsys, "prior", "train", "--run", run, "--out", tmp_path / "c", "train.stepz=3")
    assert "already holds" in error_of(capsys, "prior", "train", "--run", run, "--out", tmp_path / "a", *PRIOR_TINY)

    # the NaN guard: a diverging run stops with a message naming the step, keeping the last good checkpoint
    assert cli("prior", "train", "--run", run, "--out", tmp_path / "nan", *PRIOR_TINY, "optim.lr=1e30",
               "optim.warmup_steps=0", "optim.grad_clip=null") == 1
    info = json.loads((tmp_path / "nan" / "run.json").read_text())
    assert info["status"] == "stopped_nan" and "non-finite" in info["message"]

    # classes: conditional sampling, out-of-range and unconditional priors refuse a class
    assert cli("sample", "--prior", tmp_path / "a", "--num", 2, "--class", 3, "--out", tmp_path / "s3") == 0
    assert "must lie in [0, 9]" in error_of(capsys, "sample", "--prior", tmp_path / "a", "--num", 2, "--class", 10,
                                            "--out", tmp_path / "s10")
    assert "unconditional prior" in error_of(capsys, "sample", "--prior", prior, "--num", 2, "--class", 1,
                                             "--out", tmp_path / "s1")


@needs_fashion_mnist
def test_decompress_of_compress_gives_the_codes_of_encode_across_processes(trained, tmp_path, capsys):
    """For every family: encode (batch 3) -> compress in one process (coding batch 4, 2 threads) ->
    decompress in another (decoder batch 2, 1 thread): exactly the encoded codes, hence exactly the
    eval reconstruction."""
    for name, (run, prior) in trained.items():
        assert cli("encode", "--run", run, "--limit", 10, "--batch-size", 3, "--out",
                   tmp_path / f"codes-{name}.safetensors") == 0
        (tmp_path / f"prior-{name}").symlink_to(prior)
    for script, threads in ((COMPRESS_SCRIPT, "2"), (DECOMPRESS_SCRIPT, "1")):  # other thread counts too
        subprocess.run([sys.executable, "-c", script, str(tmp_path), *trained], check=True, timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": threads})
    for name, (run, prior) in trained.items():
        encoded, _, _ = load_codes(tmp_path / f"codes-{name}.safetensors")
        decoded, _, metadata = load_codes(tmp_path / f"out-{name}" / "codes.safetensors")
        # not one constant code (how many a few training steps leave in use depends on the CPU's kernels)
        assert len(torch.cat([code.flatten() for code in encoded]).unique()) > 1, name
        assert all(torch.equal(a, b) for a, b in zip(encoded, decoded)), name
        assert cli("decode", "--run", run, "--codes", tmp_path / f"codes-{name}.safetensors", "--out",
                   tmp_path / f"ref-{name}") == 0
        for i in (0, 9):
            assert np.array_equal(np.array(Image.open(tmp_path / f"ref-{name}" / f"{i:05d}.png")),
                                  np.array(Image.open(tmp_path / f"out-{name}" / f"{i:05d}.png"))), name

    # progressive files: every prefix (read with --upto, or a file cut after a whole layer) decodes exactly the
    # first layers of encode, and their images are decode --upto's; the depth prior writes one segment
    for name, (run, prior) in trained.items():
        encoded, _, _ = load_codes(tmp_path / f"codes-{name}.safetensors")
        hqz = hqvae.hqz.read_hqz(tmp_path / f"{name}.hqz")
        assert hqz.progressive == (name != "rsqvae-depth") and hqz.total_segments == (len(encoded) if hqz.progressive
                                                                                      else 1), name
        for upto in range(1, hqz.total_segments + 1 if hqz.progressive else 0):
            cut = tmp_path / f"{name}-cut{upto}.hqz"
            cut.write_bytes((tmp_path / f"{name}.hqz").read_bytes()[:hqz.prefix_bytes[upto - 1]])
            for source, args in ((tmp_path / f"{name}.hqz", ["--upto", upto]), (cut, [])):
                assert cli("decompress", source, "--out", tmp_path / f"p-{name}", *args) == 0
                decoded, _, _ = load_codes(tmp_path / f"p-{name}" / "codes.safetensors")
                assert len(decoded) == upto and all(torch.equal(a, b) for a, b in zip(encoded, decoded)), (name, upto)
            assert cli("decode", "--run", run, "--codes", tmp_path / f"codes-{name}.safetensors", "--upto", upto,
                       "--out", tmp_path / f"ref-{name}-{upto}") == 0
            # the prefix's own codes file (decompress --upto writes the first upto layers) decodes too
            assert cli("decode", "--run", run, "--codes", tmp_path / f"p-{name}" / "codes.safetensors",
                       "--out", tmp_path / f"prefix-{name}-{upto}") == 0
            for folder in (f"ref-{name}-{upto}", f"prefix-{name}-{upto}"):
                assert np.array_equal(np.array(Image.open(tmp_path / folder / "00003.png")),
                                      np.array(Image.open(tmp_path / f"p-{name}" / "00003.png"))), (name, upto, folder)
    message = error_of(capsys, "compress", "--prior", trained["rsqvae-depth"][1], "--progressive",
                       tmp_path / "codes-rsqvae-depth.safetensors", "--out", tmp_path / "x.hqz")
    assert "cannot be decoded on its own" in message and "--no-progressive" in message

    # images as input: the PNG files of test items give the codes that hqvae encode gives them
    from hqvae.data import load_dataset

    run, prior = trained["sqvae2"]
    images = load_dataset("fashion_mnist", "test", root=FASHION_MNIST).images[:5, 0].numpy()
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / "png" / f"{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(paths[-1])
    assert cli("compress", "--prior", prior, *paths, "--out", tmp_path / "img.hqz", "--coding-batch", 2) == 0
    assert cli("decompress", tmp_path / "img.hqz", "--out", tmp_path / "img", "--no-images") == 0
    decoded, _, _ = load_codes(tmp_path / "img" / "codes.safetensors")
    encoded, _, _ = load_codes(tmp_path / "codes-sqvae2.safetensors")
    assert all(torch.equal(a, b[:5]) for a, b in zip(decoded, encoded))
    # the library: images as a tensor give the same file; its bytes decode without a path
    x = hqvae.codec.read_images(paths, 1, [28, 28])
    written = hqvae.compress(x, prior, coding_batch=2)
    assert written.data == (tmp_path / "img.hqz").read_bytes() and written.items == 5
    back = hqvae.decompress(written.data, prior, upto=1)
    assert back.upto == 1 and torch.equal(back.layers[0], encoded[0][:5]) and back.images.shape == (5, 1, 28, 28)

    # bad inputs: each refused with the reason and the fix
    hqz = tmp_path / "sqvae2.hqz"
    data = hqz.read_bytes()
    first = hqvae.hqz.read_hqz(hqz).prefix_bytes[0]
    (tmp_path / "cut.hqz").write_bytes(data[:first - 3])
    assert "truncated" in error_of(capsys, "decompress", tmp_path / "cut.hqz", "--out", tmp_path / "x")
    (tmp_path / "cut.hqz").write_bytes(data[:-10])  # inside the last layer: the whole layers before it decode
    assert cli("decompress", tmp_path / "cut.hqz", "--out", tmp_path / "x", "--no-images") == 0
    assert "truncated after 1 of its 2 layers" in capsys.readouterr().err
    assert "holds 1 whole layer segment of 2, not 2" in error_of(capsys, "decompress", tmp_path / "cut.hqz", "--upto",
                                                                 2, "--out", tmp_path / "x")
    (tmp_path / "bad.hqz").write_bytes(data[:-40] + bytes([data[-40] ^ 4]) + data[-39:])
    assert "checksum" in error_of(capsys, "decompress", tmp_path / "bad.hqz", "--out", tmp_path / "x")
    (tmp_path / "v9.hqz").write_bytes(data[:4] + struct.pack("<H", 9) + data[6:])
    assert "format version 9" in error_of(capsys, "decompress", tmp_path / "v9.hqz", "--out", tmp_path / "x")
    assert "not an hqvae compressed file" in error_of(capsys, "decompress", paths[0], "--out", tmp_path / "x")
    message = error_of(capsys, "decompress", hqz, "--prior", trained["rsqvae"][1], "--out", tmp_path / "x")
    assert "was compressed with the prior" in message and "--prior" in message
    message = error_of(capsys, "compress", "--prior", prior, tmp_path / "codes-rsqvae.safetensors",
                       "--out", tmp_path / "x.hqz")
    assert "train a prior on the codes' run" in message and not (tmp_path / "x.hqz").exists()
    codes, labels, metadata = load_codes(tmp_path / "codes-sqvae2.safetensors")
    save_codes(tmp_path / "cut.safetensors", [codes[0], codes[1][:, :7]], labels, metadata)
    assert "positions" in error_of(capsys, "compress", "--prior", prior, tmp_path / "cut.safetensors",
                                   "--out", tmp_path / "x.hqz")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    assert "resize" in error_of(capsys, "compress", "--prior", prior, tmp_path / "big.png", "--out", tmp_path / "x.hqz")


def test_spectrogram_items_are_written_as_wavs_too(tmp_path):
    from hqvae.data import LogMel, read_wav

    written = write_items(torch.rand(2, 1, 80, 16), tmp_path, LogMel(frames=16).config())
    assert sorted(p.name for p in written) == ["00000.png", "00000.wav", "00001.png", "00001.wav", "grid.png"]
    samples, rate = read_wav(tmp_path / "00001.wav")
    assert rate == 8000 and samples.shape[-1] > 0
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.mode == "RGB"  # spectrograms in colour, as hqvae decode draws them


@needs_fashion_mnist
def test_two_ddp_processes_train_the_prior_of_one_process(trained, tmp_path):
    """torchrun with 2 gloo processes (each half of every batch) ends where one process does."""
    run, _ = trained["sqvae2"]
    settings = [*PRIOR_TINY, "train.steps=4", "train.val_every=4", "train.checkpoint_every=4", "optim.lr=1e-2",
                "optim.warmup_steps=0"]
    assert cli("prior", "train", "--run", run, "--out", tmp_path / "one", *settings) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                             "hqvae", "prior", "train", "--tokenizer", str(run), "--out", str(tmp_path / "two"),
                             *settings], env=env, timeout=240, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("one", "two"))
    assert two["world_size"] == 2 and two["status"] == "finished"
    assert two["best"]["val_bits_per_item"] == pytest.approx(one["best"]["val_bits_per_item"], rel=1e-5)
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / name / "checkpoints" / "last" / WEIGHTS_NAME) for name in ("one", "two"))

    def distance(x, y):  # largest difference of any parameter
        return max((x[key] - y[key]).abs().max().item() for key in x)

    # not bit-exact: the all-reduce sums in another order, and Adam at lr 1e-2 scales a near-zero
    # gradient's rounding up to its step (3e-5 measured on one CPU)
    assert distance(a, b) < 1e-3
    # each process alone (half the batch) would have ended elsewhere, far from both
    assert cli("prior", "train", "--run", run, "--out", tmp_path / "half", *settings, "train.batch_size=4") == 0
    half = load_file(tmp_path / "half" / "checkpoints" / "last" / WEIGHTS_NAME)
    assert distance(a, half) > 10 * distance(a, b)
