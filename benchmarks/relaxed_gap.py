"""How far a trained SQ model's codes fall behind what it was trained on (issue 18).

An SQ model trains its decoder on the Gumbel-softmax relaxed sample z_q = Σ_k w_k e_k at the
current τ, and is evaluated (and used as a tokenizer) on the argmax code. For each run this
measures, on the same validation items (BatchNorm in eval mode, the same noise for every run), the
RMSE of the reconstruction from

* the argmax codes (what ``hqvae eval`` reports),
* the relaxed training-mode sample at each of ``--taus`` (τ → 0 approaches a categorical sample).

A large gap between the two says that the decoder learnt from the mixture rather than from codes.

    python benchmarks/relaxed_gap.py --runs runs/a runs/b --items 2000 --out benchmarks/results/relaxed-gap.json
"""
from __future__ import annotations

import argparse
import platform
import sys

import torch

from hqvae.io import atomic_write_json
from hqvae.quantizers import StochasticQuantizer
from hqvae.runs import load_run_data, open_run
from hqvae.train.run_info import git_commit, now


@torch.no_grad()
def rmse(model, dataset, items: int, tau: float | None, seed: int = 0) -> float:
    """RMSE over the first ``items`` items, x̂ clamped to [0, 1]; ``tau`` None: argmax codes."""
    model.eval()
    for module in model.modules():
        if isinstance(module, StochasticQuantizer) and tau is not None:
            module.train()
            module.set_temperature(tau)
    torch.manual_seed(seed)
    squared, count = 0.0, 0
    for x, _ in dataset.subset(torch.arange(min(items, len(dataset))), dataset.split, dataset.description).batches(250):
        squared += (model(x).x_hat.clamp(0, 1) - x).pow(2).sum().item()
        count += x.numel()
    return (squared / count) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run folders of SQ models")
    parser.add_argument("--checkpoint", default="last", choices=["best", "last"])
    parser.add_argument("--items", type=int, default=2000, help="the first N validation items")
    parser.add_argument("--taus", nargs="+", type=float, default=[0.86, 0.5, 0.2, 0.05])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = []
    for path in args.runs:
        opened = open_run(path, args.checkpoint)
        dataset = load_run_data(opened.info, "val")
        row = {"run": path, "checkpoint": opened.checkpoint, "step": opened.info.step,
               "hard": rmse(opened.model, dataset, args.items, None),
               "relaxed": {str(tau): rmse(opened.model, dataset, args.items, tau) for tau in args.taus}}
        rows.append(row)
        print(f"{path}: argmax {row['hard']:.5f}, relaxed " +
              ", ".join(f"τ={tau} {value:.5f}" for tau, value in row["relaxed"].items()), flush=True)
    atomic_write_json(args.out, {
        "benchmark": "reconstruction RMSE from argmax codes against the relaxed training-mode sample",
        "split": "val", "items": args.items, "commit": git_commit(), "date": now(),
        "machine": platform.processor() or platform.machine(), "command": " ".join(sys.argv), "runs": rows})


if __name__ == "__main__":
    main()
