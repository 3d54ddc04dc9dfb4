"""Train a model into a run folder (run.json, metrics.jsonl, checkpoints/{best,last}).

    hqvae train --config configs/fashion_mnist.yaml model.name=sqvae2 --out runs/fmnist-sqvae2
    hqvae train --config configs/cifar10.yaml model.name=sqvae --out runs/c10 optim.lr=3e-4 train.steps=20000
    hqvae train --config configs/image_folder_64.yaml model.name=hqvae --out runs/faces data.root=/data/faces
    hqvae train --out runs/fmnist-sqvae2 --resume [train.steps=40000]

Overrides are dotted key=value pairs read as YAML scalars (model.overrides.codebook_size=256,
logging.progress=false), anywhere on the line (before, between or after the options);
hqvae/train/config.py describes every section and key.
--resume continues from checkpoints/last with the config stored in run.json (overrides may
change the schedule or the logging, not the model); a run stopped before its first checkpoint
starts over from step 0 with that config. --resume auto resumes when --out holds a run and
starts one (from --config) when it does not, so a scheduler can submit the same command line
again after a pre-emption or a crash:
    hqvae train --config configs/fashion_mnist.yaml model.name=sqvae2 --out runs/x --resume auto [key=value ...]
(with --config, the stored run must be of the same model; its stored config is used).
--force deletes the run files of --out and starts over.

SIGTERM, SIGINT or SIGUSR1 (pre-emption): the current step is finished, checkpoints/last is
written, run.json says "interrupted"; a second signal stops at once (nothing is left damaged).

Several processes (one per GPU, or CPU processes with gloo):
    torchrun --standalone --nproc_per_node=2 -m hqvae train --config ... --out ...
    torchrun --standalone --nproc_per_node=2 --max-restarts=3 -m hqvae train --config ... --out ... --resume auto
(with --max-restarts, a restart after a process died resumes from checkpoints/last).

Exit status: 0 finished, 1 stopped on a non-finite loss (checkpoints/last holds the last good
state) or a failed write (full disk, ...), 2 usage error or a damaged file, 128 + N stopped by
signal N (143 SIGTERM, 130 SIGINT, 138 SIGUSR1).
"""
from __future__ import annotations

import argparse
import os
from typing import Callable

from hqvae.cli.parsing import CONFIG
from hqvae.train.signals import Interrupted


class ResumeAction(argparse.Action):
    """``--resume`` (continue) or ``--resume auto``. A key=value right after ``--resume`` is an
    override (argparse hands it to this option), as in ``--resume train.steps=40000``."""

    def __call__(self, parser, namespace, value, option_string=None):
        if value is None or value == "auto":
            namespace.resume = value or "always"
        elif "=" in value:
            namespace.resume, namespace.resume_override = "always", value
        else:
            parser.error(f"--resume takes no value or 'auto', got {value!r}")


def add_training_arguments(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    """Overrides, --resume and --force: the arguments of hqvae train and hqvae prior train (``what``: the folder)."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"config overrides, e.g. {example}")
    parser.add_argument("--resume", nargs="?", action=ResumeAction, metavar="auto",
                        help=f"continue {what} in --out from checkpoints/last; 'auto': continue it if there is one, "
                             f"else start it")
    parser.add_argument("--force", action="store_true", help=f"delete the files of {what} in --out and start over")
    parser.set_defaults(resume=None, resume_override=None)


def overrides(args: argparse.Namespace) -> list[str]:
    """The key=value overrides, the one right after --resume first."""
    return [args.resume_override, *args.overrides] if args.resume_override else args.overrides


def finish(train: Callable, summary: Callable, folder: str) -> int:
    """Run ``train()`` and say on rank 0 what it did (``summary(info)``); the exit status (module docstring)."""
    try:
        info = train()
    except Interrupted as stop:  # the message is in run.json and was printed
        return stop.exit_code
    if info.status == "finished" and int(os.environ.get("RANK", 0)) == 0:
        print(f"finished {info.steps} steps in {info.wall_time_s:.0f} s ({summary(info)}); {folder}")
    return 0 if info.status == "finished" else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=CONFIG,
                        help="YAML config, one per data set, e.g. configs/fashion_mnist.yaml; choose the model "
                             "with the override model.name=<name>")
    parser.add_argument("--out", required=True, help="the run folder to create (or resume)")
    add_training_arguments(parser, "the run", "optim.lr=3e-4 model.overrides.codebook_size=256")


def run(args: argparse.Namespace) -> int:
    from hqvae.train.resume import train_config
    from hqvae.train.tokenizer import train

    config, resume = train_config(args.out, args.resume, args.config, overrides(args))

    def summary(info) -> str:
        best = info.best
        return f"best val loss {best['val_loss']:.6g} at step {best['step']}" if best else "no validation"

    return finish(lambda: train(config, args.out, resume=resume, force=args.force), summary,
                  f"run folder {args.out}")
