"""Decompress a .hqz file of `hqvae compress` back into codes and images.

    hqvae decompress FILE.hqz --out DIR [--prior priors/<name>] [--run runs/<name>] [--no-images]
                     [--batch-size 256] [--device cpu]

Writes DIR/codes.safetensors (exactly the codes that were compressed, in `hqvae encode`'s
format) and, decoded by the tokenizer, DIR/00000.png, ... and DIR/grid.png (WAVs too for
spectrogram runs). The prior is the one recorded in the file unless --prior is given; its
weights and its tokenizer's must be those the file was made with (fingerprints), else the file
is refused with the reason. --run gives the tokenizer run if it has moved.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from hqvae.cli.parsing import HQZ, PRIOR, RUN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.hqz", type=HQZ, help="file written by hqvae compress")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--prior", type=PRIOR, help="prior folder (default: the one recorded in the file)")
    parser.add_argument("--run", dest="run_dir", type=RUN, help="tokenizer run (default: the prior's)")
    parser.add_argument("--no-images", action="store_true", help="write the codes file only")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size of the image decoder")
    parser.add_argument("--device", default="cpu", help="device of the image decoder (the coder runs on the CPU)")


def run(args: argparse.Namespace) -> int:
    from hqvae.codes_file import save_codes
    from hqvae.priors.coding import HqzError, check_header, coding_copy, decode_tokens, read_hqz
    from hqvae.priors.folder import open_prior
    from hqvae.priors.images import write_items
    from hqvae.priors.layout import decode_layers

    header, words = read_hqz(args.file)
    prior_path = args.prior or header.get("prior_path")
    if not prior_path or not Path(prior_path).is_dir():
        raise HqzError(f"{args.file} was compressed with the prior {header.get('prior_path')}, which is not here; "
                       f"pass its folder with --prior")
    opened = open_prior(prior_path, header.get("prior_checkpoint", "best"), "cpu")
    check_header(header, opened.prior.layout, opened.fingerprint, opened.tokenizer["model_fingerprint"], args.file)
    start = time.perf_counter()
    tokens = decode_tokens(coding_copy(opened.prior), words, int(header["items"]), int(header["coding_batch"]))
    seconds = time.perf_counter() - start
    layers = opened.prior.layout.unflatten(tokens)
    out = Path(args.out)
    tokenizer = opened.open_tokenizer(args.device, args.run_dir) if not args.no_images or args.run_dir else None
    info = opened.info
    metadata = {"model_type": header["model_type"], "num_layers": len(layers),
                "code_shapes": header["code_shapes"], "codebook_sizes": header["codebook_sizes"],
                "in_channels": header.get("in_channels"), "image_size": header.get("image_size"),
                "items": int(header["items"]), "split": "decompressed", "dataset": f"decompressed from {args.file}",
                "run": {"path": header.get("tokenizer_run"), "name": Path(header.get("tokenizer_run") or "").name},
                "checkpoint": {"which": opened.tokenizer["checkpoint"], "step": opened.tokenizer.get("step")},
                "model_fingerprint": header["model_fingerprint"], "log_mel": header.get("log_mel")}
    save_codes(out / "codes.safetensors", layers, None, metadata)
    what = "codes.safetensors"
    if not args.no_images:
        x_hat = decode_layers(tokenizer.model, layers, args.batch_size)
        write_items(x_hat, out, info.get("log_mel"))
        what += ", PNG files" + (" and WAV files" if info.get("log_mel") else "") + " and grid.png"
    print(f"decompressed {tokens.shape[0]} items from {args.file} ({tokens.numel() / seconds:.0f} tokens/s) into {what} "
          f"in {out}")
    return 0
