"""Train or evaluate an autoregressive prior over the codes of a run.

    hqvae prior train --run runs/<name> --out priors/<name> [key=value ...] [--resume [auto] | --force]
    hqvae prior eval  --prior priors/<name> [--split test] [--limit N] [--checkpoint best|last]
                      [--conditional] [--out results.json]

train: encodes the run's train split (and data.val_items of its val split) once, caching the
codes in the prior folder, then trains a causal transformer over them (layers coarse to fine,
raster order inside a layer). Overrides are dotted key=value pairs (hqvae/priors/config.py lists
every key): train.steps=3000 model.d_model=192 model.class_conditional=true data.limit=10000 ...
--resume continues from checkpoints/last with the stored config (overrides may lengthen the run);
--resume auto continues the prior in --out if there is one, else starts it (a scheduler's resubmission).
SIGTERM, SIGINT or SIGUSR1: the step is finished, checkpoints/last written, run.json says "interrupted".
several processes: torchrun --standalone --nproc_per_node=2 -m hqvae prior train --tokenizer RUN --out P ...
(--tokenizer is --run under another name, as torchrun claims the abbreviation --run).

eval: test NLL of the prior in bits per item, in total and per layer, against the uniform rate
Σ n_l log2 K_l and the empirical-entropy (histogram) rate Σ n_l H(p_l); written to
<prior>/eval/<split>.json (or --out).  --conditional conditions on the items' class labels.

Exit status: 0 done, 1 training stopped on a non-finite loss or a failed write, 2 usage error,
128 + N stopped by signal N (143 SIGTERM, 130 SIGINT, 138 SIGUSR1).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from hqvae.cli.parsing import DATA_ROOT, PRIOR, RUN
from hqvae.cli.train import ResumeAction
from hqvae.io import atomic_write_json
from hqvae.train.signals import Interrupted


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{train,eval}")
    train = verbs.add_parser("train", help="train a prior on a run's codes", description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--run", "--tokenizer", dest="run_dir", metavar="RUN", type=RUN,
                       help="tokenizer run folder (hqvae train); under torchrun write --tokenizer (torchrun takes --run)")
    train.add_argument("--out", required=True, help="the prior folder to create (or resume)")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.steps=3000")
    train.add_argument("--resume", nargs="?", action=ResumeAction, metavar="auto",
                       help="continue the prior in --out from checkpoints/last; 'auto': continue it if there is "
                            "one, else start it")
    train.add_argument("--force", action="store_true", help="delete the prior's files in --out and start over")
    train.set_defaults(resume=None, resume_override=None)
    evaluate = verbs.add_parser("eval", help="test NLL of a prior against the uniform and histogram rates",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("--prior", required=True, type=PRIOR, help="prior folder (hqvae prior train)")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--limit", type=int, help="the first N items only")
    evaluate.add_argument("--checkpoint", default="best", choices=("best", "last"))
    evaluate.add_argument("--conditional", action="store_true", help="condition on the class labels")
    evaluate.add_argument("--batch-size", type=int, default=128)
    evaluate.add_argument("--data-root", type=DATA_ROOT, help="where the run's data set is now, if not at the recorded root")
    evaluate.add_argument("--out", help="results JSON (default <prior>/eval/<split>.json)")
    evaluate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    return run_train(args) if args.verb == "train" else run_eval(args)


def run_train(args: argparse.Namespace) -> int:
    from hqvae.priors.task import train_prior
    from hqvae.train.resume import prior_config

    overrides = [args.resume_override, *args.overrides] if args.resume_override else args.overrides
    config, run_dir, resume = prior_config(args.out, args.resume, args.run_dir, overrides)
    try:
        info = train_prior(run_dir, args.out, config, resume=resume, force=args.force)
    except Interrupted as stop:  # the message is in run.json and was printed
        return stop.exit_code
    if info.status != "finished":
        return 1
    if int(os.environ.get("RANK", 0)) == 0:
        best = info.best
        summary = (f"best val {best['val_bits_per_item']:.1f} bits per item at step {best['step']}" if best
                   else "no validation")
        print(f"finished {info.steps} steps in {info.wall_time_s:.0f} s ({summary}; uniform rate "
              f"{info.extra['uniform_bits_per_item']:.0f} bits); prior folder {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from hqvae.priors.evaluate import evaluate_prior
    from hqvae.priors.folder import cached_codes, open_prior

    opened = open_prior(args.prior, args.checkpoint, args.device)
    if args.conditional and opened.prior.config.num_classes == 0:
        raise ValueError(f"{args.prior} is an unconditional prior; drop --conditional (or train one with "
                         f"model.class_conditional=true)")
    tokenizer = opened.open_tokenizer(args.device)
    layers, labels, metadata = cached_codes(opened.folder, tokenizer, args.split, args.limit, 256, args.data_root,
                                            first=True)
    if args.conditional and labels is None:
        raise ValueError("the split has no class labels; drop --conditional")
    results = evaluate_prior(opened.prior, layers, args.batch_size, labels if args.conditional else None)
    results = {"prior": opened.describe(), "tokenizer": opened.tokenizer, "split": args.split,
               "data": metadata["dataset"], **results}
    out = Path(args.out) if args.out else opened.folder.root / "eval" / f"{args.split}.json"
    atomic_write_json(out, results)
    per_layer = " + ".join(f"{layer['nll_bits']:.1f}" for layer in results["layers"])
    print(f"{results['items']} {args.split} items: prior NLL {results['nll_bits_per_item']:.1f} bits per item "
          f"({per_layer}; {results['nll_bits_per_token']:.3f} per token); histogram rate "
          f"{results['histogram_bits_per_item']:.1f}; uniform rate {results['uniform_bits_per_item']:.1f}; wrote {out}")
    return 0
