"""Refit a trained tokenizer's decoder on its own argmax codes (issue 18: where the SQ models' test gap sits).

An SQ model's decoder learns from the relaxed sample (a mixture of codes at the training τ); as a
tokenizer it decodes argmax codes (``benchmarks/relaxed_gap.py`` measures the difference). This
trains only the decoding path of a hierarchical model, each group's ``merge_out`` and the
``decoder``, on the model's argmax codes of training images, with MSE and Adam at a fixed learning
rate for a fixed number of steps. The encoder, the codebooks and the top-down upsamplers stay
frozen, so every code, and the information each layer carries, stays exactly the trained model's;
only what the codes decode to changes. Both models of a pair get the same refit, and the test split
is evaluated before and after by ``hqvae.evaluate`` (the claims benchmark's metrics).

It is a post-training stage, not part of either method. The VQ partner's decoder already trained on
argmax codes, so its gain is what a low-learning-rate finish alone buys; only an SQ gain beyond
it is the decoder's train/test mismatch.

    python benchmarks/decoder_refit.py --runs RUN [RUN ...] --steps 2000 --lr 3e-4 --threads 1 \\
        --out benchmarks/results/decoder-refit-<name>.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import portable  # noqa: E402

from hqvae.evaluate import evaluate  # noqa: E402
from hqvae.io import atomic_write_json  # noqa: E402
from hqvae.runs import load_run_data, open_run  # noqa: E402
from hqvae.train.performance import channels_last, channels_last_batch  # noqa: E402
from hqvae.train.run_info import git_commit, now  # noqa: E402

BATCH = 32


def decoding_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules between the quantised latents and x̂ that the encoder does not also use."""
    if not hasattr(model, "groups") or not hasattr(model, "decoder"):
        raise SystemExit(f"{type(model).__name__}: only the hierarchical models (top-down groups) are supported")
    return [*(group.merge_out for group in model.groups), model.decoder]


def refit(model: torch.nn.Module, train_set, steps: int, lr: float, seed: int) -> list[float]:
    """Adam on the decoding modules for ``steps`` batches of ``BATCH`` -> the MSE every 100 steps."""
    decoding = decoding_modules(model)
    model.requires_grad_(False).eval()
    parameters = [p for module in decoding for p in module.parameters()]
    for p in parameters:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    trace, step = [], 0
    while step < steps:
        for x, _ in train_set.batches(BATCH, shuffle=True, generator=generator, drop_last=True):
            x = channels_last_batch(x)
            codes = model.encode(x)  # eval mode, no gradients: the trained model's codes
            for module in decoding:
                module.train()
            loss = F.mse_loss(model.decode_latents(model.embed_codes(codes)), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for module in decoding:
                module.eval()
            if step % 100 == 0:
                trace.append(loss.item())
            step += 1
            if step == steps:
                break
    model.requires_grad_(True)
    return trace


def summary(result: dict) -> dict:
    return {"rmse": result["reconstruction"]["rmse"], "psnr": result["reconstruction"]["psnr"],
            "ssim": result["reconstruction"].get("ssim"),
            "information_bits_per_item": [layer.get("information_bits_per_item") for layer in result["layers"]],
            "usage": [layer["usage"] for layer in result["layers"]],
            "coarse_to_fine_rmse": [row["rmse"] for row in result.get("coarse_to_fine") or []]}


def measured(model, dataset) -> dict:
    """:func:`summary` of ``model`` evaluated on ``dataset``."""
    return summary(evaluate(model, dataset, batch_size=256))


def runs_as_trained(paths, checkpoint: str, split: str = "test"):
    """Per run folder: (path, the opened run, its model in channels-last layout, its training split,
    its ``split``, the model's :func:`measured` summary on that split as trained) — what a benchmark
    that changes a trained model and measures it again starts from."""
    for path in paths:
        opened = open_run(path, checkpoint)
        model = channels_last(opened.model)
        train_set, eval_set = (load_run_data(opened.info, name) for name in ("train", split))
        yield path, opened, model, train_set, eval_set, measured(model, eval_set)


def run_arguments(description: str, runs_help: str = "run folders of hierarchical models") -> argparse.ArgumentParser:
    """The options of a benchmark over trained runs: --runs, --checkpoint, --threads, --out."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help=runs_help)
    parser.add_argument("--checkpoint", default="last", choices=["best", "last"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    return parser


def parse_run_arguments(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse, and apply --threads."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main() -> None:
    parser = run_arguments(__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_run_arguments(parser)
    rows = []
    for path, opened, model, train_set, test_set, before in runs_as_trained(args.runs, args.checkpoint):
        start = time.perf_counter()
        trace = refit(model, train_set, args.steps, args.lr, args.seed)
        seconds = time.perf_counter() - start
        after = measured(model, test_set)
        rows.append({"run": path, "model": opened.info.config["model"]["name"], "step": opened.info.step,
                     "test_before": before, "test_after": after, "train_mse_every_100": trace,
                     "refit_seconds": seconds})
        print(f"{path}: test RMSE {before['rmse']:.5f} -> {after['rmse']:.5f} ({seconds:.0f} s)", flush=True)
    atomic_write_json(args.out, portable({
        "benchmark": "decoder refit on the model's own argmax codes (encoder, codebooks, upsamplers frozen)",
        "data": test_set.description, "split": "test", "refit": {"steps": args.steps, "batch_size": BATCH,
                                                                 "optimizer": "adam", "lr": args.lr, "loss": "mse",
                                                                 "seed": args.seed},
        "commit": git_commit(), "date": now(), "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "command": "python " + " ".join(sys.argv), "runs": rows}))


if __name__ == "__main__":
    main()
