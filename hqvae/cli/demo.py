"""The main job: VQ-VAE-2 against SQ-VAE-2 on Fashion-MNIST, trained, evaluated and compared.

Trains ``vqvae2`` and ``sqvae2`` with the same backbone, codebooks (K = 512, d = 64, 7×7 and
14×14 codes), optimiser (Adam, lr 1e-3), batch size (32) and number of steps, evaluates both on
the Fashion-MNIST test split (10,000 images, deterministic quantisation), and writes the HTML and
Markdown report comparing them. The default budget takes about 8 minutes on 2 CPU cores. The
Gumbel temperature of SQ-VAE-2 follows the official schedule compressed to the budget (τ ends
at ≈ 0.25). Run it again to reuse finished runs of the models the registry builds today (``--fresh`` starts
over); an interrupted run resumes.

On a CPU with at least two cores the two models train and evaluate side by side, in two processes
with half the cores each (``--jobs 1`` runs them one after the other with every core): small
convolutions gain little from a second thread, so two one-thread runs finish in about the time
of one two-thread run.

    hqvae demo [--out runs/demo] [--steps 2000] [--data-root DIR] [--jobs N]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hqvae.cli.parsing import DATA_ROOT
from hqvae.runs import evaluate_run
from hqvae.report.build import ReportRun, build_report
from hqvae.train.checkpoint import holds_the_current_model
from hqvae.train.config import TrainConfig
from hqvae.train.tokenizer import train
from hqvae.train.run_dir import RunDir

MODELS = ("vqvae2", "sqvae2")
FINAL_TEMPERATURE_EXPONENT = 1.4  # τ_end = exp(−1.4) ≈ 0.25, as the reference configs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="folder of the two runs and the report")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per model (batch 32)")
    parser.add_argument("--data-root", type=DATA_ROOT, help="folder with the Fashion-MNIST IDX files (default: the Debian "
                        "package's /usr/share/datasets/fashion-mnist, else download with checksums)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--fresh", action="store_true", help="delete earlier demo runs and start over")
    parser.add_argument("--jobs", type=int, default=None,
                        help="models trained at once (default: 2 on a CPU with ≥ 2 cores, else 1)")


def demo_config(model: str, steps: int, data_root: str | None, device: str, progress: bool = True) -> TrainConfig:
    return TrainConfig.from_dict({
        "data": {"name": "fashion_mnist", "root": data_root},
        "model": {"name": model},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"steps": steps, "batch_size": 32, "seed": 0, "device": device, "log_every": 50,
                  "val_every": max(1, steps // 2), "val_batches": 20, "checkpoint_every": max(1, steps // 2)},
        "temperature": {"init": 1.0, "decay": FINAL_TEMPERATURE_EXPONENT / steps, "min": 0.0},
        "logging": {"progress": progress},
    })


def train_and_evaluate(model: str, args: argparse.Namespace, threads: int | None) -> tuple[Path, dict, Path]:
    """One model's run, trained (or resumed, or reused), and its test results (folder, results, results path)."""
    if threads:
        torch.set_num_threads(threads)
    folder = Path(args.out) / model
    run = RunDir(folder)
    info = run.read_info() if run.exists() and not args.fresh else None
    current = info is not None and run.checkpoint("last").is_dir() and holds_the_current_model(run, model, {})
    if info is not None and not current:
        print(f"{model}: the run in {folder} holds a model of an earlier hqvae (the registry's defaults changed since)")
    if current and info.status == "finished" and info.steps == args.steps:
        print(f"{model}: reusing the finished run in {folder}")
    else:
        resume = current and info.status == "running" and run.train_state_file.is_file()
        print(f"{model}: {'resuming' if resume else 'restarting'} the run in {folder}" if info is not None
              else f"{model}: training {args.steps} steps into {folder}")
        config = demo_config(model, args.steps, args.data_root, args.device, progress=args.jobs == 1)
        info = train(config, folder, resume=resume, force=run.exists() and not resume)
    if info.status != "finished":
        raise ValueError(f"{model} did not finish (status {info.status!r}: {info.message}); "
                         f"see {folder / 'metrics.jsonl'}")
    print(f"{model}: evaluating on the test split", flush=True)
    results, results_path = evaluate_run(str(folder), data_root=args.data_root)
    return folder, results, results_path


def side_by_side(args: argparse.Namespace) -> list[tuple[Path, dict, Path]]:
    """Both models in two processes, half the cores each, with one progress bar over both runs."""
    from tqdm import tqdm

    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_and_evaluate, model, args, threads) for model in MODELS]
        with tqdm(total=len(MODELS) * args.steps, desc=" + ".join(MODELS), unit="step", dynamic_ncols=True) as bar:
            while not all(future.done() for future in futures):
                time.sleep(2.0)
                logged = [RunDir(Path(args.out) / model).read_metrics("train") for model in MODELS]
                done = sum(max((record["step"] for record in records), default=0) for records in logged)
                bar.update(min(done, bar.total) - bar.n)
        return [future.result() for future in futures]


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.jobs is None:
        cpu_only = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
        args.jobs = 2 if cpu_only and (os.cpu_count() or 1) >= 2 else 1
    if args.jobs < 1:
        raise ValueError(f"--jobs must be ≥ 1, got {args.jobs}")
    finished = (side_by_side(args) if args.jobs > 1 else
                [train_and_evaluate(model, args, threads=None) for model in MODELS])
    runs = [ReportRun(model, results, path.parent, list(RunDir(folder).read_metrics()))
            for model, (folder, results, path) in zip(MODELS, finished)]

    paths = build_report(runs, Path(args.out) / "report", title="hqvae demo: VQ-VAE-2 vs SQ-VAE-2 on Fashion-MNIST")
    print()
    print(f"{'model':8s} {'test RMSE':>10s} {'PSNR':>7s} {'SSIM':>7s}  {'information per layer':>22s}  "
          "perplexity per layer (of 512)")
    for report_run in runs:
        rec = report_run.results["reconstruction"]
        layers = report_run.results["layers"]
        bits = " / ".join(f"{layer['information_bits_per_item']:.0f}" for layer in layers) + " bits"
        perplexities = " / ".join(f"{layer['perplexity']:.1f}" for layer in layers)
        print(f"{report_run.name:8s} {rec['rmse']:10.4f} {rec['psnr']:7.2f} {rec['ssim']:7.4f}  {bits:>22s}  "
              f"{perplexities}")
    print(f"\nwall time {time.perf_counter() - started:.0f} s; report: {paths['html']} and {paths['markdown']}")
    return 0
