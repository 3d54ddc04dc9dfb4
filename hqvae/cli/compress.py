"""Compress images (or a codes file) into a .hqz file: the tokenizer's codes, range-coded with a prior.

    hqvae compress --prior priors/<name> INPUT... --out FILE.hqz [--no-progressive] [--no-prior-path]
                   [--coding-batch 64] [--batch-size 256] [--checkpoint best|last] [--device cpu]

INPUT is either image files (PNG, JPEG, ...; all the run's image size, converted to its channels:
grey or RGB), encoded in the given order by the prior's tokenizer run, or one codes file written
by `hqvae encode` with that run (.safetensors / .npz). The file is written coarse to fine: one
segment per layer (HQ-VAE layer, RQ depth, PQ-VAE step), so that `hqvae decompress --upto L`
reads only the first L and a file cut after a whole layer still decodes; priors that cannot code
a prefix of layers on its own (the depth prior) write one segment, and --progressive then refuses
them with the reason. The probabilities are snapped to a grid so that the file decodes on any CPU
(hqvae/priors/grid.py). Library: `hqvae.compress` (hqvae/codec.py); format: hqvae/hqz.py.
"""
from __future__ import annotations

import argparse

from hqvae.cli.parsing import INPUT, add_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "prior", "batch_size", "checkpoint", "device",
               batch_size={"help": "batch size of the image encoder"}, checkpoint={"help": "checkpoint of the prior"},
               device={"default": "cpu", "help": "device of the image encoder (the coder runs on the CPU)"})
    parser.add_argument("inputs", nargs="+", metavar="INPUT", type=INPUT,
                        help="image files, or one codes file of hqvae encode")
    parser.add_argument("--out", required=True, help="the compressed file, FILE.hqz")
    parser.add_argument("--progressive", action=argparse.BooleanOptionalAction, default=None,
                        help="one segment per layer, coarse to fine (default: whenever the prior allows it)")
    parser.add_argument("--prior-path", action=argparse.BooleanOptionalAction, default=True,
                        help="record the prior's folder in the file (default; --no-prior-path saves its bytes, "
                             "and decompress then needs --prior)")
    parser.add_argument("--coding-batch", type=int, default=64, help="items coded together (recorded in the file)")


def run(args: argparse.Namespace) -> int:
    from hqvae.codec import compress

    result = compress(args.inputs, args.prior, args.out, coding_batch=args.coding_batch, progressive=args.progressive,
                      checkpoint=args.checkpoint, device=args.device, batch_size=args.batch_size,
                      record_prior_path=args.prior_path)
    prefixes = ", ".join(map(str, result.prefix_bytes))
    layout = "progressive, bytes up to each layer: " + prefixes if result.progressive else "one segment"
    print(f"compressed {result.items} items into {args.out}: {result.bytes} bytes ({layout}), "
          f"{8 * result.bytes / max(result.items, 1):.1f} bits per item; {result.tokens / max(result.coding_seconds, 1e-9):.0f} tokens/s")
    return 0
