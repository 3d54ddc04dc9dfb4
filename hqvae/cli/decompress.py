"""Decompress a .hqz file of `hqvae compress` back into codes and images.

    hqvae decompress FILE.hqz --out DIR [--upto L] [--prior priors/<name>] [--run runs/<name>]
                     [--no-images] [--batch-size 256] [--device cpu]

Writes DIR/codes.safetensors (exactly the codes that were compressed, in `hqvae encode`'s
format; with --upto L or a file cut after a whole layer, its first layers) and, decoded by the
tokenizer, DIR/00000.png, ... and DIR/grid.png (WAVs too for spectrogram runs). --upto L of a
progressive file reads only the bytes of its first L layers. The prior is the one recorded in
the file unless --prior is given; its weights and its tokenizer's must be those the file was
made with (fingerprints), else the file is refused with the reason. --run gives the tokenizer
run if it has moved. Library: `hqvae.decompress` (hqvae/codec.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hqvae.cli.parsing import HQZ, PRIOR, RUN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.hqz", type=HQZ, help="file written by hqvae compress")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--upto", type=int, help="decode the first L layers (coarse to fine) only")
    parser.add_argument("--prior", type=PRIOR, help="prior folder (default: the one recorded in the file)")
    parser.add_argument("--run", dest="run_dir", type=RUN, help="tokenizer run (default: the prior's)")
    parser.add_argument("--no-images", action="store_true", help="write the codes file only")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of the image decoder")
    parser.add_argument("--device", default="cpu", help="device of the image decoder (the coder runs on the CPU)")


def run(args: argparse.Namespace) -> int:
    from hqvae.codec import decompress
    from hqvae.codes_file import save_codes
    from hqvae.priors.images import write_items

    result = decompress(args.file, args.prior, upto=args.upto, images=not args.no_images, run=args.run_dir,
                        device=args.device, batch_size=args.batch_size)
    for note in result.notes:
        print(f"hqvae decompress: note: {note}", file=sys.stderr)
    out = Path(args.out)
    save_codes(out / "codes.safetensors", result.layers, None, result.metadata)
    what = "codes.safetensors"
    log_mel = result.metadata.get("log_mel")
    if result.images is not None:
        write_items(result.images, out, log_mel)
        what += ", PNG files" + (" and WAV files" if log_mel else "") + " and grid.png"
    read = result.hqz.prefix_bytes[result.hqz.complete - 1]
    tokens = sum(layer[0].numel() for layer in result.layers) * result.hqz.items
    print(f"decompressed {result.hqz.items} items, layers 1–{result.upto} of {result.total_layers} "
          f"({read} bytes read; {tokens / max(result.coding_seconds, 1e-9):.0f} tokens/s), into {what} in {out}")
    return 0
