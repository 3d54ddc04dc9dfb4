"""Encode a split of a run's data set into discrete codes (deterministic quantisation).

    hqvae encode --run runs/<name> [--split test] [--checkpoint best|last] [--batch-size 256]
                 [--limit N] [--data-root PATH] [--device cpu] --out codes.safetensors|codes.npz

The file holds layer_0 ... layer_<L-1> (N, h_l, w_l) coarse to fine (a PQ-VAE's steps:
(N, G)) as int16 (or int32 for
codebooks above 32768 entries), labels (N,) when the data set has them, and metadata JSON:
model type, code shapes, codebook sizes, image size, data set description, split, run,
checkpoint and a fingerprint of the weights (see hqvae.codes_file).  `hqvae decode` reads it.
"""
from __future__ import annotations

import argparse

import torch

from hqvae.runs import load_run_data, open_run
from hqvae.codes_file import check_suffix, save_codes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", metavar="RUN", required=True,
                        help="run folder written by hqvae train")
    parser.add_argument("--out", required=True, help="codes file, .safetensors or .npz")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--limit", type=int, help="encode the first N items only")
    parser.add_argument("--data-root", help="where the run's data set is now, if not at the recorded root")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def encode_dataset(model, dataset, batch_size: int) -> list[torch.Tensor]:
    """Codes of every item, one (N, *positions) long tensor per layer (on the CPU)."""
    device = next(model.parameters()).device
    batches = []
    for x, _ in dataset.batches(batch_size):
        batches.append(model.encode(x.to(device)))
    return [torch.cat([codes[layer].cpu() for codes in batches]) for layer in range(len(batches[0]))]


def run(args: argparse.Namespace) -> int:
    check_suffix(args.out)
    opened = open_run(args.run_dir, args.checkpoint, args.device)
    dataset = load_run_data(opened.info, args.split, args.data_root, args.limit)
    model = opened.model
    codes = encode_dataset(model, dataset, args.batch_size)
    log_mel = dataset.meta.get("log_mel")
    metadata = {
        "model_type": model.config.name,
        "num_layers": len(codes),
        "code_shapes": [list(code.shape[1:]) for code in codes],
        "codebook_sizes": model.codebook_sizes,
        "in_channels": model.config.in_channels,
        "image_size": list(dataset.image_size),
        "items": len(dataset),
        "split": args.split,
        "dataset": dataset.description,
        "run": {"path": str(opened.run_dir.root), "name": opened.name},
        "checkpoint": {"which": opened.checkpoint["which"], "step": opened.checkpoint["step"]},
        "model_fingerprint": opened.fingerprint(),
        "log_mel": log_mel.config() if log_mel is not None else None,
    }
    labels = dataset.labels if bool((dataset.labels >= 0).any()) else None
    path = save_codes(args.out, codes, labels, metadata)
    shapes = ", ".join(f"{'×'.join(map(str, shape))}/K={k}"
                       for shape, k in zip(metadata["code_shapes"], metadata["codebook_sizes"]))
    print(f"encoded {len(dataset)} items of {dataset.description} into {len(codes)} layers ({shapes}); wrote {path}")
    return 0
