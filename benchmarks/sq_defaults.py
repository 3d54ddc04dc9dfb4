"""Choosing the SQ models' defaults on the validation split (issue: stochastic models that earn their keep).

Each *setting* is a list of ``section.key=value`` training-config overrides on top of the claims
benchmark's protocol (``benchmarks/claims.py``: the library's training loop, batch 32, Adam 1e-3,
the default Gumbel decay for the budget, the same budget). Every (setting, model, seed) run is trained once
(its folder is reused afterwards; a run stopped early, by a signal or a killed process, resumes from its
last checkpoint, saved every 1,500 steps) and evaluated on the **validation** split — never the test
split, which is kept for the claims benchmark. Besides the validation metrics (RMSE, PSNR, per-layer
perplexity and mutual information) the record keeps what the training log says about the
ELBO's balance: each layer's s² and discrete (negative-entropy) term over training, and the
reconstruction term.

    python benchmarks/sq_defaults.py --dataset fashion_mnist --models sqvae2 --seeds 0 1 \\
        --settings baseline data-floor data --threads 1
    python benchmarks/sq_defaults.py --dataset fashion_mnist --table    # the table of every run so far

Writes ``benchmarks/results/sq-defaults-<dataset>.json`` (all runs so far, merged) and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import BUDGETS, DATASETS, data_root, portable, run_config, same_run, training_trace  # noqa: E402

from hqvae.data import load_dataset  # noqa: E402
from hqvae.evaluate import evaluate  # noqa: E402
from hqvae.io import atomic_write_bytes, atomic_write_json  # noqa: E402
from hqvae.train.tokenizer import train  # noqa: E402
from hqvae.train.run_dir import RunDir  # noqa: E402
from hqvae.train.run_info import git_commit, now  # noqa: E402

CHECKPOINT_EVERY = 1_500  # steps between checkpoints: a run killed without a signal loses at most these

# name -> overrides on top of the claims protocol; each names its start and its rate weight in full,
# so that a change of the registry's defaults does not change what a setting means (the records made
# before ``rate_weight`` existed were trained with ρ = 1, their saved model configs say so; a rerun
# retrains them once, to the same numbers)
ELBO = ["model.overrides.rate_weight=1"]
PUBLIC = ["model.overrides.sq_init=normal", "model.overrides.var_floor=true",
          "model.overrides.bounded_variance=false", "model.overrides.affine_codebook=false"] + ELBO
DATA = ["model.overrides.sq_init=data", "model.overrides.var_floor=false",
        "model.overrides.bounded_variance=false"] + ELBO
START = ["model.overrides.sq_init=data", "model.overrides.var_floor=false",
         "model.overrides.bounded_variance=true"]  # the registry's start, with its rate weight
BOUNDED = START + ELBO
SETTINGS = {
    "baseline": PUBLIC + ["model.overrides.init_variance=10"],  # the public SQ-VAE start, Fashion-MNIST s²
    "data-floor": ["model.overrides.sq_init=data", "model.overrides.var_floor=true",
                   "model.overrides.bounded_variance=false"] + ELBO,
    "data": DATA,
    "data-bounded": BOUNDED,
    "data-bounded-ratio0.25": BOUNDED + ["model.overrides.init_variance_ratio=0.25"],
    "data-bounded-adam0": BOUNDED + ["optim.betas=[0.0,0.99]"],
    "data-ratio0.25": DATA + ["model.overrides.init_variance_ratio=0.25"],
    "data-ratio4": DATA + ["model.overrides.init_variance_ratio=4"],
    "data-adam0": DATA + ["optim.betas=[0.0,0.99]"],
    "data-lr3e-4": DATA + ["optim.lr=3e-4"],
    "data-tau-official": DATA + ["temperature.decay=1e-5"],
    "data-tau-half": DATA + ["temperature.min=0.5"],
    "data-bounded-lr3e-4": BOUNDED + ["optim.lr=3e-4"],
    "data-bounded-lr2e-3": BOUNDED + ["optim.lr=2e-3"],
    "data-bounded-tau-official": BOUNDED + ["temperature.decay=1e-5"],  # uncompressed: τ ends near 0.985
    "data-bounded-tau-half": BOUNDED + ["temperature.min=0.5"],
    # the ELBO's rate–distortion balance: latent (rate) terms weighted by ρ < 1 (β-VAE style)
    "data-bounded-rate0.25": BOUNDED + ["model.overrides.rate_weight=0.25"],
    "data-bounded-rate0.1": BOUNDED + ["model.overrides.rate_weight=0.1"],
    "data-bounded-rate0.32": BOUNDED + ["model.overrides.rate_weight=0.32"],
    # long budgets (issue 18): the registry's start and rate weight, three Gumbel schedules
    "registry": START,  # the default τ decay for the budget (compressed to 0.21 up to 2,000 steps; 1e-5 from 15,000)
    "registry-tau-official": START + ["temperature.decay=1e-5"],  # uncompressed: 0.86 at 15,000 steps
    "registry-tau-floor": START + ["temperature.decay=1e-3", "temperature.min=0.5"],  # at every budget: 0.5 from step 693
    # the rate weight at the long budget's schedule (sqvae2's lever on Fashion-MNIST at 1,500 steps)
    "registry-tau-official-rate0.5": START + ["temperature.decay=1e-5", "model.overrides.rate_weight=0.5"],
    "registry-tau-official-rate0.25": START + ["temperature.decay=1e-5", "model.overrides.rate_weight=0.25"],
    "registry-rate0.25": START + ["model.overrides.rate_weight=0.25"],  # with the budget's τ, at any budget
    "registry-rate0.5": START + ["model.overrides.rate_weight=0.5"],
    # a broader start (s²₀ = r × the inputs' variance; the bounded s² stays below 2·s²₀): codes that
    # the first, sharp posteriors leave without mass are left behind when the latents contract
    "registry-ratio4": START + ["model.overrides.init_variance_ratio=4"],
    # a tighter start and bound: rsqvae's first depth climbs to its bound 2·s²₀ by 15,000 steps while
    # the later depths correct its noise, so training decodes a mixture where the test decodes one code
    "registry-ratio0.5": START + ["model.overrides.init_variance_ratio=0.5"],
    # the codebooks' Adam β2: with 0.999, √v̂ remembers a code's early gradients for thousands of
    # steps, so a code that lost its posterior mass moves at ~1e-4 of the lr (benchmarks/dead_codes.py)
    "registry-codebook-beta2-0.99": START + ["optim.codebook_beta2=0.99"],
    # the codebooks' learning rate: codes die in the first ~200 steps, when the latents move faster
    # than the codes that should follow them
    "registry-codebook-lr3": START + ["optim.codebook_lr_scale=3"],
    "registry-codebook-lr10": START + ["optim.codebook_lr_scale=10"],
    # codes a ⊙ w_k + b with a scale and shift shared by all codes: the unused codes move with the used
    "registry-affine-codebook": START + ["model.overrides.affine_codebook=true"],
    # the codebook from k-means centroids of the first batch (the VQ partners' start) instead of its rows
    "registry-kmeans": START + ["model.overrides.sq_init=kmeans"],
    # the straight-through variant: from step N on, training decodes the argmax code (``temperature.hard_from``)
    "registry-tau-official-hard12000": START + ["temperature.decay=1e-5", "temperature.hard_from=12000"],
    "registry-tau-official-hard0": START + ["temperature.decay=1e-5", "temperature.hard_from=0"],
    # a learning-rate decay at long budgets, for SQ models and their VQ partners alike (no model
    # overrides, so it applies to both): cosine from 1e-3 to 1e-4 (lr/10, nanoGPT's floor) at the last step
    "lr-cosine": ["optim.schedule=cosine", "optim.min_lr=1e-4"],
    "lr-constant": ["optim.schedule=constant"],  # the default, named: the VQ partners' side of lr-cosine
}


def run_one(dataset: str, setting: str, model: str, seed: int, steps: int, runs: Path, val_set) -> dict:
    out = runs / dataset / setting / f"{model}-seed{seed}"
    record_path = out / "sq-defaults-record.json"
    config = run_config(dataset, model, steps, seed, "cpu",
                        SETTINGS[setting] + [f"train.checkpoint_every={min(steps, CHECKPOINT_EVERY)}"])
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if same_run(out, record["config"], config):
            return record
    run = RunDir(out)
    info = run.read_info() if run.exists() else None
    # a run of this config that stopped (a signal's checkpoint, or the last periodic one) goes on from there
    resume = (info is not None and info.status != "finished" and run.train_state_file.is_file()
              and same_run(out, info.config, config))
    if resume:
        print(f"{model} {setting} seed {seed}: resuming after step {info.step}", flush=True)
    commit = git_commit()  # the code this run imports (later commits may land while it trains)
    start = time.perf_counter()
    train(config, out, resume=resume, force=not resume)
    seconds = time.perf_counter() - start
    result = evaluate(run.load_model("last"), val_set, batch_size=256)
    record = {
        "setting": setting, "overrides": SETTINGS[setting], "model": model, "seed": seed, "steps": steps,
        "commit": commit,
        "config": config.to_dict(), "train_wall_time_s": seconds,  # of this process's part, when resumed
        "resumed_after_step": info.step if resume else None,
        "val": {
            "rmse": result["reconstruction"]["rmse"], "psnr": result["reconstruction"]["psnr"],
            "ssim": result["reconstruction"].get("ssim"),
            "perplexity": [layer["perplexity"] for layer in result["layers"]],
            "usage": [layer["usage"] for layer in result["layers"]],
            "information_bits_per_item": [layer.get("information_bits_per_item") for layer in result["layers"]],
            "information_bits": [layer.get("information_bits") for layer in result["layers"]],
            "conditional_entropy_bits": [layer.get("conditional_entropy_bits") for layer in result["layers"]],
            "coarse_to_fine_rmse": [point["rmse"] for point in result["coarse_to_fine"]],
        },
        "run_dir": str(out),
        "trace": training_trace(run),
        "balance": elbo_balance(result),
    }
    atomic_write_json(record_path, record)
    return record


def elbo_balance(result: dict) -> dict:
    """The ELBO's rate–distortion scales at this size: D/2 (the weight of log-MSE in the
    reconstruction term) against Σ_l n_l·ln K_l (the largest the discrete terms can move)."""
    shape = result["data"]["shape"]
    dims = math.prod(shape)
    nats = sum(layer["positions"] * math.log(layer["codebook_size"]) for layer in result["layers"])
    return {"D_over_2": dims / 2, "sum_n_log_K_nats": nats, "ratio": nats / (dims / 2)}


def table(records: list[dict]) -> str:
    """Mean ± spread over seeds per (model, setting)."""
    lines = ["| model | setting | seeds | val RMSE (per seed) | least-informative layer, bits/item | "
             "perplexity per layer | codes in use per layer | final s² per layer |", "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["model"], r["setting"]) for r in records}, key=lambda k: (k[0], list(SETTINGS).index(k[1])))
    for model, setting in keys:
        rows = sorted((r for r in records if (r["model"], r["setting"]) == (model, setting)), key=lambda r: r["seed"])
        rmse = sum(r["val"]["rmse"] for r in rows) / len(rows)
        least = [min(b for b in r["val"]["information_bits_per_item"]) for r in rows]
        perplexity = [sum(r["val"]["perplexity"][i] for r in rows) / len(rows) for i in range(len(rows[0]["val"]["perplexity"]))]
        usage = ([sum(r["val"]["usage"][i] for r in rows) / len(rows) for i in range(len(rows[0]["val"]["usage"]))]
                 if all("usage" in r["val"] for r in rows) else None)  # records from before it was kept: –
        variance = rows[0]["trace"]["records"][-1].get("variance", {}) if rows[0]["trace"]["records"] else {}
        lines.append(
            f"| {model} | {setting} | {','.join(str(r['seed']) for r in rows)} | {rmse:.4f} "
            f"({' / '.join(format(r['val']['rmse'], '.4f') for r in rows)}) | {sum(least) / len(least):.0f} | "
            f"{' / '.join(f'{p:.0f}' for p in perplexity)} | {' / '.join(f'{u:.2f}' for u in usage) if usage else '–'} | "
            f"{' / '.join(f'{v:.3g}' for v in variance.values())} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist", choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["sqvae2"])
    parser.add_argument("--settings", nargs="+", default=["baseline", "data"], choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, help="default: the claims benchmark's budget for the dataset")
    parser.add_argument("--runs", default="runs/sq-defaults")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--table", action="store_true", help="only rewrite the merged JSON and table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or BUDGETS["default"][args.dataset]
    if not args.table:
        val_set = load_dataset(DATASETS[args.dataset][0], "val", root=data_root(args.dataset))
        for seed in args.seeds:
            for setting in args.settings:
                for model in args.models:
                    record = run_one(args.dataset, setting, model, seed, steps, Path(args.runs), val_set)
                    print(f"{model} {setting} seed {seed}: val rmse {record['val']['rmse']:.4f} "
                          f"bits/item {[round(b) for b in record['val']['information_bits_per_item']]}", flush=True)
    records = []
    for path in sorted((Path(args.runs) / args.dataset).glob("*/*/sq-defaults-record.json")):
        record = json.loads(path.read_text())
        record["trace"] = training_trace(RunDir(path.parent))
        records.append(record)
    result = {
        "benchmark": "SQ defaults chosen on the validation split (claims protocol)",
        "dataset": DATASETS[args.dataset][2], "split": "val", "settings": SETTINGS,
        "commit": git_commit(), "date": now(),
        "runs": records,
    }
    stem = Path(args.out) / f"sq-defaults-{args.dataset}"
    result = portable(result)
    atomic_write_json(stem.with_suffix(".json"), result)
    atomic_write_bytes(stem.with_suffix(".md"), table(records).encode())
    print(table(records), end="")


if __name__ == "__main__":
    main()
