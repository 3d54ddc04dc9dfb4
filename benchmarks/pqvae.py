"""PQ-VAE against RSQ-VAE / RQ-VAE at matched bits, its linear probe, and its ablations (SPEC §4).

Trains, with the shared training loop (``hqvae.train.tokenizer.train``, one run folder per model
under ``--runs``), on one data set and at one small CPU budget:

    pqvae              SQ steps, L = 32 global tokens (G = 1), K = 256, d_c = 16, c = 16,
                       λ_h = 0.05, γ = 1, λ_pre = 1, sign "pq", SSE reconstruction
    lambda_h=0 / lambda_h=0.5 / lambda_pre=0 / sign=elbo / recon=arelbo
                       the same with one ingredient changed
    global_rvq         the control: VQ steps (straight-through, commitment 0.25), no entropy
                       terms, no prefix loss
    global_rvq+prefix  the control with PQ-VAE's prefix loss (λ_pre = 1): separates the quantiser
                       (SQ + entropy terms vs VQ) from the prefix loss
    rsqvae / rqvae     4 residual SQ / VQ layers on the 7×7 (28²) or 8×8 (32²) grid, K = 4, d = 16

All share the backbone (hidden 32, 2 residual blocks, ÷4), Adam lr 1e-3, batch 64, the seed, and
for SQ models τ(step) = exp(−1.4·step/steps) (τ ends at 0.25). Then, on the test split
(deterministic quantisation): the rate–distortion curve over prefix lengths (PQ: m steps,
8m bits; RSQ/RQ: m layers, m·n·2 bits with n grid positions), token statistics (PQ), and a
logistic-regression probe on the frozen decoder-input partial sums at several prefix lengths
(fitted on evenly spaced training items). Writes benchmarks/results/pqvae-<dataset>.json, PNG
plots and a Markdown table next to it.

    python benchmarks/pqvae.py --dataset fashion_mnist [--steps 3000] [--only pqvae rsqvae] [--quick]
    python benchmarks/pqvae.py --dataset cifar10_folder --data-root $HQVAE_DATA_ROOT/cifar10-jpeg-q75.tar.gz
    python benchmarks/pqvae.py --seed 1 --only pqvae lambda_h=0     # -> pqvae-fashion_mnist-seed1.json

``--quick``: 60 steps, 512 test items, 1,000 probe items, results under ``--runs`` (a smoke run:
the numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

import hqvae
from hqvae.data import load_dataset
from hqvae.io import atomic_write, atomic_write_json
from hqvae.evaluate import evaluate
from hqvae.metrics.progressive import linear_probe, probe_lengths, token_statistics
from hqvae.report.plots import plot_probe, plot_rate_distortion
from hqvae.train.config import TrainConfig
from hqvae.train.tokenizer import train
from hqvae.train.run_info import now

RESULTS = Path(__file__).parent / "results"
BACKBONE = {"hidden": 32, "num_res_blocks": 2}
PQ = {**BACKBONE, "depth": 32, "groups": 1, "codebook_size": 256, "code_dim": 16, "dim": 16}
GRID = {**BACKBONE, "depth": 4, "codebook_size": 4, "dim": 16}
RUNS = {  # name -> (registry model, overrides)
    "pqvae": ("pqvae", PQ),
    "lambda_h=0": ("pqvae", {**PQ, "lambda_h": 0.0}),
    "lambda_h=0.5": ("pqvae", {**PQ, "lambda_h": 0.5}),
    "lambda_pre=0": ("pqvae", {**PQ, "lambda_prefix": 0.0}),
    "sign=elbo": ("pqvae", {**PQ, "entropy_sign": "elbo"}),
    "recon=arelbo": ("pqvae", {**PQ, "recon_loss": "arelbo"}),
    "global_rvq": ("global_rvq", PQ),
    "global_rvq+prefix": ("global_rvq", {**PQ, "lambda_prefix": 1.0}),
    "rsqvae": ("rsqvae", GRID),
    "rqvae": ("rqvae", GRID),
}
TEMPERATURE_END = 0.25


def train_config(dataset: str, data_root: str | None, model: str, overrides: dict, steps: int, batch_size: int,
                 seed: int) -> TrainConfig:
    return TrainConfig.from_dict({
        "data": {"name": dataset, "root": data_root},
        "model": {"name": model, "overrides": overrides},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"steps": steps, "batch_size": batch_size, "seed": seed, "device": "cpu", "log_every": 100,
                  "val_every": 0, "checkpoint_every": steps},
        "temperature": {"init": 1.0, "decay": -math.log(TEMPERATURE_END) / steps, "min": 0.0},
        "logging": {"progress": False},
    })


def final_train_terms(run_dir: Path) -> dict:
    """The last train record of metrics.jsonl (means over its last logging window)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train_records = [r for r in records if r.get("split", "train") == "train"]
    return train_records[-1] if train_records else {}


def evaluate_run(name: str, model, test_set, probe_train, probe_test) -> dict:
    start = time.perf_counter()
    result = {"rate_distortion": [{"prefix_len": p["layers"], "bits": p["bits_per_item"],
                                   **{key: p[key] for key in ("rmse", "mse", "psnr", "ssim") if key in p}}
                                  for p in evaluate(model, test_set)["coarse_to_fine"]]}
    tokens = model.supports("token_statistics")
    lengths = probe_lengths(model.num_layers) if tokens else None
    result["probe"] = linear_probe(model, probe_train, probe_test, lengths)
    if tokens:
        result["tokens"] = token_statistics(model, test_set)
    result["eval_time_s"] = time.perf_counter() - start
    print(f"[{name}] evaluated in {result['eval_time_s']:.0f}s", flush=True)
    return result


def summary_rows(results: dict) -> list[dict]:
    rows = []
    for name, run in results.items():
        curve = run["rate_distortion"]
        rmse = [p["rmse"] for p in curve]
        probe = {p["prefix_len"]: p["test_accuracy"] for p in run["probe"]}
        row = {
            "model": name,
            "bits": curve[-1]["bits"],
            "rmse": curve[-1]["rmse"],
            "psnr": curve[-1]["psnr"],
            "ssim": curve[-1].get("ssim"),
            "rmse_first": curve[0]["rmse"],
            "monotone": all(b <= a for a, b in zip(rmse, rmse[1:])),
            "train_mse": run["final_train_record"].get("terms", {}).get("mse"),
            "test_mse": curve[-1]["mse"],
            "probe_first": probe[min(probe)],
            "probe_last": probe[max(probe)],
            "train_s": run["train_time_s"],
        }
        if "tokens" in run:
            steps = run["tokens"]["steps"]
            row["perplexity"] = sum(s["perplexity"] for s in steps) / len(steps)
            row["mi_bits"] = run["tokens"]["total"].get("mi_bits")
            row["cond_entropy_bits"] = run["tokens"]["total"].get("cond_entropy_bits")
        rows.append(row)
    return rows


def markdown(document: dict) -> str:
    def fmt(value, digits=3):
        if value is None:
            return "–"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [
        f"# PQ-VAE benchmark: {document['data']['test']}",
        "",
        *[f"Command: `{c['command']}` ({', '.join(c['runs'])}; {c['wall_time_s'] / 60:.0f} min)  "
          for c in document["commands"]],
        f"Budget: {document['settings']['steps']} steps × batch {document['settings']['batch_size']} per model, "
        f"seed {document['settings']['seed']}, CPU ({document['environment']['torch_threads']} thread); "
        f"wall time {document['wall_time_s'] / 60:.0f} min in all.",
        "",
        "Test split, deterministic quantisation. RMSE/PSNR/SSIM of the full code; `first` = the first "
        "step (PQ: one token, 8 bits) or layer; probe = logistic regression on the decoder-input partial "
        "sum (test accuracy); perplexity = mean over steps of the dataset-level per-token perplexity; "
        "MI = Σ_tokens H(E q) − E H(q) in bits; train MSE = the training-mode MSE (relaxed SQ sample) "
        "averaged over the last 100 steps, against the test MSE with hard codes.",
        "",
        "| model | bits | RMSE | PSNR | SSIM | RMSE first | monotone | probe first | probe full | perplexity | "
        "MI bits | E H(q) bits | train MSE | test MSE | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["summary"]:
        lines.append("| " + " | ".join([
            row["model"], fmt(row["bits"], 0), fmt(row["rmse"], 4), fmt(row["psnr"], 2), fmt(row["ssim"]),
            fmt(row["rmse_first"], 4), fmt(row["monotone"]), fmt(row["probe_first"]), fmt(row["probe_last"]),
            fmt(row.get("perplexity"), 1), fmt(row.get("mi_bits"), 1), fmt(row.get("cond_entropy_bits"), 1),
            fmt(row.get("train_mse"), 4), fmt(row["test_mse"], 4), fmt(row["train_s"], 0),
        ]) + " |")
    lines += ["", "Matched bits (RMSE / PSNR):", "", "| bits | " + " | ".join(document["matched"]["models"]) + " |",
              "|---|" + "---|" * len(document["matched"]["models"])]
    for point in document["matched"]["points"]:
        cells = [f"{v['rmse']:.4f} / {v['psnr']:.2f} ({v['bits']:.0f} b)" if v else "–" for v in point["values"]]
        lines.append(f"| {point['bits']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def matched_bits(results: dict, reference: str = "rsqvae", models: tuple[str, ...] = ("pqvae", "global_rvq", "rqvae")) -> dict:
    """For every point of the reference curve, each model's point with the closest bits not above it."""
    names = [reference, *[m for m in models if m in results]]
    points = []
    for anchor in results.get(reference, {}).get("rate_distortion", []):
        values = []
        for name in names:
            below = [p for p in results[name]["rate_distortion"] if p["bits"] <= anchor["bits"] * 1.02]
            values.append(max(below, key=lambda p: p["bits"]) if below else None)
        points.append({"bits": anchor["bits"], "values": values})
    return {"models": names, "points": points}


SEED_METRICS = {  # summary key -> column title
    "rmse": "RMSE full",
    "rmse_first": "RMSE first",
    "rmse_64": "RMSE at 64 b",
    "probe_first": "probe first",
    "probe_last": "probe full",
    "cond_entropy_bits": "E H(q) bits",
    "mi_bits": "MI bits",
    "train_mse": "train MSE",
    "test_mse": "test MSE",
}


def combine_seeds(dataset: str) -> Path:
    """pqvae-<dataset>-seeds.{json,md}: every run's key metrics per seed (the seed-0 file and the
    ``-seed<n>`` files), their mean and their spread (max − min)."""
    files = sorted(RESULTS.glob(f"pqvae-{dataset}.json")) + sorted(RESULTS.glob(f"pqvae-{dataset}-seed[0-9]*.json"))
    documents = [json.loads(path.read_text()) for path in files]
    table: dict[str, dict] = {}
    for document in documents:
        seed = document["settings"]["seed"]
        for row in summary_rows(document["runs"]):
            curve = document["runs"][row["model"]]["rate_distortion"]
            at_64 = [p for p in curve if p["bits"] <= 64]
            row["rmse_64"] = max(at_64, key=lambda p: p["bits"])["rmse"] if at_64 else None
            entry = table.setdefault(row["model"], {})
            for key in SEED_METRICS:
                if row.get(key) is not None:
                    entry.setdefault(key, {})[str(seed)] = row[key]
    combined = {name: {key: {"seeds": values, "mean": sum(values.values()) / len(values),
                             "spread": max(values.values()) - min(values.values())}
                       for key, values in metrics.items()} for name, metrics in table.items()}
    out = RESULTS / f"pqvae-{dataset}-seeds.json"
    atomic_write_json(out, {"files": [path.name for path in files], "runs": combined})
    lines = [f"# PQ-VAE benchmark on {documents[0]['data']['test'].split(',')[0]}: seeds combined", "",
             f"From {', '.join(path.name for path in files)}. Each cell: mean over the seeds that ran "
             "(± half the spread max − min; n = number of seeds). RMSE at 64 b: the prefix of 64 bits "
             "(PQ: 8 tokens).", "",
             "| model | " + " | ".join(SEED_METRICS.values()) + " |", "|---|" + "---|" * len(SEED_METRICS)]
    for name, metrics in combined.items():
        cells = []
        for key in SEED_METRICS:
            value = metrics.get(key)
            digits = 4 if "rmse" in key or "mse" in key else 3 if "probe" in key else 1
            if value is None:
                cells.append("–")
            elif len(value["seeds"]) == 1:
                cells.append(f"{value['mean']:.{digits}f} (n=1)")
            else:
                cells.append(f"{value['mean']:.{digits}f} ± {value['spread'] / 2:.{digits}f} (n={len(value['seeds'])})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    atomic_write(out.with_suffix(".md"), lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "cifar10_folder", "cifar10"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-items", type=int, default=10000, help="training items the probe is fitted on")
    parser.add_argument("--only", nargs="*", choices=list(RUNS), help="train and evaluate these runs only")
    parser.add_argument("--runs", default="runs/pqvae-bench", help="folder for the run folders (checkpoints)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 steps, 512 test items, 1,000 probe items")
    parser.add_argument("--render", action="store_true", help="only rewrite the Markdown and plots from the JSON")
    parser.add_argument("--combine", action="store_true",
                        help="only write pqvae-<dataset>-seeds.{json,md} from the results of every seed")
    args = parser.parse_args()
    if args.combine:
        print(combine_seeds(args.dataset))
        return
    torch.set_num_threads(args.threads)
    steps = 60 if args.quick else args.steps
    suffix = ("-quick" if args.quick else "") + (f"-seed{args.seed}" if args.seed else "")
    out_json = (Path(args.runs) if args.quick else RESULTS) / f"pqvae-{args.dataset}{suffix}.json"
    if args.render:
        render(out_json)
        return
    names = args.only or list(RUNS)
    start = time.perf_counter()

    test_set = load_dataset(args.dataset, "test", args.data_root)
    train_set = load_dataset(args.dataset, "train", args.data_root)
    probe_items = 1000 if args.quick else args.probe_items
    if args.quick:
        test_set = test_set.evenly_spaced(512)
    probe_train = train_set.evenly_spaced(probe_items)

    previous = json.loads(out_json.read_text())["runs"] if out_json.exists() and args.only else {}
    results = dict(previous)
    for name in names:
        model_name, overrides = RUNS[name]
        run_dir = Path(args.runs) / f"{args.dataset}{suffix}" / name
        config = train_config(args.dataset, args.data_root, model_name, overrides, steps, args.batch_size, args.seed)
        print(f"[{name}] training {model_name} {overrides} for {steps} steps -> {run_dir}", flush=True)
        began = time.perf_counter()
        info = train(config, run_dir, force=True)
        train_time = time.perf_counter() - began
        model = hqvae.from_pretrained(run_dir / "checkpoints" / "last")
        print(f"[{name}] trained in {train_time:.0f}s (status {info.status})", flush=True)
        results[name] = {
            "model_type": model_name,
            "overrides": overrides,
            "model_config": model.config.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "status": info.status,
            "train_time_s": train_time,
            "final_train_record": final_train_terms(run_dir),
            "run_dir": str(run_dir),
            "command": command_line(),
            **evaluate_run(name, model, test_set, probe_train, test_set),
        }
        results = {key: results[key] for key in RUNS if key in results}  # keep the table order
        write(out_json, args, steps, test_set, probe_train, results, time.perf_counter() - start)


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write(out_json: Path, args, steps: int, test_set, probe_train, results: dict, wall: float) -> None:
    """The JSON (every run so far; ``commands`` lists each invocation that contributed runs,
    ``wall_time_s`` sums their wall times), the Markdown table and the plots."""
    previous = json.loads(out_json.read_text()) if out_json.exists() and args.only else {}
    commands = [c for c in previous.get("commands", []) if c["command"] != command_line()]
    commands.append({"command": command_line(), "wall_time_s": wall,
                     "runs": [name for name in results if results[name]["command"] == command_line()]})
    document = {
        "benchmark": "pqvae",
        "commands": commands,
        "created": now(),
        "wall_time_s": sum(c["wall_time_s"] for c in commands),
        "data": {"dataset": args.dataset, "test": test_set.description, "probe_train": probe_train.description},
        "settings": {"steps": steps, "batch_size": args.batch_size, "seed": args.seed, "optimizer": "adam lr 1e-3",
                     "temperature": f"tau(step) = exp(-ln(1/{TEMPERATURE_END})*step/steps)",
                     "probe": "logistic regression, L2 1e-4, L-BFGS, standardised decoder-input partial sums",
                     "quantization_at_test": "deterministic (argmax / nearest code)"},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine(), "torch_threads": torch.get_num_threads(),
                        "hqvae": hqvae.__version__},
        "runs": results,
    }
    document["summary"] = summary_rows(results)
    document["matched"] = matched_bits(results)
    atomic_write_json(out_json, document)
    render(out_json)


def render(out_json: Path) -> None:
    """The Markdown table and the PNG plots of a results JSON, next to it."""
    document = json.loads(out_json.read_text())
    results = document["runs"]
    document["summary"] = summary_rows(results)
    document["matched"] = matched_bits(results)
    stem = out_json.with_suffix("")
    atomic_write(f"{stem}.md", lambda tmp: Path(tmp).write_text(markdown(document)))
    title = document["data"]["test"].split(",")[0]
    main_curves = {n: results[n]["rate_distortion"] for n in ("pqvae", "global_rvq", "rsqvae", "rqvae") if n in results}
    if main_curves:
        plot_rate_distortion(main_curves, f"{stem}-rd.png", title=f"{title}: rate–distortion, test split")
    ablations = {n: r["rate_distortion"] for n, r in results.items() if r["model_type"] in ("pqvae", "global_rvq")}
    if ablations:
        plot_rate_distortion(ablations, f"{stem}-ablations-rd.png", title=f"{title}: PQ-VAE ablations")
    probes = {n: r["probe"] for n, r in results.items() if r["model_type"] in ("pqvae", "global_rvq")}
    if probes:
        plot_probe(probes, f"{stem}-probe.png", title=f"{title}: linear probe vs prefix length")


if __name__ == "__main__":
    main()
