"""Compare runs in one report: report.html and report.md with tables and figures, plus report.json.

    hqvae report --run runs/<a> runs/<b> ... --out report/ [--split test] [--checkpoint best|last]
                 [--title TEXT] [--batch-size 256] [--limit N] [--data-root PATH] [--device cpu]

Each run's results are read from its default results file (runs/<name>/eval/results.json for
the test split and best checkpoint; see `hqvae eval`).  A run without one is evaluated now, with
the results and figures written into report/<name>/ (the run folder is left untouched).
Training curves come from each run's metrics.jsonl.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hqvae.cli.parsing import add_common
from hqvae.io import read_json
from hqvae.report.build import ReportRun, build_report, folder_name, unique_names
from hqvae.runs import default_results_path, evaluate_run
from hqvae.train.run_dir import RunDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    now = "for runs evaluated now"
    add_common(parser, "run_dir", "split", "checkpoint", "batch_size", "limit", "data_root", "device",
               run_dir={"dest": "run_dirs", "nargs": "+", "help": "run folders to compare"},
               batch_size={"help": now}, limit={"help": f"{now}: the first N items only"},
               data_root={"help": f"{now}: where the data set is"})
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--title", default="hqvae report")


def _read_results(path: Path) -> dict:
    fix = "delete it and run `hqvae eval` again"
    results = read_json(path, fix)
    if not isinstance(results, dict) or not str(results.get("schema", "")).startswith("hqvae.eval/"):
        raise ValueError(f"{path} is not an hqvae eval results file (no 'schema': 'hqvae.eval/...'); {fix}")
    return results


def collect(args: argparse.Namespace) -> list[ReportRun]:
    """Results (read or computed now) and training records of every run."""
    runs = []
    names = unique_names([Path(path).resolve().name for path in args.run_dirs])
    for path, name in zip(args.run_dirs, names):
        run_dir = RunDir(path)
        run_dir.read_info()  # a clear error for a folder that is not a run
        results_path = default_results_path(path, args.split, args.checkpoint)
        if results_path.is_file():
            results = _read_results(results_path)
        else:
            print(f"{results_path} not found: evaluating {path} now")
            results, results_path = evaluate_run(
                path, args.split, args.checkpoint, out=str(Path(args.out) / folder_name(name) / "results.json"),
                batch_size=args.batch_size, limit=args.limit, data_root=args.data_root, device=args.device)
        runs.append(ReportRun(name, results, results_path.parent, list(run_dir.read_metrics())))
    return runs


def run(args: argparse.Namespace) -> int:
    paths = build_report(collect(args), args.out, args.title)
    print(f"wrote {paths['html']} and {paths['markdown']} ({paths['json']})")
    return 0
