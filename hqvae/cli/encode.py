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

from hqvae.cli.parsing import add_common
from hqvae.codes_file import check_suffix
from hqvae.runs import encode_to_file, load_run_data, open_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="codes file, .safetensors or .npz")
    add_common(parser, "run_dir", "split", "checkpoint", "batch_size", "limit", "data_root", "device",
               limit={"help": "encode the first N items only"})


def run(args: argparse.Namespace) -> int:
    check_suffix(args.out)
    opened = open_run(args.run_dir, args.checkpoint, args.device)
    dataset = load_run_data(opened.info, args.split, args.data_root, args.limit)
    codes, _, metadata, path = encode_to_file(opened, dataset, args.split, args.out, args.batch_size)
    shapes = ", ".join(f"{'×'.join(map(str, shape))}/K={k}"
                       for shape, k in zip(metadata["code_shapes"], metadata["codebook_sizes"]))
    print(f"encoded {len(dataset)} items of {dataset.description} into {len(codes)} layers ({shapes}); wrote {path}")
    return 0
