"""Priors, sampling and real compression on one data set: from tokenizer runs to files of measured size.

For each tokenizer run (given with --runs, or trained here with --train-steps N for each of
--models from configs/<dataset>.yaml model.name=<model>), everything through the command line:

    hqvae prior train --run R --out P <prior settings>       (a causal transformer over the codes)
    hqvae prior eval  --prior P                              test NLL vs uniform and histogram rates
    hqvae encode --run R --limit N  ->  hqvae compress  ->  hqvae decompress   (timed)
        the actual .hqz size (bits per item and per pixel, from the bytes), a check that the
        decompressed codes equal the encoded ones, PSNR / SSIM of the decoded images
        (hqvae.metrics) against the originals, the prior's NLL on the same N items
    hqvae sample --prior P --num 64                          grid PNG, tokens per second

and the same N test images through Pillow's JPEG and WebP at several qualities (bytes of the real
files, PSNR / SSIM of the decoded files), for a rate–distortion plot beside the prior-coded
tokenizers. Writes benchmarks/results/priors-<dataset>.json, .md, -rd.png and
priors-<dataset>/<model>-samples.png; records every command, the budgets and the machine.

    python benchmarks/priors.py --dataset fashion_mnist --train-steps 1200 --prior-steps 400
    python benchmarks/priors.py --dataset fashion_mnist --runs runs/a runs/b       # reuse tokenizer runs
    python benchmarks/priors.py --dataset cifar10 --train-steps 1500                 # the JPEG q75 copy
    python benchmarks/priors.py --quick                                            # smoke run (numbers mean nothing)

Work folders (tokenizer runs, priors, codes, decoded files) go under --work
(default runs/priors-<dataset>); a finished tokenizer run or prior already there with the same
settings is reused.
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
MODELS = ("vqvae2", "sqvae2", "rsqvae", "pqvae")
DATASETS = {  # --dataset -> (configs/<file>.yaml, label, final Gumbel exponent of the reference configs)
    "fashion_mnist": ("fashion_mnist", "Fashion-MNIST", 1.4),
    "cifar10": ("cifar10", "CIFAR-10 (JPEG q75 copy)", 1.4),
}
PRIOR_SETTINGS = ["model.d_model=96", "model.n_layer=3", "model.n_head=4", "optim.lr=2e-3", "optim.warmup_steps=50",
                  "train.batch_size=32", "data.val_items=1000", "logging.progress=false"]
QUALITIES = (5, 10, 20, 30, 50, 70, 90)


def hqvae_command(*args) -> list[str]:
    return [sys.executable, "-m", "hqvae", *[str(a) for a in args]]


def run_logged(command: list[str], log: list[dict], what: str) -> float:
    """Run ``command`` (OMP threads as this process), record it in ``log``; returns its wall time."""
    start = time.perf_counter()
    print(f"$ {shlex.join(command[2:]) if command[:3] == [sys.executable, '-m', 'hqvae'] else shlex.join(command)}",
          flush=True)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    log.append({"what": what, "command": "hqvae " + shlex.join(command[3:]) if command[1:3] == ["-m", "hqvae"]
                else shlex.join(command), "seconds": round(seconds, 2), "output": result.stdout.strip()[-400:]})
    return seconds


def finished(folder: Path, steps: int | None = None) -> bool:
    try:
        info = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("status") == "finished" and (steps is None or info.get("steps") == steps)


def wait_if_running(folder: Path, poll_s: float = 30.0) -> None:
    """Wait while another process trains into ``folder`` (run.json "running" and updated in the last 10 min)."""
    while True:
        try:
            info = json.loads((folder / "run.json").read_text())
        except (OSError, ValueError):
            return
        if info.get("status") != "running" or time.time() - (folder / "run.json").stat().st_mtime > 600:
            return
        print(f"waiting for the training in {folder} (step {info.get('step')} of {info.get('steps')})", flush=True)
        time.sleep(poll_s)


def tokenizer_run(args, model: str, work: Path, log: list[dict]) -> Path:
    """The tokenizer run of ``model`` under ``work``: trained here unless a finished one with the same
    number of steps is there."""
    folder, _, exponent = DATASETS[args.dataset]
    out = work / "tokenizers" / model
    overrides = [f"train.steps={args.train_steps}", f"temperature.decay={exponent / args.train_steps!r}",
                 f"train.val_every={max(args.train_steps // 2, 1)}", "train.val_batches=20",
                 f"train.checkpoint_every={max(args.train_steps // 2, 1)}", "train.device=cpu",
                 "logging.progress=false", *args.train_set]
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    wait_if_running(out)
    command = f"hqvae train --config configs/{folder}.yaml model.name={model} --out {out} " + " ".join(overrides)
    if finished(out, args.train_steps):
        log.append({"what": f"train tokenizer {model}", "reused": str(out), "command": command})
    else:
        run_logged(hqvae_command("train", "--config", REPO / "configs" / f"{folder}.yaml", f"model.name={model}", "--out",
                                 out, "--force", *overrides), log, f"train tokenizer {model}")
    return out


def read_png(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as picture:
        array = np.array(picture)
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


def quality_metrics(x_hat: torch.Tensor, x: torch.Tensor) -> dict:
    from hqvae.metrics import psnr, ssim

    return {"psnr": float(psnr(x_hat, x).mean()), "ssim": float(ssim(x_hat, x).mean())}


def pillow_codecs(x: torch.Tensor) -> list[dict]:
    """JPEG and WebP files of the 8-bit images x (N, C, H, W) at several qualities: real bytes, quality."""
    from PIL import Image

    arrays = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    mode = "L" if arrays.shape[-1] == 1 else "RGB"
    pixels = arrays.shape[1] * arrays.shape[2]
    points = []
    for codec in ("JPEG", "WEBP"):
        for quality in QUALITIES:
            total, decoded = 0, []
            for array in arrays:
                buffer = io.BytesIO()
                Image.fromarray(array[..., 0] if mode == "L" else array, mode).save(buffer, codec, quality=quality)
                total += buffer.tell()
                buffer.seek(0)
                with Image.open(buffer) as picture:
                    decoded.append(np.array(picture.convert(mode)).reshape(array.shape))
            x_hat = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float() / 255
            points.append({"codec": codec.lower(), "quality": quality, "bytes": total,
                           "bits_per_item": 8 * total / len(arrays), "bits_per_pixel": 8 * total / (len(arrays) * pixels),
                           **quality_metrics(x_hat, x)})
    return points


def evaluate_run(args, run: Path, work: Path, log: list[dict], figures: Path) -> dict:
    from hqvae.codes_file import load_codes
    from hqvae.data import load_dataset

    info = json.loads((run / "run.json").read_text())
    name = run.name
    prior = work / "priors" / name
    settings = [*PRIOR_SETTINGS, f"train.steps={args.prior_steps}", f"train.val_every={args.prior_steps}",
                f"train.checkpoint_every={args.prior_steps}", "train.device=cpu", *args.prior_set]
    if args.data_root:
        settings.append(f"data.root={args.data_root}")
    if not finished(prior, args.prior_steps):
        run_logged(hqvae_command("prior", "train", "--run", run, "--out", prior, "--force", *settings), log,
                   f"train prior {name}")
    else:
        log.append({"what": f"train prior {name}", "reused": str(prior),
                    "command": f"hqvae prior train --run {run} --out {prior} " + " ".join(settings)})
    prior_info = json.loads((prior / "run.json").read_text())
    root = ["--data-root", args.data_root] if args.data_root else []
    run_logged(hqvae_command("prior", "eval", "--prior", prior, *root), log, f"prior eval {name}")
    test = json.loads((prior / "eval" / "test.json").read_text())

    # real compression of the first N test items
    items = args.code_items
    folder = work / "coding" / name
    shutil.rmtree(folder, ignore_errors=True)
    codes = folder / "codes.safetensors"
    run_logged(hqvae_command("encode", "--run", run, "--limit", items, "--out", codes, *root), log, f"encode {name}")
    hqz = folder / f"test{items}.hqz"
    compress_s = run_logged(hqvae_command("compress", "--prior", prior, codes, "--out", hqz), log, f"compress {name}")
    decompress_s = run_logged(hqvae_command("decompress", hqz, "--out", folder / "decoded"), log, f"decompress {name}")
    nll_items = folder / "nll.json"
    run_logged(hqvae_command("prior", "eval", "--prior", prior, "--limit", items, "--out", nll_items, *root), log,
               f"prior eval {name} (first {items})")
    subset = json.loads(nll_items.read_text())
    encoded, _, metadata = load_codes(codes)
    decoded, _, _ = load_codes(folder / "decoded" / "codes.safetensors")
    exact = all(torch.equal(a, b) for a, b in zip(encoded, decoded))
    data = load_dataset(info["config"]["data"]["name"], "test", args.data_root or info["config"]["data"].get("root"))
    x = data.get_batch(torch.arange(items))[0]
    x_hat = torch.stack([read_png(folder / "decoded" / f"{i:05d}.png") for i in range(items)])
    size = hqz.stat().st_size
    pixels = items * x.shape[2] * x.shape[3]
    tokens = items * subset["tokens_per_item"]
    coding = {
        "items": items,
        "file_bytes": size,
        "bits_per_item": 8 * size / items,
        "bits_per_pixel": 8 * size / pixels,
        "nll_bits_per_item": subset["nll_bits_per_item"],
        "histogram_bits_per_item": subset["histogram_bits_per_item"],
        "uniform_bits_per_item": subset["uniform_bits_per_item"],
        "overhead_vs_nll": 8 * size / (items * subset["nll_bits_per_item"]) - 1,
        "decompressed_codes_equal_encoded": exact,
        "compress_s": compress_s,
        "decompress_s": decompress_s,
        "compress_tokens_per_s_incl_startup": tokens / compress_s,
        "decompress_tokens_per_s_incl_startup": tokens / decompress_s,
        "coder_tokens_per_s": _tokens_per_s(log, f"compress {name}"),
        "decoder_tokens_per_s": _tokens_per_s(log, f"decompress {name}"),
        **quality_metrics(x_hat, x),
    }
    header_bytes = _header_bytes(hqz)
    coding["payload_bits_per_item"] = 8 * (size - header_bytes) / items
    coding["payload_vs_nll"] = coding["payload_bits_per_item"] / subset["nll_bits_per_item"] - 1
    coding["header_bytes"] = header_bytes

    samples = folder / "samples"
    run_logged(hqvae_command("sample", "--prior", prior, "--num", args.sample_num, "--out", samples, "--seed", 0),
               log, f"sample {name}")
    grid = figures / f"{name}-samples.png"
    grid.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(samples / "grid.png", grid)
    recon_grid = figures / f"{name}-decompressed.png"
    shutil.copyfile(folder / "decoded" / "grid.png", recon_grid)
    return {
        "run": str(run), "model_type": info.get("model_type"), "tokenizer_steps": info.get("step"),
        "tokenizer_training_s": info.get("wall_time_s"),
        "prior": str(prior), "prior_steps": prior_info["steps"], "prior_training_s": prior_info["wall_time_s"],
        "prior_parameters": prior_info["parameters"], "prior_settings": settings,
        "layout": prior_info["layout"], "tokens_per_item": prior_info["tokens_per_item"],
        "test": {k: test[k] for k in ("items", "nll_bits_per_item", "nll_bits_per_token", "uniform_bits_per_item",
                                      "histogram_bits_per_item", "layers")},
        "beats_histogram": test["nll_bits_per_item"] < test["histogram_bits_per_item"],
        "beats_uniform": test["nll_bits_per_item"] < test["uniform_bits_per_item"],
        "coding": coding,
        "sampling_tokens_per_s": _tokens_per_s(log, f"sample {name}"),
        "samples_grid": str(grid.relative_to(REPO)),
        "decompressed_grid": str(recon_grid.relative_to(REPO)),
    }


def _tokens_per_s(log: list[dict], what: str) -> float | None:
    """The tokens/s a command printed (its own timing, without the start-up)."""
    import re

    output = next((entry.get("output", "") for entry in reversed(log) if entry["what"] == what), "")
    match = re.search(r"\(?(\d+) tokens/s", output)
    return float(match.group(1)) if match else None


def _header_bytes(path: Path) -> int:
    """The fixed part of a .hqz file: everything but the coded words (preamble, header, checksums)."""
    from hqvae.hqz import read_hqz

    return path.stat().st_size - sum(read_hqz(path).segment_bytes)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for metric, axis in zip(("psnr", "ssim"), axes):
        for codec in ("jpeg", "webp"):
            points = [p for p in results["pillow"] if p["codec"] == codec]
            axis.plot([p["bits_per_pixel"] for p in points], [p[metric] for p in points], "o-", label=f"Pillow {codec.upper()}",
                      alpha=0.8)
        for entry in results["runs"]:
            coding = entry["coding"]
            axis.plot(coding["bits_per_pixel"], coding[metric], "*", markersize=13,
                      label=f"{entry['model_type']} + prior (.hqz)")
        axis.set_xscale("log")
        low, high = axis.get_xlim()
        axis.set_xticks([t for t in (0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if low <= t <= high])
        axis.set_xlim(low, high)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("bits per pixel (real files)")
        axis.set_ylabel(metric.upper())
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{results['dataset']['label']}: rate–distortion of {results['coding_items']} test images")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    from hqvae.io import atomic_write_bytes

    atomic_write_bytes(path, buffer.getvalue())


def markdown(results: dict) -> str:
    lines = [f"# Priors and compression: {results['dataset']['label']}", "",
             f"Command: `{results['command']}`  ", f"Machine: {results['machine']}  ",
             f"Coded items: the first {results['coding_items']} test images; NLL columns: the whole test split.", "",
             "| tokenizer | tokens/item | prior NLL (bits/item) | histogram rate | uniform rate | .hqz bits/item | "
             "bits/pixel | payload vs NLL (header) | PSNR | SSIM | sampling tok/s | coding tok/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry in results["runs"]:
        test, coding = entry["test"], entry["coding"]
        lines.append(
            f"| {entry['model_type']} ({entry['tokenizer_steps']} steps; prior {entry['prior_steps']} steps, "
            f"{entry['prior_training_s'] / 60:.1f} min) | {entry['tokens_per_item']} | {test['nll_bits_per_item']:.1f} | "
            f"{test['histogram_bits_per_item']:.1f} | {test['uniform_bits_per_item']:.0f} | {coding['bits_per_item']:.1f} | "
            f"{coding['bits_per_pixel']:.4f} | {100 * coding['payload_vs_nll']:+.2f}% ({coding['header_bytes']} B) | {coding['psnr']:.2f} | "
            f"{coding['ssim']:.3f} | {entry['sampling_tokens_per_s'] or 0:.0f} | {coding['coder_tokens_per_s'] or 0:.0f} |")
    lines += ["", "Pillow on the same images (real files, one per image, headers included):", "", "| codec | quality | bits/pixel | PSNR | SSIM |",
              "|---|---|---|---|---|"]
    for point in results["pillow"]:
        lines.append(f"| {point['codec']} | {point['quality']} | {point['bits_per_pixel']:.3f} | {point['psnr']:.2f} | "
                     f"{point['ssim']:.3f} |")
    lines += ["", f"Rate–distortion plot: `{results['files']['rd_plot']}`", ""]
    for entry in results["runs"]:
        lines.append(f"* {entry['model_type']} samples: `{entry['samples_grid']}`")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist", choices=sorted(DATASETS))
    parser.add_argument("--runs", nargs="+", type=Path, help="existing tokenizer runs (default: train --models)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="tokenizers to train without --runs")
    parser.add_argument("--train-steps", type=int, default=1200, help="tokenizer steps when training them here")
    parser.add_argument("--train-set", nargs="*", default=[], help="extra hqvae train overrides")
    parser.add_argument("--prior-steps", type=int, default=400)
    parser.add_argument("--prior-set", nargs="*", default=[], help="extra hqvae prior train overrides")
    parser.add_argument("--code-items", type=int, default=1000, help="test items compressed for real")
    parser.add_argument("--sample-num", type=int, default=64)
    parser.add_argument("--data-root", help="data root passed to the commands (CIFAR-10: the JPEG copy's .tar.gz)")
    parser.add_argument("--work", type=Path, help="work folder (default runs/priors-<dataset>)")
    parser.add_argument("--label", help="suffix of the results files (priors-<dataset>-<label>.json)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 tokenizer and 20 prior steps, 64 items")
    parser.add_argument("--replot", type=Path, metavar="JSON", help="only redraw the plot and the Markdown of a results file")
    args = parser.parse_args()
    if args.replot:
        from hqvae.io import atomic_write_bytes

        results = json.loads(args.replot.read_text())
        plot(results, REPO / results["files"]["rd_plot"])
        atomic_write_bytes(REPO / results["files"]["markdown"], markdown(results).encode())
        return 0
    if args.quick:
        args.train_steps, args.prior_steps, args.code_items, args.sample_num = 30, 20, 64, 16
        args.work = args.work or REPO / "runs" / f"priors-{args.dataset}-quick"
        args.label = args.label or "quick"
    work = (args.work or REPO / "runs" / f"priors-{args.dataset}").resolve()
    stem = f"priors-{args.dataset}" + (f"-{args.label}" if args.label else "")
    figures = RESULTS / stem
    from hqvae.io import atomic_write_bytes, atomic_write_json

    log: list[dict] = []
    started = time.perf_counter()
    results = {
        "benchmark": "priors",
        "command": "python " + shlex.join(["benchmarks/priors.py", *sys.argv[1:]]),
        "dataset": {"name": args.dataset, "label": DATASETS[args.dataset][1]},
        "budgets": {"tokenizer_steps": None if args.runs else args.train_steps, "prior_steps": args.prior_steps,
                    "prior_settings": PRIOR_SETTINGS + args.prior_set, "coding_items": args.code_items},
        "coding_items": args.code_items,
        "machine": f"{platform.machine()} CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
                   f"load average {os.getloadavg()[0]:.1f} at start (shared machine: timings are noisy)",
        "torch_version": torch.__version__,
        "runs": [],
    }
    runs = [run.resolve() for run in args.runs] if args.runs else list(args.models)
    for index, run in enumerate(runs):
        if not args.runs:
            run = runs[index] = tokenizer_run(args, run, work, log)
        results["runs"].append(evaluate_run(args, run, work, log, figures))
        atomic_write_json(RESULTS / f"{stem}.partial.json", {**results, "commands": log})
    from hqvae.data import load_dataset

    info = json.loads((runs[0] / "run.json").read_text())
    data = load_dataset(info["config"]["data"]["name"], "test", args.data_root or info["config"]["data"].get("root"))
    results["pillow"] = pillow_codecs(data.get_batch(torch.arange(args.code_items))[0])
    results["commands"] = log
    results["total_s"] = time.perf_counter() - started
    results["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rd = RESULTS / f"{stem}-rd.png"
    results["files"] = {"rd_plot": str(rd.relative_to(REPO)), "markdown": f"benchmarks/results/{stem}.md"}
    plot(results, rd)
    atomic_write_json(RESULTS / f"{stem}.json", results)
    (RESULTS / f"{stem}.partial.json").unlink(missing_ok=True)
    atomic_write_bytes(RESULTS / f"{stem}.md", markdown(results).encode())
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
