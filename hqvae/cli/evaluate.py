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

PQ-VAE runs also get "tokens" (per-token perplexity, conditional and marginal entropy and plug-in
mutual information, hqvae.metrics.progressive.token_statistics), a rate–distortion plot over
prefix lengths (rate_distortion.png, from "coarse_to_fine") and, on labelled data, "linear_probe":
logistic-regression accuracy on frozen prefix features against prefix length, fitted on
--probe-items evenly spaced training items (0 turns it off), with probe.png.

results.json holds the keys of hqvae.evaluate.evaluate plus "run" {path, name, model_type,
seed, status, step, training_data}, "checkpoint" {which, step, path[, note]}, "files" (paths
relative to the JSON's folder), "hqvae_version" and "created".  LPIPS is computed only with
the two weight files of hqvae.metrics.lpips and is never reported otherwise.
"""
from __future__ import annotations

import argparse
import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from hqvae.cli.runs import default_results_path, load_run_data, open_run
from hqvae.data import write_wav
from hqvae.evaluate import evaluate
from hqvae.io import atomic_write, atomic_write_json

GRID_ITEMS = 16
STRIP_ITEMS = 6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", metavar="RUN", required=True,
                        help="run folder written by hqvae train")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"))
    parser.add_argument("--batch-size", type=int, default=256, help="evaluation batch size (default 256)")
    parser.add_argument("--perplexity-batch", type=int, default=32,
                        help="items per mini-batch of the paper-style mini-batch perplexity (default 32)")
    parser.add_argument("--limit", type=int, help="evaluate the first N items only (recorded in the results)")
    parser.add_argument("--out", help="results JSON path (default runs/<name>/eval/results.json)")
    parser.add_argument("--images-dir", help="folder for the PNG/WAV files (default: the folder of --out)")
    parser.add_argument("--data-root", help="where the run's data set is now, if not at the recorded root")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--wavs", type=int, default=4,
                        help="spectrogram data sets: Griffin-Lim WAVs of this many originals and reconstructions")
    parser.add_argument("--lpips-weights", nargs=2, metavar=("BACKBONE", "LINEAR"),
                        help="torchvision backbone and LPIPS v0.1 linear weight files (see hqvae.metrics.lpips); "
                             "LPIPS is reported only with them")
    parser.add_argument("--lpips-net", default="alex", choices=("alex", "vgg"))
    parser.add_argument("--probe-items", type=int, default=10000,
                        help="PQ-VAE on labelled data: training items the linear probe is fitted on (0: no probe)")


def _audio_files(dataset, x: torch.Tensor, x_hat: torch.Tensor, folder: Path, count: int) -> list[Path]:
    """Griffin-Lim waveforms of the first ``count`` originals and reconstructions (1, n_mels, T)."""
    log_mel = dataset.meta["log_mel"]
    paths = []
    for i in range(min(count, x.shape[0])):
        for kind, spectrogram in (("original", x[i, 0]), ("reconstruction", x_hat[i, 0])):
            path = folder / "audio" / f"{i:02d}_{kind}.wav"
            samples = log_mel.inverse(spectrogram.cpu())
            paths.append(atomic_write(path, lambda tmp: write_wav(tmp, samples, log_mel.sample_rate)))
    return paths


def write_figures(model, dataset, results: dict, folder: Path, wavs: int = 4) -> dict[str, list[Path] | Path]:
    """Reconstruction grid, codebook usage plot, coarse-to-fine strip and, for spectrograms, ``wavs``
    pairs of WAVs in ``folder``."""
    from hqvae.report.grids import reconstruction_grid, save_png
    from hqvae.report.plots import codebook_usage_plot, coarse_to_fine_strip

    spectrogram = "log_mel" in dataset.meta
    count = min(GRID_ITEMS, len(dataset))
    device = next(model.parameters()).device
    x, _ = dataset.get_batch(torch.arange(count), device=device)
    codes = model.encode(x)
    progressive = model.decode_progressive(codes)
    x, progressive = x.cpu(), [decoded.cpu().clamp(0, 1) for decoded in progressive]
    files: dict[str, list[Path] | Path] = {
        "reconstructions": save_png(reconstruction_grid(x, progressive[-1], spectrogram=spectrogram),
                                    folder / "reconstructions.png"),
        "codebook_usage": codebook_usage_plot(results, folder / "codebook_usage.png"),
    }
    if len(progressive) > 1:
        strip = min(STRIP_ITEMS, count)
        files["coarse_to_fine"] = coarse_to_fine_strip(x[:strip], [p[:strip] for p in progressive],
                                                       folder / "coarse_to_fine.png", spectrogram)
    if spectrogram and wavs > 0:
        files["audio"] = _audio_files(dataset, x, progressive[-1], folder, wavs)
    if "tokens" in results:  # a PQ-VAE
        from hqvae.report.progressive_plots import plot_probe, plot_rate_distortion

        name = results["model"]["type"]
        curve = [{"bits": p["bits_per_item"], **{k: p[k] for k in ("rmse", "psnr", "ssim") if k in p}}
                 for p in results["coarse_to_fine"]]
        files["rate_distortion"] = plot_rate_distortion({name: curve}, folder / "rate_distortion.png")
        if "linear_probe" in results:
            files["probe"] = plot_probe({name: results["linear_probe"]["points"]}, folder / "probe.png")
    return files


def _relative(files: dict, start: Path) -> dict:
    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, start)).as_posix()

    return {key: [rel(p) for p in value] if isinstance(value, list) else rel(value) for key, value in files.items()}


def load_checked_lpips(weights: tuple[str, str], net: str, dataset, device: str):
    """LPIPS from the user's weight files, tried once on the data set's image size."""
    from hqvae.metrics import load_lpips

    lpips = load_lpips(*weights, net=net).to(device)
    probe = torch.zeros(1, dataset.num_channels, *dataset.image_size, device=device)
    try:
        with torch.no_grad():
            lpips(probe, probe)
    except RuntimeError as error:
        raise ValueError(f"LPIPS ({net}) cannot run on {dataset.num_channels}×{dataset.image_size[0]}×"
                         f"{dataset.image_size[1]} images ({error}); AlexNet needs at least 32×32 pixels: "
                         f"try --lpips-net vgg with the VGG-16 weight files") from None
    return lpips


def progressive_analyses(model, dataset, probe_train, batch_size: int) -> dict:
    """PQ-VAE extras: token statistics and, with ``probe_train`` (labelled), the linear probe."""
    from hqvae.metrics.progressive import linear_probe, probe_lengths, token_statistics

    extra = {"tokens": token_statistics(model, dataset, batch_size)}
    if probe_train is not None:
        points = linear_probe(model, probe_train, dataset, probe_lengths(model.num_layers), batch_size)
        extra["linear_probe"] = {"train_data": probe_train.description, "points": points}
    return extra


def probe_training_data(info: dict, dataset, items: int, data_root: str | None):
    """``items`` evenly spaced training items for the probe, or None when there is no probe:
    ``items`` is 0 or the evaluated data are unlabelled."""
    if items < 0:
        raise ValueError(f"--probe-items must be ≥ 0, got {items}")
    if items == 0 or bool((dataset.labels < 0).any()):
        return None
    return load_run_data(info, "train", data_root).evenly_spaced(items)


def evaluate_run(run: str, split: str = "test", checkpoint: str = "best", out: str | None = None,
                 images_dir: str | None = None, batch_size: int = 256, perplexity_batch: int = 32,
                 limit: int | None = None, data_root: str | None = None, device: str = "cpu", wavs: int = 4,
                 lpips_weights: tuple[str, str] | None = None, lpips_net: str = "alex",
                 probe_items: int = 10000) -> tuple[dict, Path]:
    """Evaluate a run and write its results JSON and figures; returns (results, JSON path)."""
    from hqvae import __version__
    from hqvae.models import PQVAE

    opened = open_run(run, checkpoint, device)
    dataset = load_run_data(opened.info, split, data_root, limit)
    lpips = load_checked_lpips(lpips_weights, lpips_net, dataset, device) if lpips_weights else None
    results = evaluate(opened.model, dataset, batch_size=batch_size, minibatch_perplexity_batch=perplexity_batch,
                       lpips=lpips)
    if isinstance(opened.model, PQVAE):
        probe_train = probe_training_data(opened.info, dataset, probe_items, data_root)
        results.update(progressive_analyses(opened.model, dataset, probe_train, batch_size))
    results["run"] = opened.describe()
    results["checkpoint"] = opened.checkpoint
    results["hqvae_version"] = __version__
    results["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if lpips is not None:
        results["settings"]["lpips"] = {"net": lpips_net, "weights": [str(Path(p)) for p in lpips_weights]}

    path = Path(out) if out else default_results_path(run, split, checkpoint)
    folder = Path(images_dir) if images_dir else path.parent
    results["files"] = _relative(write_figures(opened.model, dataset, results, folder, wavs), path.parent)
    atomic_write_json(path, results)
    return results, path


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
