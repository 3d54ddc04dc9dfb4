"""Draw new items from a prior and decode them with its tokenizer.

    hqvae sample --prior priors/<name> --num N --out DIR [--temperature 1.0] [--top-k K] [--top-p p]
                 [--class C] [--seed 0] [--checkpoint best|last] [--batch-size 64] [--device cpu]

KV-cached sampling token by token (layers coarse to fine). Writes DIR/00000.png, ...,
DIR/grid.png and DIR/codes.safetensors (the sampled codes, readable by `hqvae decode`); for a
log-mel spectrogram run also DIR/00000.wav, ... (Griffin-Lim). --class C needs a
class-conditional prior (model.class_conditional=true); the same seed and batch size give the
same samples.
"""
from __future__ import annotations

import argparse
import time

import torch

from hqvae.cli.parsing import add_common


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "prior", "checkpoint", "batch_size", "device", batch_size={"default": 64})
    parser.add_argument("--num", type=int, required=True, help="number of items to draw")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--class", dest="label", type=int, help="class label to condition on")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hqvae.codes_file import save_codes
    from hqvae.priors.folder import open_prior
    from hqvae.priors.images import write_items
    from hqvae.priors.layout import decode_layers
    from hqvae.priors.sampling import sample
    from hqvae.runs import codes_metadata

    if args.num < 1:
        raise ValueError(f"--num must be ≥ 1, got {args.num}")
    opened = open_prior(args.prior, args.checkpoint, args.device)
    prior = opened.prior
    labels = None
    if args.label is not None:
        if prior.config.num_classes == 0:
            raise ValueError(f"{args.prior} is an unconditional prior, so --class cannot be used; drop it, or train "
                             f"a prior with model.class_conditional=true")
        if not 0 <= args.label < prior.config.num_classes:
            raise ValueError(f"--class must lie in [0, {prior.config.num_classes - 1}] (the data set's classes), "
                             f"got {args.label}")
        labels = torch.full((args.num,), args.label, dtype=torch.long)
    tokenizer = opened.open_tokenizer(args.device)
    start = time.perf_counter()
    tokens = sample(prior, args.num, labels, args.temperature, args.top_k, args.top_p, args.seed, args.batch_size)
    seconds = time.perf_counter() - start
    layers = prior.layout.unflatten(tokens.cpu())
    x_hat = decode_layers(tokenizer.model, layers, args.batch_size)
    out = Path(args.out)
    info = opened.info
    write_items(x_hat, out, info.get("log_mel"))
    description = (f"samples of the prior {args.prior} (temperature {args.temperature}, top-k {args.top_k}, "
                   f"top-p {args.top_p}, class {args.label}, seed {args.seed})")
    metadata = codes_metadata(tokenizer, layers, "sample", description, args.num, info["image_size"], info.get("log_mel"))
    save_codes(out / "codes.safetensors", layers, labels, metadata)
    what = "PNG and WAV files" if info.get("log_mel") else "PNG files"
    print(f"sampled {args.num} items ({prior.layout.length * args.num / seconds:.0f} tokens/s) into {what} in {out} "
          f"(+ grid.png, codes.safetensors)")
    return 0
