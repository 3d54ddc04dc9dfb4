"""Writes the reference training configs ``configs/<dataset>/<model>.yaml`` from the tables below.

    python configs/make_configs.py           rewrite every file
    python configs/make_configs.py --check   list the files that differ from the tables (exit 1 if any)

Edit this script, not the YAML files (tests/test_train.py checks that they agree). Choices:

* Every model of a data set gets the same budget (steps, batch, optimiser, validation), so that
  each VQ/SQ pair is compared at equal architecture (the registry's per-size defaults) and
  equal budget. Adam, lr 1e-3, batch 32, constant lr: the SQ-VAE settings, which are also the
  models' ``train_defaults``.
* The Gumbel temperature follows SPEC §1.2, τ(step) = max(exp(−decay·step), 0). The official
  decay 1e-5 is meant for 100-epoch CIFAR-10 runs (140,600 steps, ending at τ ≈ 0.25); shorter
  budgets scale the decay so that τ ends near the same value (decay ≈ 1.4 / steps).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODELS = {
    "vqvae": ("VQ-VAE", "one VQ layer (EMA codebook, k-means init, commitment 0.25)", "vq"),
    "sqvae": ("SQ-VAE", "one SQ layer (Gaussian type I, self-annealed variance)", "sq"),
    "vqvae2": ("VQ-VAE-2", "two injected VQ layers, top and bottom resolution", "vq"),
    "sqvae2": ("SQ-VAE-2", "two injected SQ layers, top and bottom resolution", "sq"),
    "rqvae": ("RQ-VAE", "four residual VQ layers at one resolution", "vq"),
    "rsqvae": ("RSQ-VAE", "four residual SQ layers at one resolution", "sq"),
    "hqvae": ("HQ-VAE", "two resolutions x two layers (injected + residual), SQ", "sq"),
    "pqvae": ("PQ-VAE", "16 global tokens by progressive stochastic residual quantisation, prefix and "
              "entropy losses", "sq"),
    "global_rvq": ("Global residual VQ (the PQ-VAE control)", "PQ-VAE's network with VQ steps, no prefix "
                   "and no entropy losses", "vq"),
}

# data set folder -> what goes in its files
DATASETS = {
    "fashion_mnist": {
        "title": "Fashion-MNIST (1x28x28; train 55,000 / val 5,000 / test 10,000)",
        "name": "fashion_mnist",
        "root_note": "null: $HQVAE_DATA_ROOT, /usr/share/datasets/fashion-mnist (Debian package), else download",
        "options": "{}",
        "budget": "20,000 steps (about 11.6 epochs); τ ends at exp(-1.4) = 0.25",
        "steps": "20000", "epochs": "null", "decay": "7.0e-5",
        "val_every": 1000, "val_batches": "40",
    },
    "cifar10": {
        "title": "CIFAR-10 (JPEG q75 copy; 3x32x32; train 45,000 / val 5,000 / test 10,000)",
        "name": "cifar10_folder",
        "name_note": "the JPEG q75 copy held locally; use cifar10 for the canonical python batches "
                     "(data.name=cifar10: downloaded with checksum, or data.root=<cifar-10-batches-py>)",
        "root_note": "null: $HQVAE_DATA_ROOT/cifar10-jpeg-q75.tar.gz",
        "options": "{}",
        "budget": "100 epochs (140,600 steps), the SQ-VAE reference budget; official τ decay 1e-5",
        "steps": "null", "epochs": "100", "decay": "1.0e-5",
        "val_every": 2000, "val_batches": "40",
    },
    "fsdd": {
        "title": "Free Spoken Digit Dataset as log-mel spectrograms (1x80x128; train 2,400 / val 300 / test 300 clips)",
        "name": "fsdd",
        "root_note": "null: $HQVAE_DATA_ROOT/fsdd/recordings; or the recordings/ folder of the FSDD repository",
        "options": "{}",
        "options_note": "log-mel parameters (hqvae.data.LogMel), e.g. {n_mels: 80}",
        "budget": "7,500 steps (100 epochs); τ ends at exp(-1.5) = 0.22",
        "steps": "7500", "epochs": "null", "decay": "2.0e-4",
        "val_every": 500, "val_batches": "null",
    },
    "image_folder_64": {
        "title": "any image folder or archive, resized and centre-cropped to 3x64x64",
        "name": "image_folder",
        "root_note": "required: data.root=/path/to/images (a folder or .tar.gz; class sub-folders optional)",
        "options": "{size: 64}",
        "options_note": "hqvae.data.image_folder options: size, center_crop, channels, val_fraction, ...",
        "budget": "50,000 steps; τ ends at exp(-1.5) = 0.22",
        "steps": "50000", "epochs": "null", "decay": "3.0e-5",
        "val_every": 2000, "val_batches": "40",
    },
    "image_folder_256": {
        "title": "any image folder or archive, resized and centre-cropped to 3x256x256",
        "name": "image_folder",
        "root_note": "required: data.root=/path/to/images (a folder or .tar.gz; class sub-folders optional)",
        "options": "{size: 256}",
        "options_note": "hqvae.data.image_folder options: size, center_crop, channels, val_fraction, ...",
        "budget": "100,000 steps; τ ends at exp(-1.5) = 0.22; on a GPU consider train.dtype=bf16",
        "steps": "100000", "epochs": "null", "decay": "1.5e-5",
        "val_every": 5000, "val_batches": "20",
    },
}

TEMPLATE = """\
# {model_title} on {title}.
# Model: {model_note}; the registry's defaults for this input size (hqvae.create_model).
# Budget: {budget}.
# Generated by configs/make_configs.py (edit that, not this file). Every key is described in
# hqvae/train/config.py; override any of them on the command line:
#   hqvae train --config configs/{dataset}/{model}.yaml --out runs/{dataset}-{model} [optim.lr=3e-4 ...]
data:
  name: {name}{name_comment}
  root: null  # {root_note}
  options: {options}{options_comment}
  limit: null  # train on this many evenly spaced items (null: all)
model:
  name: {model}
  overrides: {{}}  # e.g. {{codebook_size: 256, hidden: 128}}
optim:
  name: adam
  lr: 1.0e-3
  betas: [0.9, 0.999]
  weight_decay: 0.0
  grad_clip: null
  schedule: constant
  warmup_steps: 0
train:
  steps: {steps}
  epochs: {epochs}
  batch_size: 32  # over all processes
  seed: 0
  device: auto
  dtype: fp32
  log_every: 100
  val_every: {val_every}
  val_batches: {val_batches}
  checkpoint_every: {val_every}
{temperature}logging:
  tensorboard: false
  progress: true
"""

TEMPERATURE = """\
temperature:  # Gumbel-softmax τ(step) = max(init * exp(-decay * step), min)
  init: 1.0
  decay: {decay}
  min: 0.0
"""


def render(dataset: str, model: str) -> str:
    spec = DATASETS[dataset]
    model_title, model_note, quantizer = MODELS[model]
    return TEMPLATE.format(
        model_title=model_title, model_note=model_note, dataset=dataset, model=model,
        name_comment=f"  # {spec['name_note']}" if "name_note" in spec else "",
        options_comment=f"  # {spec['options_note']}" if "options_note" in spec else "",
        temperature=TEMPERATURE.format(decay=spec["decay"]) if quantizer == "sq" else "",
        **{key: value for key, value in spec.items() if not key.endswith("_note") or key == "root_note"},
    )


def render_all() -> dict[str, str]:
    """{"<dataset>/<model>.yaml": text} for every data set and model."""
    return {f"{dataset}/{model}.yaml": render(dataset, model) for dataset in DATASETS for model in MODELS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report files that differ")
    args = parser.parse_args()
    stale = []
    for relative, text in render_all().items():
        path = HERE / relative
        if path.is_file() and path.read_text() == text:
            continue
        stale.append(relative)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    verb = "differ" if args.check else "written"
    print(f"{len(stale)} file(s) {verb}" + "".join(f"\n  configs/{name}" for name in stale))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
