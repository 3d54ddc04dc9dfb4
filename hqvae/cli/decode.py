"""Decode a codes file written by `hqvae encode` back into images (and WAVs for spectrograms).

    hqvae decode --run runs/<name> --codes codes.safetensors --out DIR [--upto m] [--limit N]
                 [--checkpoint best|last] [--batch-size 256] [--device cpu]

Writes DIR/00000.png, DIR/00001.png, ... (one per item, pixels rounded to 8 bits; spectrograms
in grey as stored, frequency along the rows), DIR/grid.png (the first 64 items; spectrograms in
colour, low frequencies at the bottom) and, when the codes come from a log-mel data set, DIR/00000.wav, ... made
by Griffin-Lim.  --upto m decodes from the first m layers only (coarse to fine; missing
residual layers contribute zero, a missing injected layer is the codebook mean).  The codes must
come from a model of the same structure: layer count, grids and codebook sizes are checked, and
a warning is printed when they were made with other weights.  A file holding a prefix of the
layers (``hqvae decompress --upto``) decodes from those layers.  Without --checkpoint the one
recorded in the codes file is used.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hqvae.cli.parsing import CODES, add_common
from hqvae.codes_file import check_codes, load_codes
from hqvae.priors.images import write_items
from hqvae.priors.layout import decode_layers
from hqvae.runs import open_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--codes", required=True, type=CODES, help="codes file written by hqvae encode")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--upto", type=int, help="decode from the first m layers only (1 ≤ m ≤ L)")
    add_common(parser, "run_dir", "limit", "checkpoint", "batch_size", "device",
               run_dir={"help": "run folder whose model decodes the codes"},
               limit={"help": "decode the first N items only"},
               checkpoint={"default": None,
                           "help": "checkpoint of the run (default: the one recorded in the codes file, else best)"})


def run(args: argparse.Namespace) -> int:
    codes, _, metadata = load_codes(args.codes)
    checkpoint = args.checkpoint or metadata.get("checkpoint", {}).get("which") or "best"
    opened = open_run(args.run_dir, checkpoint, args.device)
    model = opened.model
    check_codes(codes, metadata, model, args.codes)
    layers = len(codes)  # all of the model's layers, or a prefix (hqvae decompress --upto)
    upto = layers if args.upto is None else args.upto
    if not 1 <= upto <= layers:
        raise ValueError(f"--upto must be between 1 and {layers} (the file holds {layers} of this model's "
                         f"{model.num_layers} layers, coarse to fine), got {args.upto}")
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be positive, got {args.limit}")
        codes = [code[:args.limit] for code in codes]
    if metadata.get("model_fingerprint") not in (None, opened.fingerprint()):
        print(f"hqvae decode: warning: {args.codes} was encoded with other weights (run "
              f"{metadata.get('run', {}).get('path')}, checkpoint {metadata.get('checkpoint', {}).get('which')}) "
              f"than {opened.checkpoint['path']}; the images will not match the encoded data", file=sys.stderr)

    x_hat = decode_layers(model, codes, args.batch_size, upto)
    out = Path(args.out)
    log_mel = metadata.get("log_mel")
    write_items(x_hat, out, log_mel)
    what = "PNG and WAV files" if log_mel is not None else "PNG files"
    print(f"decoded {len(x_hat)} items from the first {upto} of {model.num_layers} layers into {what} in {out} "
          f"(+ grid.png)")
    return 0
