"""Compress images (or a codes file) into a .hqz file: the tokenizer's codes, range-coded with a prior.

    hqvae compress --prior priors/<name> INPUT... --out FILE.hqz [--coding-batch 64]
                   [--batch-size 256] [--checkpoint best|last] [--device cpu]

INPUT is either image files (PNG, JPEG, ...; all the run's image size, converted to its channels:
grey or RGB), encoded in the given order by the prior's tokenizer run, or one codes file written
by `hqvae encode` with that run (.safetensors / .npz). The codes are coded with the prior's
probabilities (float64 on the CPU, quantized by constriction; see hqvae/priors/coding.py) in chunks
of --coding-batch items; the file records the prior's and the tokenizer's fingerprints, the code
layout and the item count. `hqvae decompress FILE.hqz --out DIR` gives back exactly these codes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from hqvae.cli.parsing import INPUT, PRIOR
from hqvae.codes_file import SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prior", required=True, type=PRIOR, help="prior folder (hqvae prior train)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", type=INPUT, help="image files, or one codes file of hqvae encode")
    parser.add_argument("--out", required=True, help="the compressed file, FILE.hqz")
    parser.add_argument("--coding-batch", type=int, default=64, help="items coded together (recorded in the file)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of the image encoder")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="checkpoint of the prior")
    parser.add_argument("--device", default="cpu", help="device of the image encoder (the coder runs on the CPU)")


def read_images(paths: list[Path], channels: int, size: list[int]) -> torch.Tensor:
    """Image files -> x (N, C, H, W) float in [0, 1] (8-bit values / 255, as the data loaders give)."""
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"the tokenizer takes {channels}-channel inputs; compress its codes file (hqvae encode) instead")
    images = []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image file")
        try:
            with Image.open(path) as picture:
                array = np.array(picture.convert(mode), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{path} is not a readable image ({error}); pass image files or one codes file") from None
        if list(array.shape[:2]) != list(size):
            raise ValueError(f"{path} is {array.shape[0]}×{array.shape[1]} pixels but the tokenizer was trained on "
                             f"{size[0]}×{size[1]}; resize it to that size first")
        images.append(torch.from_numpy(array.reshape(*array.shape[:2], -1)).permute(2, 0, 1))
    return torch.stack(images).float() / 255


def run(args: argparse.Namespace) -> int:
    from hqvae.codes_file import load_codes
    from hqvae.io import atomic_write_bytes
    from hqvae.priors.coding import coding_copy, encode_tokens, pack
    from hqvae.priors.folder import check_codes_origin, open_prior
    from hqvae.runs import encode_items
    from hqvae.data import ImageDataset

    out = Path(args.out)
    if out.suffix != ".hqz":
        raise ValueError(f"{out}: the compressed file must end in .hqz")
    if args.coding_batch < 1:
        raise ValueError(f"--coding-batch must be ≥ 1, got {args.coding_batch}")
    opened = open_prior(args.prior, args.checkpoint, "cpu")
    layout = opened.prior.layout
    inputs = [Path(p) for p in args.inputs]
    codes_inputs = [p for p in inputs if p.suffix in SUFFIXES]
    if codes_inputs:
        if len(inputs) != 1:
            raise ValueError("pass either image files or exactly one codes file, not both or several codes files")
        layers, _, metadata = load_codes(inputs[0])
        check_codes_origin(metadata, opened, f"the codes in {inputs[0]}")
        layout.check_layers(layers, f"the codes in {inputs[0]}")
        source = f"codes file {inputs[0]}"
    else:
        unknown = [str(p) for p in inputs if p.suffix.lower() not in IMAGE_SUFFIXES]
        if unknown:
            raise ValueError(f"{unknown[:3]}: not image files ({', '.join(IMAGE_SUFFIXES)}) or a codes file "
                             f"({' or '.join(SUFFIXES)})")
        tokenizer = opened.open_tokenizer(args.device)
        if opened.info.get("log_mel"):
            raise ValueError("this prior's run works on spectrograms; compress a codes file of `hqvae encode` instead")
        x = read_images(inputs, tokenizer.model.config.in_channels, opened.info["image_size"])
        dataset = ImageDataset(x, torch.full((x.shape[0],), -1), name="files", split="input",
                               description=f"{len(inputs)} image files")
        layers = encode_items(tokenizer.model, dataset, args.batch_size)  # the prior's tokenizer at its size: its layout
        source = f"{len(inputs)} image files"
    tokens = layout.flatten(layers)
    start = time.perf_counter()
    words = encode_tokens(coding_copy(opened.prior), tokens, args.coding_batch)
    seconds = time.perf_counter() - start
    info = opened.info
    header = {"hqvae_version": __import__("hqvae").__version__,
              "model_type": info["tokenizer"]["model_type"], "model_fingerprint": info["tokenizer"]["model_fingerprint"],
              "tokenizer_run": info["tokenizer"]["run"], "prior_path": str(opened.folder.root.resolve()),
              "prior_checkpoint": opened.which, "prior_fingerprint": opened.fingerprint,
              **layout.to_dict(), "items": int(tokens.shape[0]), "coding_batch": args.coding_batch,
              "image_size": info.get("image_size"), "in_channels": info.get("in_channels"), "log_mel": info.get("log_mel")}
    data = pack(header, words)
    atomic_write_bytes(out, data)
    items = max(tokens.shape[0], 1)
    pixels = items * int(np.prod(info.get("image_size") or [1]))
    print(f"compressed {tokens.shape[0]} items ({source}) into {out}: {len(data)} bytes, "
          f"{8 * len(data) / items:.1f} bits per item ({32 * words.size / items:.1f} of payload), "
          f"{8 * len(data) / pixels:.4f} bits per pixel; {tokens.numel() / seconds:.0f} tokens/s")
    return 0
