"""Do the HQ-VAE paper's claims hold? VQ/SQ pairs trained side by side at equal architecture and budget.

For each dataset, each pair (vqvae/sqvae, vqvae2/sqvae2, rqvae/rsqvae) and each seed, both models
are trained with the same backbone, codebook sizes, optimiser (Adam, lr 1e-3, constant), batch
size and number of steps by the library's own training loop (``hqvae.train``), then evaluated on
the test split by ``hqvae.evaluate`` (SPEC §5). Test metrics are also recorded at several points
of each run (learning curves): the run is trained in segments, each resumed from the last
checkpoint, which reproduces an uninterrupted run bit for bit, and the test set is evaluated at
the end of every segment (intermediate points on an evenly spaced test subset, stated in the JSON).

Baselines get their standard heuristics (EMA decay 0.99, commitment 0.25, k-means init); SQ models
get the same kind of start (the registry's: codebook and s² from the first training batch) and no
other help. The Gumbel temperature τ = exp(−decay·step) takes the library's default decay for the
budget (``hqvae.train.schedules.default_temperature_decay``): up to 2,000 steps the official schedule
compressed so that τ ends where the official 100-epoch CIFAR-10 run ends (≈ 0.21), from 15,000 steps
the official decay 1e-5 per step.

    python benchmarks/claims.py                       # default CPU budget, all three datasets
    python benchmarks/claims.py --quick               # smoke run (minutes)
    python benchmarks/claims.py --budget 20000 --device cuda --label h100   # longer / GPU runs
    python benchmarks/claims.py --datasets fashion_mnist --seeds 0

Writes ``benchmarks/results/claims-<dataset>[-<label>].json`` (every metric per layer, bits, wall
time, img/s, the exact config and commit), and from it ``claims-<dataset>[-<label>].md`` and PNG plots.
Data: Fashion-MNIST (Debian package or download), CIFAR-10 (the JPEG q75 copy in
``$HQVAE_DATA_ROOT``, labelled as such) and FSDD log-mel spectrograms (``$HQVAE_DATA_ROOT/fsdd``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

import hqvae
from hqvae.data import load_dataset
from hqvae.evaluate import evaluate
from hqvae.io import atomic_write_bytes, atomic_write_json
from hqvae.models import model_config
from hqvae.train.config import TrainConfig, apply_overrides
from hqvae.train.checkpoint import holds_the_current_model, saved_model_config
from hqvae.train.tokenizer import recalibrate_run, train
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import git_commit, now
from hqvae.train.schedules import default_temperature_decay

PAIRS = (("vqvae", "sqvae"), ("vqvae2", "sqvae2"), ("rqvae", "rsqvae"))

DATASETS = {  # name -> (loader name, root relative to HQVAE_DATA_ROOT or None, label)
    "fashion_mnist": ("fashion_mnist", None, "Fashion-MNIST"),
    "cifar10": ("cifar10_folder", "cifar10-jpeg-q75.tar.gz", "CIFAR-10 (JPEG q75 copy)"),
    "fsdd": ("fsdd", "fsdd", "FSDD log-mel spectrograms (1×80×128)"),
}
# Steps per run at batch 32. The default CPU budget is sized from measured step times (one thread,
# all six models: Fashion-MNIST ≈ 0.9 s, CIFAR-10 ≈ 0.6 s, FSDD at hidden 64 ≈ 2.8 s) so that the
# three datasets, two seeds, take about two hours on 2 cores (two processes of one thread).
BUDGETS = {
    "default": {"fashion_mnist": 1500, "cifar10": 2000, "fsdd": 500},
    "quick": {"fashion_mnist": 60, "cifar10": 60, "fsdd": 30},
}
# Model overrides per dataset, the same for both models of a pair: FSDD trains at hidden 64 instead
# of the registry's 128 for inputs over 32 pixels (a 4× cheaper backbone, so that the spectrogram
# runs fit the CPU budget). (Until the SQ layers started from data, Fashion-MNIST's SQ layers took
# s² = 10, the public SQ-VAE setting; the earlier result files record it.)
SHARED_OVERRIDES = {"fsdd": {"hidden": 64}}


def model_overrides(dataset: str, model: str) -> dict:
    return dict(SHARED_OVERRIDES.get(dataset, {}))
CURVE_FRACTIONS = (0.1, 0.25, 0.5, 1.0)  # learning-curve points of the default budgets
LONG_BUDGET = 10_000  # from here on, a point every LONG_CURVE_EVERY steps (the self-annealing curves)
LONG_CURVE_EVERY = 1_500
CURVE_TEST_ITEMS = 2000  # intermediate learning-curve points use this many evenly spaced test items
CADENCE_KEYS = ("log_every", "checkpoint_every")  # train keys that set how often a run logs and saves, not what it learns
BUDGET_KEYS = ("steps",) + CADENCE_KEYS  # train keys that set the budget, not the trajectory


def curve_steps(steps: int) -> list[int]:
    """The steps at which a run of ``steps`` steps is evaluated (the last is ``steps``)."""
    if steps >= LONG_BUDGET:
        return list(range(LONG_CURVE_EVERY, steps, LONG_CURVE_EVERY)) + [steps]
    return sorted({max(1, round(steps * fraction)) for fraction in CURVE_FRACTIONS})


def data_base() -> str:
    return os.environ.get("HQVAE_DATA_ROOT") or str(Path(__file__).resolve().parents[2] / "shared" / "data")


def data_root(dataset: str) -> str | None:
    relative = DATASETS[dataset][1]
    return None if relative is None else str(Path(data_base()) / relative)


def portable(result: dict) -> dict:
    """``result`` as it is committed: paths under the data root written as ``$HQVAE_DATA_ROOT/...``
    and paths under the working directory (the repository root) relative to it, so that a result
    file names no folder of the machine that ran it."""
    text = json.dumps(result)
    for folder, name in ((data_base(), "$HQVAE_DATA_ROOT"), (os.getcwd(), ".")):
        for spelling in {folder.rstrip("/"), str(Path(folder).resolve())}:
            text = text.replace(json.dumps(spelling + "/")[1:-1], name + "/")
    return json.loads(text.replace('"./', '"'))


def run_config(dataset: str, model: str, steps: int, seed: int, device: str,
               settings: Sequence[str] = ()) -> TrainConfig:
    """The run's training config; ``settings`` are ``section.key=value`` overrides applied last
    (``--set``: the investigation of a missed target, e.g. ``temperature.decay=1e-5``)."""
    return TrainConfig.from_dict(apply_overrides(
        {
            "data": {"name": DATASETS[dataset][0], "root": data_root(dataset)},
            "model": {"name": model, "overrides": model_overrides(dataset, model)},
            "optim": {"name": "adam", "lr": 1e-3, "schedule": "constant"},
            "train": {
                "steps": steps,
                "batch_size": 32,
                "seed": seed,
                "device": device,
                "log_every": max(1, steps // 20),
                "val_every": 0,
                "checkpoint_every": steps,
            },
            "temperature": {"init": 1.0, "decay": default_temperature_decay(steps), "min": 0.0},
            "logging": {"progress": False},
        },
        settings,
    ))


def optimizer_text(optim) -> str:
    """E.g. "Adam lr 0.001 constant", "Adam lr 0.001 cosine to 0.0001"."""
    text = f"{optim.name.capitalize()} lr {optim.lr:g} {optim.schedule}"
    return f"{text} to {optim.min_lr:g}" if optim.schedule == "cosine" else text


def schedule_text(schedule) -> str:
    """τ(step) of a ``TemperatureConfig``, as a formula."""
    text = f"{schedule.init:g}·exp(−{schedule.decay:.3g}·step)"
    return f"max({text}, {schedule.min:g})" if schedule.min else text


def summary_of(result: dict) -> dict:
    """The numbers the claims are about, from one ``evaluate`` result."""
    layers = result["layers"]
    return {
        "rmse": result["reconstruction"]["rmse"],
        "psnr": result["reconstruction"]["psnr"],
        "ssim": result["reconstruction"].get("ssim"),
        "perplexity": [layer["perplexity"] for layer in layers],
        "usage": [layer["usage"] for layer in layers],
        "minibatch_perplexity": [layer["minibatch_perplexity"] for layer in layers],
        "least_used_layer_perplexity": min(layer["perplexity"] for layer in layers),
        "information_bits_per_item": [layer.get("information_bits_per_item") for layer in layers],
        "least_informative_layer_bits": min((layer["information_bits_per_item"] for layer in layers
                                             if "information_bits_per_item" in layer), default=None),
        "bits_per_item": result["rate"]["bits_per_item"],
        "coarse_to_fine_rmse": [point["rmse"] for point in result.get("coarse_to_fine", [])],
    }


def train_and_evaluate(dataset: str, model: str, steps: int, seed: int, device: str, runs: Path, test_set,
                       settings: Sequence[str] = (), extend_from: Path | None = None) -> dict:
    """One run in segments; returns its record (config, curve, final evaluation, timings).

    The record is also kept in the run folder, so an interrupted benchmark resumes where it stopped
    (a finished run with the same configuration is not trained again; an unfinished one continues
    from its last finished segment, whose curve ``claims-progress.json`` keeps). With ``extend_from`` (a runs
    folder of an earlier invocation), a shorter finished run of the same trajectory there is copied
    and continued: its curve is kept, its last point re-evaluated on the curve subset."""
    out = runs / dataset / f"{model}-seed{seed}"
    record_path = out / "claims-record.json"
    config = run_config(dataset, model, steps, seed, device, settings)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if same_run(out, record.get("config") or {}, config):
            print(f"  {dataset} {model} seed {seed}: finished earlier, reusing {record_path}", flush=True)
            if not recalibrated_as_configured(record, config):
                record = recalibrate_record(record, out, config, device, test_set)
                atomic_write_json(record_path, record)
            return record
    curve_set = test_set.evenly_spaced(CURVE_TEST_ITEMS)
    curve, train_seconds, resume = [], 0.0, False
    progress_path = out / "claims-progress.json"
    if progress_path.is_file():  # an interrupted run: its curve so far, and its last checkpoint to resume from
        progress = json.loads(progress_path.read_text())
        if same_run(out, progress["config"], config):
            print(f"  {dataset} {model} seed {seed}: resuming after step {progress['curve'][-1]['step']}", flush=True)
            curve, train_seconds, resume = progress["curve"], progress["train_wall_time_s"], True
    shorter = shorter_run(extend_from / dataset / out.name, config) if extend_from and not curve else None
    if shorter is not None:  # continue a shorter run of the same trajectory instead of starting over
        print(f"  {dataset} {model} seed {seed}: continuing the {shorter['steps']}-step run of {extend_from}", flush=True)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(extend_from / dataset / out.name, out)
        curve, train_seconds, resume = shorter["curve"][:-1], shorter["train_wall_time_s"], True
        curve.append({**shorter["curve"][-1], "test_items": len(curve_set), **summary_of(
            evaluate(RunDir(out).load_model("last", device=device), curve_set, batch_size=256))})
    result = None
    for target in curve_steps(steps):
        if curve and target <= curve[-1]["step"]:
            continue
        config.train.steps = target
        start = time.perf_counter()
        train(config, out, resume=resume, force=not resume)
        train_seconds += time.perf_counter() - start
        resume = True
        model_now = RunDir(out).load_model("last", device=device)
        final = target == steps
        result = evaluate(model_now, test_set if final else curve_set, batch_size=256)
        curve.append({"step": config.train.steps, "test_items": result["data"]["items"], **summary_of(result)})
        print(f"  {dataset} {model} seed {seed} step {config.train.steps}: rmse {curve[-1]['rmse']:.4f} "
              f"perplexity {['%.1f' % p for p in curve[-1]['perplexity']]}", flush=True)
        atomic_write_json(progress_path, {"config": run_config(dataset, model, steps, seed, device, settings).to_dict(),
                                          "curve": curve, "train_wall_time_s": train_seconds})
    if result is None:  # interrupted between its last segment and writing its record
        result = evaluate(RunDir(out).load_model("last", device=device), test_set, batch_size=256)
    train_records = list(RunDir(out).read_metrics("train"))
    speeds = [r["img_per_s"] for r in train_records if r.get("img_per_s")]
    record = {
        "model": model,
        "seed": seed,
        "steps": steps,
        "config": run_config(dataset, model, steps, seed, device, settings).to_dict(),
        "train_wall_time_s": train_seconds,
        "train_img_per_s_median": sorted(speeds)[len(speeds) // 2] if speeds else None,
        "curve": curve,
        "final": result,
        "summary": curve[-1],
        "batchnorm_recalibration": RunDir(out).read_info().batchnorm_recalibration,
        "run_dir": str(out),
    }
    atomic_write_json(record_path, record)
    return record


def recalibrated_as_configured(record: dict, config: TrainConfig) -> bool:
    """Whether a run's record (or a result file's) has the BatchNorm recalibration its config asks for
    at its last step: a record from before ``train.recalibrate_batchnorm`` reads back with the new
    default, which its checkpoint never had."""
    done = record.get("batchnorm_recalibration")
    return not config.train.recalibrate_batchnorm or (done is not None and done["step"] == record["steps"])


def recalibrate_record(record: dict, out: Path, config: TrainConfig, device: str, test_set) -> dict:
    """A finished run trained before the recalibration: give its checkpoint the last step the trainer
    now ends with (``hqvae.train.tokenizer.recalibrate_run``, the same checkpoint a new run writes)
    and evaluate it again; the curve's earlier points stay as they were measured, as trained."""
    print(f"  {record['model']} seed {record['seed']}: trained before train.recalibrate_batchnorm, "
          f"recalibrating its last checkpoint", flush=True)
    info = recalibrate_run(out, device=device)
    result = evaluate(RunDir(out).load_model("last", device=device), test_set, batch_size=256)
    last = {**record["curve"][-1], "test_items": result["data"]["items"], **summary_of(result)}
    return {**record, "config": config.to_dict(), "final": result, "summary": last,
            "curve": [*record["curve"][:-1], last], "batchnorm_recalibration": info.batchnorm_recalibration,
            "run_dir": str(out),
            "recalibrated_after_training": "checkpoints/last recalibrated after training; the curve's "
                                           "earlier points were measured as trained"}


def same_config(a: dict, b: dict, ignore: Sequence[str] = (), budget: bool = True,
                train_defaults: dict | None = None) -> bool:
    """Both through ``TrainConfig.from_dict`` (so that keys added to the config since match at their
    defaults) and ``with_model_defaults(train_defaults)`` (so that a key left null for the model to
    fill matches the value it fills: a record from before ``optim.codebook_lr_scale`` trained its
    codebooks at 1×, which a model without that default fills in); the sections in ``ignore`` are
    not compared, nor how often a run logs and saves (:data:`CADENCE_KEYS`), nor (``budget=False``)
    how long it goes (:data:`BUDGET_KEYS`)."""
    a, b = (TrainConfig.from_dict(c).with_model_defaults(train_defaults or {}).to_dict() for c in (a, b))
    skipped = BUDGET_KEYS if not budget else CADENCE_KEYS
    for config in (a, b):
        config["train"] = {k: v for k, v in config["train"].items() if k not in skipped}
    return json.dumps({k: v for k, v in a.items() if k not in ignore}) == json.dumps(
        {k: v for k, v in b.items() if k not in ignore})


def same_run(run: Path, trained: dict, config: TrainConfig, budget: bool = True) -> bool:
    """Whether the run in folder ``run``, trained with config dict ``trained``, is the one ``config``
    asks for: the same model (:func:`builds_the_same_model`) and the same config once the model's
    training defaults fill the keys either leaves null."""
    return builds_the_same_model(run, config) and same_config(
        trained, config.to_dict(), budget=budget, train_defaults=saved_model_config(RunDir(run))["train_defaults"])


def shorter_run(run: Path, config: TrainConfig) -> dict | None:
    """The record of a finished run in ``run`` that ``config`` continues: the same trajectory (every
    setting but the budget, the same model) and fewer steps; None if there is none. Valid only where
    nothing depends on the budget: a constant lr (a cosine's lr depends on the total), which this
    checks, and a τ schedule not compressed to the budget, which comparing the configs checks."""
    path = run / "claims-record.json"
    if config.optim.schedule != "constant" or not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record["steps"] < config.train.steps and same_run(run, record["config"], config, budget=False):
        return record
    return None


def registry_train_defaults(model: str) -> dict:
    """The registry's ``train_defaults`` of ``model`` today (set per entry, whatever the input)."""
    return model_config(model, 1, (32, 32)).train_defaults


def builds_the_same_model(run: Path, config: TrainConfig) -> bool:
    """Whether the run's saved model is the one the registry builds for ``config`` now (a changed
    registry default, which the training config does not show, retrains the run)."""
    return holds_the_current_model(RunDir(run), config.model.name, config.model.overrides)


def earlier_baseline(path: Path, dataset: str, model: str, steps: int, seed: int, device: str,
                     settings: Sequence[str]) -> dict | None:
    """A deterministic baseline's record from an earlier result file (``--baselines-from``), when
    that run had exactly this configuration. Its per-layer information is filled in from the stored
    histogram: a VQ layer's posterior is a point mass, so I(x; k) = H(p), exactly (SPEC §5)."""
    for record in json.loads(path.read_text())["runs"]:
        if (record["model"], record["seed"]) != (model, seed):
            continue
        # a VQ baseline never reads the Gumbel temperature, so a temperature-only setting keeps it;
        # a committed record names the data root as $HQVAE_DATA_ROOT (``portable``)
        if not same_config(record["config"], portable(run_config(dataset, model, steps, seed, device, settings).to_dict()),
                           ignore=("temperature",), train_defaults=registry_train_defaults(model)):
            return None
        if any(layer["quantizer"] != "vq" for layer in record["final"]["layers"]):
            return None
        if not recalibrated_as_configured(record, run_config(dataset, model, steps, seed, device, settings)):
            return None
        for layer in record["final"]["layers"]:
            layer.setdefault("marginal_entropy_bits", layer["entropy_bits"])
            layer.setdefault("conditional_entropy_bits", 0.0)
            layer.setdefault("information_bits", layer["entropy_bits"])
            layer.setdefault("information_bits_per_item", layer["entropy_bits"] * layer["positions"])
        record["summary"].update({key: value for key, value in summary_of(record["final"]).items()
                                  if key not in record["summary"] or "information" in key})
        record["reused_from"] = str(path)
        return record
    return None


def kept_records(path: Path, dataset: str, pairs: Sequence[tuple[str, str]], steps: int, seeds: Sequence[int],
                 device: str, settings: Sequence[str]) -> list[dict]:
    """The records of the pairs *not* in ``pairs`` from an earlier result file (``--keep-from``): a
    re-run of the pairs a change touches, written into one file with the runs it leaves as they
    were. Each kept record must have this budget's training config (else a ValueError: re-run it);
    that its model and its training defaults are unchanged is the caller's claim (the records do not
    store the built model)."""
    earlier = json.loads(path.read_text())
    kept = []
    for record in earlier["runs"]:
        if any(record["model"] in pair for pair in pairs) or record["seed"] not in seeds:
            continue
        expected = portable(run_config(dataset, record["model"], steps, record["seed"], device, settings).to_dict())
        if not same_config(record["config"], expected, train_defaults=registry_train_defaults(record["model"])) \
                or not recalibrated_as_configured(
                record, run_config(dataset, record["model"], steps, record["seed"], device, settings)):
            raise ValueError(f"--keep-from {path}: the {record['model']} seed {record['seed']} run has another "
                             f"training config than this invocation's; re-run its pair instead of keeping it")
        # a record kept before keeps where it was first kept from: the command that trained it
        origin = record.get("kept_from") or f"{path} ({earlier['command']}, commit {earlier['commit']})"
        kept.append({**record, "kept_from": origin})
    return kept


def verdicts(records: list[dict]) -> list[dict]:
    """Per pair and seed: does SQ beat VQ on the least-used layer's perplexity and on test RMSE;
    is rsqvae's coarse-to-fine error monotone."""
    by_key = {(r["model"], r["seed"]): r for r in records}
    rows = []
    for vq, sq in PAIRS:
        for seed in sorted({r["seed"] for r in records}):
            if (vq, seed) not in by_key or (sq, seed) not in by_key:
                continue
            a, b = by_key[(vq, seed)]["summary"], by_key[(sq, seed)]["summary"]
            curve_vq, curve_sq = by_key[(vq, seed)]["curve"], by_key[(sq, seed)]["curve"]
            row = {
                "pair": f"{vq}/{sq}",
                "seed": seed,
                "least_used_perplexity": {vq: a["least_used_layer_perplexity"], sq: b["least_used_layer_perplexity"]},
                "rmse": {vq: a["rmse"], sq: b["rmse"]},
                "sq_wins_least_used_perplexity": b["least_used_layer_perplexity"] > a["least_used_layer_perplexity"],
                "least_informative_bits": {vq: a.get("least_informative_layer_bits"),
                                           sq: b.get("least_informative_layer_bits")},
                "sq_wins_least_informative_bits": (None if b.get("least_informative_layer_bits") is None else
                                                   b["least_informative_layer_bits"] > a["least_informative_layer_bits"]),
                "sq_wins_rmse": b["rmse"] < a["rmse"],
                "rmse_order_by_step": [
                    {"step": p["step"], "sq_better": sq_at[p["step"]]["rmse"] < p["rmse"]}
                    for p in curve_vq if p["step"] in (sq_at := {q["step"]: q for q in curve_sq})
                ],
            }
            if sq == "rsqvae":
                errors = b["coarse_to_fine_rmse"]
                row["rsqvae_coarse_to_fine_rmse"] = errors
                row["rsqvae_coarse_to_fine_monotone"] = all(x > y for x, y in zip(errors, errors[1:]))
            rows.append(row)
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"# Claims benchmark — {result['dataset_label']}",
        "",
        f"{result['budget']['steps']} steps of batch {result['budget']['batch_size']} per run, seeds "
        f"{result['seeds']}, {result['device']}; test split ({result['test_items']} items). "
        f"Command: `{result['command']}`. Commit `{result['commit']}`."
        + (f" Settings changed for this investigation: `{' '.join(result['settings'])}`." if result.get("settings") else "")
        + (f" Training time of all runs: {result['train_wall_time_s_total'] / 60:.0f} min."
           if "train_wall_time_s_total" in result else ""),
        "",
        "| model | seed | RMSE | PSNR | SSIM | information per layer, bits/item | perplexity per layer | "
        "usage per layer | train img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        s = r["summary"]
        bits = s.get("information_bits_per_item") or []
        lines.append(
            f"| {r['model']} | {r['seed']} | {s['rmse']:.4f} | {s['psnr']:.2f} | "
            f"{s['ssim']:.4f} | {' / '.join('%.0f' % b if b is not None else '–' for b in bits) or '–'} | "
            f"{' / '.join('%.1f' % p for p in s['perplexity'])} | "
            f"{' / '.join('%.2f' % u for u in s['usage'])} | {r['train_img_per_s_median'] or float('nan'):.0f} |"
        )
    lines += ["", "| pair | seed | SQ wins least-informative-layer bits | SQ wins least-used-layer perplexity | "
              "SQ wins RMSE | SQ better RMSE by step | rsqvae coarse-to-fine monotone |",
              "|---|---|---|---|---|---|---|"]
    for v in result["verdicts"]:
        order = ", ".join(f"{o['step']}:{'SQ' if o['sq_better'] else 'VQ'}" for o in v["rmse_order_by_step"])
        lines.append(f"| {v['pair']} | {v['seed']} | {v.get('sq_wins_least_informative_bits', '–')} | "
                     f"{v['sq_wins_least_used_perplexity']} | {v['sq_wins_rmse']} | "
                     f"{order} | {v.get('rsqvae_coarse_to_fine_monotone', '')} |")
    return "\n".join(lines) + "\n"


def line_style(model: str) -> dict:
    """One colour per pair; VQ dashed with squares, SQ solid with circles."""
    pair = next(i for i, names in enumerate(PAIRS) if model in names)
    vq = model == PAIRS[pair][0]
    return {"color": f"C{pair}", "linestyle": "--" if vq else "-", "marker": "s" if vq else "o"}


def plots(result: dict, stem: Path) -> list[str]:
    """Per-layer perplexity bars, RMSE vs bits, and learning curves, as PNGs beside the JSON."""
    from matplotlib.figure import Figure

    from hqvae.report.plots import save_figure

    files = []
    runs = [r for r in result["runs"] if r["seed"] == result["seeds"][0]]
    fig = Figure(figsize=(9, 3.5))
    ax = fig.add_subplot()
    labels, values = [], []
    for r in runs:
        for layer, p in enumerate(r["summary"]["perplexity"]):
            labels.append(f"{r['model']}\nL{layer}")
            values.append(p)
    ax.bar(range(len(values)), values, color=["tab:red" if l.startswith(("vq", "rq")) else "tab:blue" for l in labels])
    ax.set_xticks(range(len(values)), labels, fontsize=6)
    ax.set_ylabel("test perplexity (dataset-level)")
    ax.set_title(f"{result['dataset_label']}: codebook perplexity per layer (red VQ, blue SQ)")
    fig.tight_layout()
    files.append(save_figure(fig, stem.with_name(stem.name + "-perplexity.png")).name)

    fig = Figure(figsize=(5, 4))
    ax = fig.add_subplot()
    for r in runs:
        points = r["final"].get("coarse_to_fine") or [{"bits_per_item": r["summary"]["bits_per_item"], "rmse": r["summary"]["rmse"]}]
        ax.plot([p["bits_per_item"] for p in points], [p["rmse"] for p in points], label=r["model"], **line_style(r["model"]))
    ax.set_xlabel("bits per item")
    ax.set_ylabel("test RMSE")
    ax.set_title("RMSE vs bits (coarse to fine)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(save_figure(fig, stem.with_name(stem.name + "-rmse-vs-bits.png")).name)

    fig = Figure(figsize=(9, 3.5))
    for i, key in enumerate(("rmse", "least_used_layer_perplexity")):
        ax = fig.add_subplot(1, 2, i + 1)
        for r in runs:
            ax.plot([c["step"] for c in r["curve"]], [c[key] for c in r["curve"]], label=r["model"],
                    **line_style(r["model"]))
        ax.set_xlabel("step")
        ax.set_ylabel(f"test {key.replace('_', ' ')}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(save_figure(fig, stem.with_name(stem.name + "-curves.png")).name)
    return files


def self_annealing(result: dict, stem: Path) -> list[str]:
    """Per SQ model of the first seed: s², posterior entropy (training batches) and codes in use
    (test curve points) per layer over training, the VQ partner's use dashed; one PNG."""
    from matplotlib.figure import Figure

    from hqvae.report.plots import save_figure

    by_model = {r["model"]: r for r in result["runs"] if r["seed"] == result["seeds"][0]}
    shown = [(vq, sq) for vq, sq in PAIRS if sq in by_model and by_model[sq].get("trace", {}).get("records")]
    if not shown:
        return []
    fig = Figure(figsize=(11, 3.2 * len(shown)))
    for row, (vq, sq) in enumerate(shown):
        trace = by_model[sq]["trace"]["records"]
        steps = [t["step"] for t in trace]
        panels = [fig.add_subplot(len(shown), 3, 3 * row + i + 1) for i in range(3)]
        for layer in sorted(trace[-1].get("variance", {}), key=int):
            panels[0].plot(steps, [t["variance"][layer] for t in trace], color=f"C{layer}", label=f"layer {layer}")
            panels[1].plot(steps, [t["entropy"][layer] for t in trace], color=f"C{layer}")
        for model, style in ((sq, "-o"), (vq, "--s")):
            curve = by_model.get(model, {}).get("curve", [])
            for layer in range(len(curve[0]["usage"]) if curve else 0):
                panels[2].plot([c["step"] for c in curve], [c["usage"][layer] for c in curve], style, markersize=3,
                               color=f"C{layer}", label=model if layer == 0 else None)
        for panel, label in zip(panels, ("s² (training)", "posterior entropy, nats (training)", "codes in use (test)")):
            panel.set_title(f"{sq}: {label}", fontsize=9)
            panel.set_xlabel("step", fontsize=8)
        panels[0].legend(fontsize=7)
        panels[2].legend(fontsize=7)
        panels[2].set_ylim(0, 1)
    fig.suptitle(f"{result['dataset_label']}: self-annealing of the SQ layers", fontsize=10)
    fig.tight_layout()
    return [save_figure(fig, stem.with_name(stem.name + "-self-annealing.png")).name]


def strips(result: dict, stem: Path, test_set, items: int = 4) -> list[str]:
    """Coarse-to-fine strips: the first ``items`` test items decoded from the first m layers, for
    every multi-layer model of the first seed (loaded from its run folder)."""
    from hqvae.report.plots import coarse_to_fine_strip

    files = []
    x, _ = test_set.get_batch(torch.arange(items))
    for r in result["runs"]:
        if r["seed"] != result["seeds"][0] or len(r["summary"]["perplexity"]) < 2:
            continue
        path = stem.with_name(f"{stem.name}-strip-{r['model']}.png")
        if not Path(r["run_dir"]).is_dir():  # a baseline reused from an earlier file: keep its strip
            files += [path.name] if path.is_file() else []
            continue
        model = RunDir(r["run_dir"]).load_model("last")
        with torch.no_grad():
            progressive = [p.clamp(0, 1) for p in model.decode_progressive(model.encode(x))]
        coarse_to_fine_strip(x, progressive, path, spectrogram="log_mel" in test_set.meta)
        files.append(path.name)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--pairs", nargs="+", default=[f"{a}/{b}" for a, b in PAIRS])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="smoke-run budget")
    budget.add_argument("--budget", type=int, help="steps per run (every dataset)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--label", default=None, help="suffix of the result files, e.g. the GPU name")
    parser.add_argument("--runs", default="runs/claims", help="where the run folders go")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--set", dest="settings", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="training-config overrides for every run, e.g. temperature.decay=1e-5 "
                             "model.overrides.init_variance=1 (use with --label and --runs)")
    parser.add_argument("--baselines-from", metavar="JSON",
                        help="reuse the VQ runs of an earlier result file with exactly the same configuration "
                             "(e.g. benchmarks/results/claims-{dataset}.json, a copy kept before re-running), "
                             "instead of training them again; their information per layer is their histogram entropy")
    parser.add_argument("--keep-from", metavar="JSON",
                        help="write the result with the other pairs' runs of an earlier result file (e.g. "
                             "benchmarks/results/claims-{dataset}.json, a copy kept before re-running) kept as they "
                             "were: re-run only the --pairs a change of defaults touches")
    parser.add_argument("--extend-from", metavar="RUNS", type=Path,
                        help="a runs folder of an earlier invocation: continue its shorter runs of the same "
                             "trajectory (e.g. the 15,000-step runs, to 30,000 steps) instead of starting over")
    parser.add_argument("--train-only", nargs="+", metavar="MODEL",
                        help="only train (or resume) these models' runs of the chosen pairs and seeds, and write "
                             "no result file; e.g. two processes, --train-only vqvae2 and --train-only sqvae2, "
                             "train a pair in parallel, then the same command without it reuses their finished "
                             "runs and writes the result")
    parser.add_argument("--summary", nargs="+", metavar="JSON",
                        help="only print one Markdown table summarising these result files")
    parser.add_argument("--render", action="store_true",
                        help="only rewrite the Markdown and figures from the JSON (and the run folders)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.summary:
        print(summary_table([json.loads(Path(path).read_text()) for path in args.summary]), end="")
        return

    commit = git_commit()  # the code these runs import (later commits may land while they train)
    pairs = [tuple(p.split("/")) for p in args.pairs]
    paired = {model for pair in pairs for model in pair}
    if args.train_only and not set(args.train_only) <= paired:
        parser.error(f"--train-only {sorted(set(args.train_only) - paired)}: not in --pairs {args.pairs}; "
                     f"choose from {sorted(paired)}")
    suffix = f"-{args.label}" if args.label else ("-quick" if args.quick else "")
    device_label = (torch.cuda.get_device_name() if args.device.startswith("cuda") else
                    f"CPU, {torch.get_num_threads()} threads ({platform.machine()})")
    for dataset in args.datasets:
        steps = args.budget or BUDGETS["quick" if args.quick else "default"][dataset]
        test_set = load_dataset(DATASETS[dataset][0], "test", root=data_root(dataset))
        stem = Path(args.out) / f"claims-{dataset}{suffix}"
        if args.render:
            write_outputs(json.loads(stem.with_name(stem.name + ".json").read_text()), stem, test_set)
            continue
        records = []
        started = time.perf_counter()
        for vq, sq in pairs:
            for seed in args.seeds:
                for model in (vq, sq):
                    earlier = (earlier_baseline(Path(args.baselines_from.format(dataset=dataset)), dataset, model,
                                                steps, seed, args.device, args.settings)
                               if args.baselines_from and model == vq else None)
                    if earlier is not None:
                        print(f"  {dataset} {model} seed {seed}: reusing the baseline of {earlier['reused_from']}")
                    elif args.train_only and model not in args.train_only:
                        continue
                    records.append(earlier or train_and_evaluate(dataset, model, steps, seed, args.device,
                                                                 Path(args.runs), test_set, args.settings,
                                                                 args.extend_from))
        if args.train_only:
            continue
        if args.keep_from:
            records += kept_records(Path(args.keep_from.format(dataset=dataset)), dataset, pairs, steps, args.seeds,
                                    args.device, args.settings)
            order = [model for pair in PAIRS for model in pair]
            records.sort(key=lambda r: (order.index(r["model"]) // 2, r["seed"], order.index(r["model"])))
        first = run_config(dataset, pairs[0][1], steps, 0, args.device, args.settings)
        result = {
            "benchmark": "HQ-VAE claims: VQ vs SQ at equal architecture and budget",
            "dataset": dataset,
            "dataset_label": DATASETS[dataset][2],
            "test_items": len(test_set),
            "test_description": test_set.description,
            "budget": {"steps": steps, "batch_size": 32, "optimizer": optimizer_text(first.optim),
                       "temperature": schedule_text(first.temperature),
                       "curve_steps": curve_steps(steps), "curve_test_items": CURVE_TEST_ITEMS},
            "seeds": args.seeds,
            "settings": args.settings,
            "device": device_label,
            "torch": torch.__version__,
            "hqvae": hqvae.__version__,
            "commit": commit,
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "date": now(),
            "wall_time_s": time.perf_counter() - started,  # this invocation; runs reused from their folders cost ~0
            "train_wall_time_s_total": sum(r["train_wall_time_s"] for r in records),
            "runs": records,
            "verdicts": verdicts(records),
        }
        write_outputs(result, stem, test_set)
        print(markdown(result), flush=True)


def summary_table(results: list[dict]) -> str:
    """One Markdown row per dataset and pair: test RMSE and least-used-layer perplexity of each
    model (mean over seeds), and on how many seeds SQ wins each."""
    lines = ["| data | steps | settings | pair | RMSE VQ / SQ | least-informative layer bits VQ / SQ | "
             "least-used perplexity VQ / SQ | SQ wins bits | SQ wins RMSE |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        for vq, sq in PAIRS:
            rows = [v for v in result["verdicts"] if v["pair"] == f"{vq}/{sq}"]
            if not rows:
                continue

            def mean(key, model):
                values = [v[key][model] for v in rows if v.get(key, {}).get(model) is not None]
                return sum(values) / len(values) if values else float("nan")

            bits_known = [v for v in rows if v.get("sq_wins_least_informative_bits") is not None]
            lines.append(
                f"| {result['dataset_label']} | {result['budget']['steps']} | "
                f"{' '.join(result.get('settings') or []) or 'default'} | {vq}/{sq} | "
                f"{mean('rmse', vq):.4f} / {mean('rmse', sq):.4f} | "
                f"{mean('least_informative_bits', vq):.0f} / {mean('least_informative_bits', sq):.0f} | "
                f"{mean('least_used_perplexity', vq):.1f} / {mean('least_used_perplexity', sq):.1f} | "
                + (f"{sum(v['sq_wins_least_informative_bits'] for v in bits_known)}/{len(bits_known)} | "
                   if bits_known else "– | ")
                + f"{sum(v['sq_wins_rmse'] for v in rows)}/{len(rows)} |")
    return "\n".join(lines) + "\n"


def training_trace(run: RunDir) -> dict:
    """Per train record: step, τ, s², posterior entropy (nats), discrete and continuous term and
    batch perplexity of each layer, the reconstruction term and the training MSE (of the relaxed
    sample's x̂)."""
    trace = []
    for record in run.read_metrics("train"):
        terms, logs = record.get("terms", {}), record.get("logs", {})
        entry = {"step": record["step"], "temperature": record.get("temperature"), "recon": terms.get("recon"),
                 "mse": terms.get("mse")}
        for source, prefix, name in ((logs, "variance/", "variance"), (terms, "discrete/", "discrete"),
                                     (terms, "continuous/", "continuous"), (logs, "entropy/", "entropy"),
                                     (logs, "perplexity/", "perplexity")):
            for key, value in source.items():
                if key.startswith(prefix):
                    entry.setdefault(name, {})[key[len(prefix):]] = value
        trace.append(entry)
    return {"records": trace}


def write_outputs(result: dict, stem: Path, test_set) -> None:
    """The figures, then ``<stem>.json`` and ``<stem>.md``; each run's training trace
    (:func:`training_trace`) is added from its run folder where the record has none."""
    for record in result["runs"]:
        if "trace" not in record and record.get("run_dir") and RunDir(record["run_dir"]).exists():
            record["trace"] = training_trace(RunDir(record["run_dir"]))
    result["figures"] = plots(result, stem) + self_annealing(result, stem) + strips(result, stem, test_set)
    result = portable(result)
    atomic_write_json(stem.with_name(stem.name + ".json"), result)
    atomic_write_bytes(stem.with_name(stem.name + ".md"), markdown(result).encode())


if __name__ == "__main__":
    main()
