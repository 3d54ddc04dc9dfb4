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
from pathlib import Path

from hqvae.cli.parsing import RUN, add_common
from hqvae.cli.train import add_training_arguments, finish, overrides
from hqvae.io import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{train,eval}")
    train = verbs.add_parser("train", help="train a prior on a run's codes", description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate = verbs.add_parser("eval", help="test NLL of a prior against the uniform and histogram rates",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--run", "--tokenizer", dest="run_dir", metavar="RUN", type=RUN,
                       help="tokenizer run folder (hqvae train); under torchrun write --tokenizer (torchrun takes --run)")
    train.add_argument("--out", required=True, help="the prior folder to create (or resume)")
    add_training_arguments(train, "the prior", "train.steps=3000")
    add_common(evaluate, "prior", "split", "limit", "checkpoint", "batch_size", "data_root", "device",
               batch_size={"default": 128})
    evaluate.add_argument("--conditional", action="store_true", help="condition on the class labels")
    evaluate.add_argument("--out", help="results JSON (default <prior>/eval/<split>.json)")


def run(args: argparse.Namespace) -> int:
    return run_train(args) if args.verb == "train" else run_eval(args)


def run_train(args: argparse.Namespace) -> int:
    from hqvae.priors.task import train_prior
    from hqvae.train.resume import prior_config

    config, run_dir, resume = prior_config(args.out, args.resume, args.run_dir, overrides(args))

    def summary(info) -> str:
        best = info.best
        return (f"best val {best['val_bits_per_item']:.1f} bits per item at step {best['step']}" if best
                else "no validation") + f"; uniform rate {info.extra['uniform_bits_per_item']:.0f} bits"

    return finish(lambda: train_prior(run_dir, args.out, config, resume=resume, force=args.force), summary,
                  f"prior folder {args.out}")


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
