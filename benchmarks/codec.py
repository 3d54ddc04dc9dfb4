"""Rate–distortion curves from real files: hqvae's progressive .hqz files against classical and
learned codecs on the same test images, with the same measurement.

    python benchmarks/codec.py --dataset fashion_mnist \\
        --hqvae rsqvae=runs/x/tokenizers/rsqvae,runs/x/priors/rsqvae --hqvae pqvae=... \\
        --anchors runs/x/anchors/hyperprior-0.0018 runs/x/anchors/hyperprior-0.013 \\
        --items 1000 --single-items 50 [--label smoke]

For each hqvae pair (tokenizer run, flat prior: ``hqvae prior train ... model.kind=flat``) the
first ``--items`` test images are compressed into one progressive file (``hqvae.compress``, the
prior's folder not recorded: the fingerprints identify it); every prefix of L layers (HQ-VAE
layers, RQ depths, PQ-VAE steps) is one point:

    bpp               8 · (bytes up to the end of layer L, header included) / (items · pixels)
    bpp_single_file   the same for one-image files (mean over the first ``--single-items``)
    psnr, ssim        of the 8-bit decoded images (``hqvae.decompress(upto=L)``) against the originals
    encode_s_per_image   tokenizer + range coding of the whole file, per image
    decode_s_per_image   range decoding of L layers + the tokenizer's decoder, per image
    exact             the decoded codes equal the tokenizer's (``hqvae encode``'s) first L layers

Classical: Pillow JPEG, WebP and AVIF files (one file per image) at several qualities. Learned:
CompressAI anchors trained by ``benchmarks/anchors.py`` on the training split (real strings of
its entropy coder). Published (CIFAR-10 only): BPG, Ballé 2018 and Minnen 2020 points on the
original test images (from mandt-lab/uqdm ``eval/cifar.yml``), drawn but never mixed with our
data: ours is the JPEG q75 copy, said on every CIFAR figure.

Also measured: the rate cost of the grid probabilities (version 2) against version 1's float64
softmax on the same codes, and how close the prior's logits come to a grid tie.

Writes benchmarks/results/codec-<dataset>[-<label>].json and .png. A ``--label`` marks a run
at a smoke budget: its numbers only prove the pipeline.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LABELS = {"fashion_mnist": "Fashion-MNIST test", "cifar10": "CIFAR-10 test (JPEG q75 copy)"}
DATA = {"fashion_mnist": "fashion_mnist", "cifar10": "cifar10_folder"}  # hqvae.data names: cifar10_folder is the local JPEG q75 copy
QUALITIES = {"jpeg": (5, 10, 20, 35, 50, 75, 90), "webp": (1, 5, 15, 30, 50, 75, 90), "avif": (5, 15, 30, 50, 70, 85)}
# Published CIFAR-10 rate–distortion points, 10,000 original test images (mandt-lab/uqdm eval/cifar.yml).
PUBLISHED_CIFAR10 = {
    "BPG 4:4:4": [(0.33, 19.3), (0.74, 25.0), (1.74, 31.0)],
    "Ballé 2018 hyperprior": [(0.29, 22.9), (1.05, 29.7), (2.78, 37.4)],
    "Minnen 2020": [(0.34, 24.2), (1.12, 30.8), (2.80, 38.1)],
}
PUBLISHED_NOTE = "published, original test images"


def quantise(x_hat: torch.Tensor) -> torch.Tensor:
    """The 8-bit image a decoder writes (PNG)."""
    return (x_hat.clamp(0, 1) * 255).round() / 255


def quality(x_hat: torch.Tensor, x: torch.Tensor) -> dict:
    from hqvae.metrics import psnr, ssim

    return {"psnr": float(psnr(x_hat, x).mean()), "ssim": float(ssim(x_hat, x).mean())}


# ------------------------------------------------------------------------------ hqvae


def hqvae_curve(name: str, run: Path, prior_path: Path, x: torch.Tensor, single_items: int, work: Path) -> dict:
    import hqvae
    from hqvae.priors.folder import open_prior

    opened = open_prior(prior_path)
    items, pixels = x.shape[0], x.shape[2] * x.shape[3]
    path = work / f"{name}.hqz"
    path.parent.mkdir(parents=True, exist_ok=True)
    written = hqvae.compress(x, opened, path, record_prior_path=False)
    if not written.progressive:
        raise ValueError(f"{prior_path}: its prior cannot write progressive files; train a flat prior (model.kind=flat)")
    encode_s = (written.encode_seconds + written.coding_seconds) / items
    from hqvae.data import ImageDataset
    from hqvae.runs import encode_items

    tokenizer = opened.open_tokenizer("cpu", run)
    reference = encode_items(tokenizer.model, ImageDataset(x, torch.full((items,), -1), name="x", split="test",
                                                           description="test"), 256)  # as hqvae encode
    single = []
    for i in range(min(single_items, items)):
        single.append(hqvae.compress([code[i:i + 1] for code in reference], opened, record_prior_path=False).prefix_bytes)
    single = np.array(single, dtype=float)
    points = []
    for upto in range(1, opened.prior.layout.num_layers + 1):
        result = hqvae.decompress(path, opened, upto=upto, run=run)
        exact = all(torch.equal(a, b) for a, b in zip(result.layers, reference[:upto])) and len(result.layers) == upto
        prefix = written.prefix_bytes[upto - 1]
        points.append({"layers": upto, "prefix_bytes": prefix, "bpp": 8 * prefix / (items * pixels),
                       "bpp_single_file": float(8 * single[:, upto - 1].mean() / pixels),
                       **quality(quantise(result.images), x), "encode_s_per_image": encode_s,
                       "decode_s_per_image": (result.coding_seconds + result.decode_seconds) / items, "exact": exact})
        print(f"hqvae-{name} L={upto}: {points[-1]['bpp']:.4f} bpp, {points[-1]['psnr']:.2f} dB, exact={exact}",
              flush=True)
    prior_info = opened.info
    return {"codec": f"hqvae-{name}", "kind": "hqvae", "model_type": prior_info["tokenizer"]["model_type"],
            "run": str(run), "prior": str(prior_path), "tokenizer_steps": tokenizer.checkpoint.get("step"),
            "tokenizer_training_s": tokenizer.info.wall_time_s, "prior_steps": prior_info.get("step"),
            "prior_training_s": prior_info.get("wall_time_s"), "layout": opened.prior.layout.describe(),
            "file_bytes": len(written.data), "prefix_bytes": written.prefix_bytes,
            "header_bytes": written.prefix_bytes[0] - hqvae.hqz.unpack(written.data).segment_bytes[0],
            "single_files": int(single.shape[0]), "points": points,
            "portability": grid_costs(opened.prior, opened.prior.layout.flatten(reference))}


def grid_costs(prior, tokens: torch.Tensor) -> dict:
    """Bits of the same codes with version 1's and version 2's probabilities, and the closest grid tie."""
    from hqvae.priors.coding import coding_copy, encode_tokens
    from hqvae.priors.grid import STEPS_PER_NAT, tie_margin

    prior64 = coding_copy(prior)
    v1 = 32 * sum(s.size for s in encode_tokens(prior64, tokens, 64, version=1))
    v2 = 32 * sum(s.size for s in encode_tokens(prior64, tokens, 64))
    segmented = 32 * sum(s.size for s in encode_tokens(prior64, tokens, 64, progressive=True))
    margins, near = [], 0
    with torch.no_grad():
        for i in range(0, tokens.shape[0], 64):
            logits = torch.cat([l.reshape(-1, l.shape[-1]) for l in prior64(tokens[i:i + 64])])
            margins.append(tie_margin(logits))
            scaled = logits * STEPS_PER_NAT
            near += int(((scaled - torch.floor(scaled) - 0.5).abs() < 1e-9).sum())
    return {"version1_bits": v1, "version2_bits": v2, "grid_rate_cost": (v2 - v1) / v1,
            "progressive_bits": segmented, "segments_rate_cost": (segmented - v2) / v2,
            "closest_tie": min(margins), "logits_within_1e-9_of_a_tie": near,
            "note": "tie distances in grid units (1/256 nat), teacher-forced float64 logits of the test codes"}


# ------------------------------------------------------------------------------ anchors


def pillow_curves(x: torch.Tensor) -> list[dict]:
    from PIL import Image, features

    arrays = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    mode = "L" if arrays.shape[-1] == 1 else "RGB"
    pixels = arrays.shape[1] * arrays.shape[2]
    curves = []
    for codec, qualities in QUALITIES.items():
        if codec != "jpeg" and not features.check(codec):
            continue
        points = []
        for q in qualities:
            files, encode_s, decode_s, decoded = [], 0.0, 0.0, []
            for array in arrays:
                buffer = io.BytesIO()
                start = time.perf_counter()
                Image.fromarray(array[..., 0] if mode == "L" else array, mode).save(buffer, codec.upper(), quality=q)
                encode_s += time.perf_counter() - start
                files.append(buffer.getvalue())
                start = time.perf_counter()
                with Image.open(io.BytesIO(files[-1])) as picture:
                    decoded.append(np.array(picture.convert(mode)).reshape(array.shape))
                decode_s += time.perf_counter() - start
            x_hat = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float() / 255
            bpp = 8 * sum(map(len, files)) / (len(files) * pixels)
            points.append({"quality": q, "bpp": bpp, "bpp_single_file": bpp, **quality(x_hat, x),
                           "encode_s_per_image": encode_s / len(files), "decode_s_per_image": decode_s / len(files)})
        curves.append({"codec": f"Pillow {codec.upper()}", "kind": "classical",
                       "note": "one file per image (no amortisation possible)", "points": points})
    return curves


def learned_curves(folders: list[Path], x: torch.Tensor) -> list[dict]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import anchors

    by_model: dict[str, list] = {}
    for folder in folders:
        network, info = anchors.load(folder)
        point = {"lmbda": info["lmbda"], "steps": info["steps"], "training_s": info["training_s"],
                 **anchors.code_images(network, x)}
        point.pop("bytes")
        by_model.setdefault(info["model"], []).append((info, point))
    curves = []
    for model, entries in by_model.items():
        steps = sorted({info["steps"] for info, _ in entries})
        curves.append({"codec": f"{model} (in-domain)", "kind": "learned", "training_steps": steps,
                       "note": "CompressAI 1.2.0 real entropy coder; per image: its strings + a varint length each",
                       "points": sorted((p for _, p in entries), key=lambda p: p["bpp"])})
    return curves


def published_curves(dataset: str) -> list[dict]:
    if dataset != "cifar10":
        return []
    return [{"codec": name, "kind": "published", "note": PUBLISHED_NOTE,
             "source": "mandt-lab/uqdm eval/cifar.yml",
             "points": [{"bpp": bpp, "psnr": psnr} for bpp, psnr in points]} for name, points in PUBLISHED_CIFAR10.items()]


# ------------------------------------------------------------------------------ plot


def plot(results: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    styles = {"hqvae": "o-", "classical": "s--", "learned": "^-", "published": "D:"}
    for metric, axis in zip(("psnr", "ssim"), axes):
        for curve in results["curves"]:
            points = [p for p in curve["points"] if metric in p]
            if not points:
                continue
            label = curve["codec"] + (f" ({PUBLISHED_NOTE})" if curve["kind"] == "published" else "")
            axis.plot([p["bpp"] for p in points], [p[metric] for p in points], styles[curve["kind"]], label=label,
                      markersize=4, alpha=0.85, linewidth=2 if curve["kind"] == "hqvae" else 1)
        axis.set_xscale("log")
        low, high = axis.get_xlim()
        axis.set_xticks([t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if low <= t <= high])
        axis.set_xlim(low, high)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("bits per pixel (real file bytes, headers amortised)")
        axis.set_ylabel(metric.upper())
        axis.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    title = f"{results['dataset']['label']}: {results['dataset']['items']} images"
    if results["dataset"]["name"] == "cifar10":
        title += " — our data: JPEG q75 copy of CIFAR-10; published points: original test images"
    if results.get("label"):
        title += f"\n[{results['label']}: {results['budget_note']}]"
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    from hqvae.io import atomic_write_bytes

    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    from hqvae.data import load_dataset
    from hqvae.io import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=tuple(LABELS))
    parser.add_argument("--hqvae", action="append", default=[], metavar="NAME=RUN,PRIOR",
                        help="a tokenizer run and its flat prior (repeat)")
    parser.add_argument("--anchors", nargs="*", default=[], help="folders of benchmarks/anchors.py")
    parser.add_argument("--items", type=int, default=1000, help="the first N test images")
    parser.add_argument("--single-items", type=int, default=50, help="images coded as one-image files too")
    parser.add_argument("--label", help="e.g. smoke: a run at a smoke budget (written as codec-<dataset>-<label>)")
    parser.add_argument("--budget-note", default="", help="what the budget was, for the figure and the JSON")
    parser.add_argument("--data-root")
    parser.add_argument("--work", help="folder for the .hqz files (default runs/codec-<dataset>)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    data = load_dataset(DATA[args.dataset], "test", root=args.data_root)
    x = data.get_batch(torch.arange(min(args.items, len(data))))[0]
    work = Path(args.work or REPO / "runs" / f"codec-{args.dataset}")
    start = time.perf_counter()
    curves = []
    for spec in args.hqvae:
        name, _, paths = spec.partition("=")
        run, _, prior = paths.partition(",")
        if not name or not run or not prior:
            raise SystemExit(f"--hqvae takes NAME=RUN,PRIOR, got {spec!r}")
        curves.append(hqvae_curve(name, Path(run), Path(prior), x, args.single_items, work))
    curves += pillow_curves(x)
    curves += learned_curves([Path(a) for a in args.anchors], x)
    curves += published_curves(args.dataset)
    stem = f"codec-{args.dataset}" + (f"-{args.label}" if args.label else "")
    results = {"dataset": {"name": args.dataset, "label": LABELS[args.dataset], "split": "test",
                           "items": int(x.shape[0]), "pixels_per_image": int(x.shape[2] * x.shape[3])},
               "label": args.label, "budget_note": args.budget_note,
               "curves": curves,
               "measurement": ("bpp from real file bytes (hqvae: prefix of one progressive file, header included, "
                               "amortised over all images; bpp_single_file: one-image files), PSNR/SSIM of 8-bit "
                               "decoded images, seconds per image on this machine's CPU"),
               "command": "python benchmarks/codec.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "load_average": os.getloadavg()},
               "wall_time_s": round(time.perf_counter() - start, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS / f"{stem}.json", results)
    plot(results, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / stem}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
