"""The main job: VQ-VAE-2 against SQ-VAE-2 on Fashion-MNIST, trained, evaluated and compared.

Trains ``vqvae2`` and ``sqvae2`` with the same backbone, codebooks (K = 512, d = 64, 7×7 and
14×14 codes), optimiser (Adam, lr 1e-3), batch size (32) and number of steps, evaluates both on
the Fashion-MNIST test split (10,000 images, deterministic quantisation), and writes the HTML and
Markdown report comparing them. The default budget is about 10 CPU minutes in all on 2 cores.
The Gumbel temperature of SQ-VAE-2 follows the official schedule compressed to the budget (τ ends
at ≈ 0.25). Run it again to reuse finished runs (``--fresh`` starts over); an interrupted run resumes.

    hqvae demo [--out runs/demo] [--steps 2000] [--data-root DIR]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from hqvae.cli.evaluate import evaluate_run
from hqvae.cli.runs import default_results_path
from hqvae.report.build import ReportRun, build_report
from hqvae.train.config import TrainConfig
from hqvae.train.loop import train
from hqvae.train.run_dir import RunDir

MODELS = ("vqvae2", "sqvae2")
FINAL_TEMPERATURE_EXPONENT = 1.4  # τ_end = exp(−1.4) ≈ 0.25, as the reference configs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder of the two runs and the report")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model (batch 32)")
    parser.add_argument("--data-root", help="folder with the Fashion-MNIST IDX files (default: the Debian "
                        "package's /usr/share/datasets/fashion-mnist, else download with checksums)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo runs and start over")


def demo_config(model: str, steps: int, data_root: str | None, device: str) -> TrainConfig:
    return TrainConfig.from_dict({
        "data": {"name": "fashion_mnist", "root": data_root},
        "model": {"name": model},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"steps": steps, "batch_size": 32, "seed": 0, "device": device, "log_every": 50,
                  "val_every": max(1, steps // 2), "val_batches": 20, "checkpoint_every": max(1, steps // 2)},
        "temperature": {"init": 1.0, "decay": FINAL_TEMPERATURE_EXPONENT / steps, "min": 0.0},
    })


def train_one(model: str, args: argparse.Namespace) -> Path:
    """Train (or resume, or reuse) one run; returns its folder."""
    out = Path(args.out) / model
    run = RunDir(out)
    config = demo_config(model, args.steps, args.data_root, args.device)
    if run.exists() and not args.fresh:
        info = run.read_info()
        if info.get("status") == "finished" and info.get("steps") == args.steps:
            print(f"{model}: reusing the finished run in {out}")
            return out
        resume = info.get("status") == "running" and run.train_state_file.is_file()
        print(f"{model}: {'resuming' if resume else 'restarting'} the run in {out}")
        train(config, out, resume=resume, force=not resume)
    else:
        print(f"{model}: training {args.steps} steps into {out}")
        train(config, out, force=run.exists())
    return out


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    runs = []
    for model in MODELS:
        folder = train_one(model, args)
        info = RunDir(folder).read_info()
        if info.get("status") != "finished":
            raise ValueError(f"{model} did not finish (status {info.get('status')!r}: {info.get('message')}); "
                             f"see {folder / 'metrics.jsonl'}")
        results_path = default_results_path(folder)
        print(f"{model}: evaluating on the test split")
        results, results_path = evaluate_run(str(folder), out=str(results_path), data_root=args.data_root)
        runs.append(ReportRun(model, results, results_path.parent, list(RunDir(folder).read_metrics())))

    paths = build_report(runs, Path(args.out) / "report", title="hqvae demo: VQ-VAE-2 vs SQ-VAE-2 on Fashion-MNIST")
    print()
    print(f"{'model':8s} {'test RMSE':>10s} {'PSNR':>7s} {'SSIM':>7s}  perplexity per layer (of 512)")
    for report_run in runs:
        rec = report_run.results["reconstruction"]
        perplexities = " / ".join(f"{layer['perplexity']:.1f}" for layer in report_run.results["layers"])
        print(f"{report_run.name:8s} {rec['rmse']:10.4f} {rec['psnr']:7.2f} {rec['ssim']:7.4f}  {perplexities}")
    print(f"\nwall time {time.perf_counter() - started:.0f} s; report: {paths['html']} and {paths['markdown']}")
    return 0
