"""BatchNorm statistics recomputed on argmax decodes (issue 18: where the SQ models' test gap sits).

A trained model's BatchNorm running statistics are averages over training forwards; an SQ model's
training forward decodes relaxed samples, its evaluation argmax codes (``hqvae.models.batchnorm``).
This loads each run's checkpoint, evaluates it on ``--split`` as trained, recomputes every
BatchNorm layer's statistics as training's last step does (``hqvae.train.tokenizer.recalibrate``:
``--batches`` random training batches of ``--batch-size``, seeded by the run's seed; no label, no
test item), and evaluates again.
No trained parameter changes; the codes change only where a BatchNorm layer sits before a
quantizer (the encoder's, a hierarchical model's merge of the coarser decode), so the information
per layer is measured again. Both models of a pair get the same treatment: a VQ model decodes its
argmax code in training too, so its change is only the running average's lag. ``--decode sample``
gathers the statistics with the SQ layers decoding training's relaxed samples at the run's last
temperature instead: what training's running averages estimate, without their lag (VQ layers decode
their argmax either way).

    python benchmarks/bn_recalibration.py --runs RUN [RUN ...] --split val|test [--decode sample] --threads 1 \\
        --out benchmarks/results/bn-recalibration-<name>.json
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import portable  # noqa: E402
from decoder_refit import measured, parse_run_arguments, run_arguments, runs_as_trained  # noqa: E402

from hqvae.io import atomic_write_json  # noqa: E402
from hqvae.train.config import TrainConfig  # noqa: E402
from hqvae.train.tokenizer import recalibrate  # noqa: E402
from hqvae.train.run_info import git_commit, now  # noqa: E402
from hqvae.train.schedules import default_temperature_decay, temperature  # noqa: E402


def main() -> None:
    parser = run_arguments(__doc__, "run folders (hqvae train, or the claims benchmark's)")
    parser.add_argument("--batches", type=int, default=200, help="as train.recalibrate_batchnorm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=None, help="default: the run's train.seed, as training does")
    parser.add_argument("--split", default="test", choices=["val", "test"],
                        help="the split evaluated before and after (val: for choosing a default)")
    parser.add_argument("--decode", default="argmax", choices=["argmax", "sample"],
                        help="what SQ layers decode while the statistics are gathered: the argmax code (as "
                             "training's last step does) or the relaxed sample at the run's last temperature "
                             "(what training's running averages estimate)")
    args = parse_run_arguments(parser)
    rows = []
    for path, opened, model, train_set, test_set, before in runs_as_trained(args.runs, args.checkpoint, args.split):
        config = TrainConfig.from_dict(opened.info.config)
        config.train.recalibrate_batchnorm, config.train.batch_size = args.batches, args.batch_size
        config.train.seed = config.train.seed if args.seed is None else args.seed
        if config.temperature.decay is None:  # set from the budget, as the trainer does
            config.temperature.decay = default_temperature_decay(config.train.steps)
        model.set_temperature(temperature(opened.info.step, config.temperature))
        start = time.perf_counter()
        items = recalibrate(model, train_set, config, torch.device("cpu"), sample=args.decode == "sample")
        seconds = time.perf_counter() - start
        after = measured(model, test_set)
        rows.append({"run": path, "model": opened.info.config["model"]["name"], "step": opened.info.step,
                     "seed": opened.info.config["train"]["seed"], "recalibration_seed": config.train.seed,
                     "rate_weight": getattr(getattr(model, "config", None), "rate_weight", None),
                     "recalibration_items": items,
                     f"{args.split}_as_trained": before, f"{args.split}_recalibrated": after, "recalibration_seconds": seconds})
        print(f"{path}: {args.split} RMSE {before['rmse']:.5f} -> {after['rmse']:.5f} ({seconds:.0f} s)", flush=True)
    atomic_write_json(args.out, portable({
        "benchmark": f"BatchNorm statistics recomputed on the model's {args.decode} decodes (no parameter changes)",
        "data": test_set.description, "split": args.split,
        "recalibration": {"batches": args.batches, "batch_size": args.batch_size, "seed": args.seed,
                          "decode": args.decode, "data": "training split, uniform random items"},
        "commit": git_commit(), "date": now(), "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "command": "python " + " ".join(sys.argv), "runs": rows}))


if __name__ == "__main__":
    main()
