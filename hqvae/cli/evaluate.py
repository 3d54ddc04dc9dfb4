"""Evaluate a trained run on one split (SPEC §5) and write results.json with figures beside it.

    hqvae eval --run runs/<name> [--split test] [--checkpoint best|last] [--batch-size 256]
               [--perplexity-batch 32] [--limit N] [--out results.json] [--images-dir DIR]
               [--data-root PATH] [--device cpu] [--wavs 4]
               [--lpips-weights BACKBONE LINEAR [--lpips-net alex|vgg]]

Without --out the results go to runs/<name>/eval/results.json (test split, best checkpoint) or
runs/<name>/eval/<split>-<checkpoint>/results.json, where `hqvae report` finds them.  Beside the
JSON (or in --images-dir): reconstructions.png (originals above reconstructions),
codebook_usage.png, coarse_to_fine.png (multi-layer models) and, for spectrogram data sets,
audio/<i>_original.wav and audio/<i>_reconstruction.wav made by Griffin-Lim (--wavs of each).

Runs of models that support "token_statistics" (PQ-VAE) also get "tokens" (per-token perplexity, conditional and marginal entropy and plug-in
mutual information, hqvae.metrics.progressive.token_statistics), a rate–distortion plot over
prefix lengths (rate_distortion.png, from "coarse_to_fine") and, on labelled data, "linear_probe":
logistic-regression accuracy on frozen prefix features against prefix length, fitted on
--probe-items evenly spaced training items (0 turns it off), with probe.png.

The work is hqvae.runs.evaluate_run; results.json holds the keys of hqvae.evaluate.evaluate plus "run" {path, name, model_type,
seed, status, step, training_data}, "checkpoint" {which, step, path[, note]}, "files" (paths
relative to the JSON's folder), "hqvae_version" and "created".  LPIPS is computed only with
the two weight files of hqvae.metrics.lpips and is never reported otherwise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hqvae.cli.parsing import LPIPS_WEIGHTS, add_common
from hqvae.runs import evaluate_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "run_dir", "split", "checkpoint", "batch_size", "limit", "data_root", "device",
               batch_size={"help": "evaluation batch size (default 256)"},
               limit={"help": "evaluate the first N items only (recorded in the results)"})
    parser.add_argument("--perplexity-batch", type=int, default=32,
                        help="items per mini-batch of the paper-style mini-batch perplexity (default 32)")
    parser.add_argument("--out", help="results JSON path (default runs/<name>/eval/results.json)")
    parser.add_argument("--images-dir", help="folder for the PNG/WAV files (default: the folder of --out)")
    parser.add_argument("--wavs", type=int, default=4,
                        help="spectrogram data sets: Griffin-Lim WAVs of this many originals and reconstructions")
    parser.add_argument("--lpips-weights", nargs=2, type=LPIPS_WEIGHTS, metavar=("BACKBONE", "LINEAR"),
                        help="torchvision backbone and LPIPS v0.1 linear weight files (see hqvae.metrics.lpips); "
                             "LPIPS is reported only with them")
    parser.add_argument("--lpips-net", default="alex", choices=("alex", "vgg"))
    parser.add_argument("--probe-items", type=int, default=10000,
                        help="PQ-VAE on labelled data: training items the linear probe is fitted on (0: no probe)")


def summary(results: dict, path: Path) -> str:
    """A few lines for the terminal."""
    recon, rate = results["reconstruction"], results["rate"]
    lines = [f"{results['run']['name']} ({results['model']['type']}, checkpoint {results['checkpoint']['which']} "
             f"step {results['checkpoint']['step']}) on {results['data']['split']} ({results['data']['items']} items)",
             "  " + "  ".join(f"{key.upper()} {recon[key]:.4f}" for key in ("rmse", "psnr", "ssim", "lpips")
                              if key in recon),
             f"  rate {rate['bits_per_item']:.0f} bits/item nominal, {rate['entropy_bits_per_item']:.0f} empirical"]
    for layer in results["layers"]:
        lines.append(f"  layer {layer['layer']} {'×'.join(map(str, layer['grid']))} K={layer['codebook_size']}: "
                     f"perplexity {layer['perplexity']:.1f} (mini-batch {layer['minibatch_perplexity']:.1f} @ "
                     f"{layer['minibatch_perplexity_batch_size']}), usage {layer['usage']:.0%}"
                     + (f", information {layer['information_bits']:.2f} bits/position "
                        f"({layer['information_bits_per_item']:.0f} bits/item)" if "information_bits" in layer else ""))
    if "tokens" in results and "mi_bits" in results["tokens"]["total"]:
        total = results["tokens"]["total"]
        lines.append(f"  tokens: E H(q) {total['cond_entropy_bits']:.1f} bits, H(E q) {total['marginal_entropy_bits']:.1f}"
                     f" bits, mutual information {total['mi_bits']:.1f} bits (summed over tokens)")
    if "linear_probe" in results:
        points = results["linear_probe"]["points"]
        lines.append("  linear probe (test accuracy by prefix length): "
                     + ", ".join(f"{p['prefix_len']}: {p['test_accuracy']:.1%}" for p in points)
                     + f"; chance {points[0]['chance']:.1%}")
    lines.append(f"  wrote {path}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    results, path = evaluate_run(args.run_dir, args.split, args.checkpoint, args.out, args.images_dir, args.batch_size,
                                 args.perplexity_batch, args.limit, args.data_root, args.device, args.wavs,
                                 args.lpips_weights, args.lpips_net, args.probe_items)
    print(summary(results, path))
    return 0
