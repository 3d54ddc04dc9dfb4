"""Flat or depth prior for a residual stack: which reaches the lower test NLL for its training time?

For each tokenizer run (``--runs``, e.g. an rsqvae run of benchmarks/priors.py), trains two priors
with the same settings (those of benchmarks/priors.py) at the same time, one process each, so
that both see the same machine load:

    flat    model.kind=flat:  one causal sequence over all P·D tokens (layer after layer)
    depth   model.kind=depth: a spatial transformer over the P positions and a one-block depth
            transformer over the D codes of each position (RQ-Transformer style)

then ``hqvae prior eval`` on the whole test split. Writes
benchmarks/results/prior-kinds-<dataset>.json: test NLL, training time, tokens per second and
bits saved against the uniform rate per second of training. A prior folder already finished
under --work is reused.

    python benchmarks/prior_kinds.py --runs runs/priors-fashion_mnist/tokenizers/rsqvae --prior-steps 400
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from priors import PRIOR_SETTINGS, finished  # noqa: E402  (the settings of benchmarks/priors.py)

KINDS = ("flat", "depth")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="tokenizer runs whose layers share one grid")
    parser.add_argument("--prior-steps", type=int, default=400)
    parser.add_argument("--dataset", default="fashion_mnist", help="name used in the results file")
    parser.add_argument("--work", type=Path, help="prior folders (default runs/prior-kinds-<dataset>)")
    args = parser.parse_args()
    work = (args.work or REPO / "runs" / f"prior-kinds-{args.dataset}").resolve()
    settings = [*PRIOR_SETTINGS, f"train.steps={args.prior_steps}", f"train.val_every={args.prior_steps}",
                f"train.checkpoint_every={args.prior_steps}", "train.device=cpu"]
    results = {"benchmark": "prior_kinds", "command": "python " + shlex.join(["benchmarks/prior_kinds.py", *sys.argv[1:]]),
               "settings": settings, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "load_average_at_start": os.getloadavg()[0], "runs": []}
    for run in args.runs:
        run = run.resolve()
        folders = {kind: work / run.name / kind for kind in KINDS}
        commands = {kind: [sys.executable, "-m", "hqvae", "prior", "train", "--run", str(run), "--out", str(folder),
                           "--force", *settings, f"model.kind={kind}"] for kind, folder in folders.items()}
        pending = {kind: subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for kind, command in commands.items() if not finished(folders[kind], args.prior_steps)}
        for kind, process in pending.items():  # both at once: the same machine load for both
            output, _ = process.communicate()
            if process.returncode:
                raise RuntimeError(f"prior train ({kind}) failed:\n{output[-3000:]}")
        entry = {"run": str(run), "priors": {}}
        for kind, folder in folders.items():
            subprocess.run([sys.executable, "-m", "hqvae", "prior", "eval", "--prior", str(folder)], cwd=REPO, check=True,
                           capture_output=True)
            info = json.loads((folder / "run.json").read_text())
            test = json.loads((folder / "eval" / "test.json").read_text())
            seconds = info["wall_time_s"]
            entry["priors"][kind] = {
                "command": "hqvae " + shlex.join(commands[kind][3:]), "reused": kind not in pending,
                "parameters": info["parameters"], "steps": info["steps"], "training_s": seconds,
                "test_nll_bits_per_item": test["nll_bits_per_item"],
                "test_nll_bits_per_layer": [layer["nll_bits"] for layer in test["layers"]],
                "uniform_bits_per_item": test["uniform_bits_per_item"],
                "histogram_bits_per_item": test["histogram_bits_per_item"],
                "bits_saved_vs_uniform_per_training_s": (test["uniform_bits_per_item"] - test["nll_bits_per_item"]) / seconds,
            }
        priors = entry["priors"]
        entry["better"] = min(KINDS, key=lambda kind: (priors[kind]["test_nll_bits_per_item"], priors[kind]["training_s"]))
        results["runs"].append(entry)
        print(json.dumps(entry, indent=1))
    results["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    sys.path.insert(0, str(REPO))
    from hqvae.io import atomic_write_json

    atomic_write_json(REPO / "benchmarks" / "results" / f"prior-kinds-{args.dataset}.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
