"""BatchNorm statistics recomputed on argmax decodes (issue 18: where the SQ models' test gap sits).

A trained model's BatchNorm running statistics are averages over training forwards; an SQ model's
training forward decodes relaxed samples, its evaluation argmax codes (``hqvae.models.batchnorm``).
This loads each run's checkpoint, evaluates it on the test split as trained, recomputes every
BatchNorm layer's statistics with ``hqvae.models.recalibrate_batchnorm`` on ``--batches`` random
training batches (seeded, the run's training data; no label, no test item), and evaluates again.
No trained parameter changes; the codes change only where a BatchNorm layer sits before a
quantizer (the encoder's, a hierarchical model's merge of the coarser decode), so the information
per layer is measured again. Both models of a pair get the same treatment: a VQ model decodes its
argmax code in training too, so its change is only the running average's lag.

    python benchmarks/bn_recalibration.py --runs RUN [RUN ...] --batches 100 --threads 1 \\
        --out benchmarks/results/bn-recalibration-<name>.json
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import portable  # noqa: E402
from decoder_refit import summary  # noqa: E402

from hqvae.evaluate import evaluate  # noqa: E402
from hqvae.io import atomic_write_json  # noqa: E402
from hqvae.models import recalibrate_batchnorm  # noqa: E402
from hqvae.runs import load_run_data, open_run  # noqa: E402
from hqvae.train.performance import channels_last, channels_last_batch  # noqa: E402
from hqvae.train.run_info import git_commit, now  # noqa: E402


def training_batches(train_set, count: int, batch_size: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        x, _ = train_set.get_batch(torch.randint(len(train_set), (batch_size,), generator=generator))
        yield channels_last_batch(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="run folders (hqvae train, or the claims benchmark's)")
    parser.add_argument("--checkpoint", default="last", choices=["best", "last"])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for path in args.runs:
        opened = open_run(path, args.checkpoint)
        model = channels_last(opened.model)
        train_set, test_set = (load_run_data(opened.info, split) for split in ("train", "test"))
        before = summary(evaluate(model, test_set, batch_size=256))
        start = time.perf_counter()
        items = recalibrate_batchnorm(model, training_batches(train_set, args.batches, args.batch_size, args.seed))
        seconds = time.perf_counter() - start
        after = summary(evaluate(model, test_set, batch_size=256))
        rows.append({"run": path, "model": opened.info.config["model"]["name"], "step": opened.info.step,
                     "seed": opened.info.config["train"]["seed"],
                     "rate_weight": getattr(getattr(model, "config", None), "rate_weight", None),
                     "recalibration_items": items,
                     "test_as_trained": before, "test_recalibrated": after, "recalibration_seconds": seconds})
        print(f"{path}: test RMSE {before['rmse']:.5f} -> {after['rmse']:.5f} ({seconds:.0f} s)", flush=True)
    atomic_write_json(args.out, portable({
        "benchmark": "BatchNorm statistics recomputed on the model's argmax decodes (no parameter changes)",
        "data": test_set.description, "split": "test",
        "recalibration": {"batches": args.batches, "batch_size": args.batch_size, "seed": args.seed,
                          "data": "training split, uniform random items"},
        "commit": git_commit(), "date": now(), "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "command": "python " + " ".join(sys.argv), "runs": rows}))


if __name__ == "__main__":
    main()
