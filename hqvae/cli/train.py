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

from hqvae.cli.parsing import CONFIG
from hqvae.train.config import TrainConfig, apply_overrides, load_config
from hqvae.train.run_dir import RunDir
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=CONFIG,
                        help="YAML config, one per data set, e.g. configs/fashion_mnist.yaml; choose the model "
                             "with the override model.name=<name>")
    parser.add_argument("--out", required=True, help="the run folder to create (or resume)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.lr=3e-4 model.overrides.codebook_size=256")
    parser.add_argument("--resume", nargs="?", action=ResumeAction, metavar="auto",
                        help="continue the run in --out from checkpoints/last; 'auto': continue it if there "
                             "is one, else start it from --config")
    parser.add_argument("--force", action="store_true", help="delete the run files in --out and start over")
    parser.set_defaults(resume=None, resume_override=None)


def model_keys(overrides: list[str]) -> list[str]:
    return [o for o in overrides if o.split("=", 1)[0].startswith("model.")]


def resume_config(out: str, overrides: list[str]) -> TrainConfig:
    """The config stored in ``out``'s run.json with ``overrides`` applied (model keys excluded)."""
    if model_keys(overrides):
        raise ValueError(f"{model_keys(overrides)}: a resumed run keeps its model (it comes from checkpoints/last)")
    run = RunDir(out)
    if not run.exists():
        raise FileNotFoundError(f"{out} holds no run to resume ({run.run_file} is missing); start it without "
                                f"--resume, or with --resume auto")
    stored = run.read_info().config
    try:
        TrainConfig.from_dict(stored)
    except ValueError as error:
        raise ValueError(f"{run.run_file} holds a config this hqvae cannot use ({error}); fix the file, or "
                         f"start the run over with --force --config ...") from None
    return TrainConfig.from_dict(apply_overrides(stored, overrides))


def auto_resume_config(out: str, config_file: str | None, overrides: list[str]) -> TrainConfig:
    """--resume auto on an existing run: its stored config with the non-model overrides, after
    checking that --config and the model overrides describe the run's model."""
    stored = RunDir(out).read_info().config.get("model")
    if config_file:
        wanted = load_config(config_file, overrides).to_dict()["model"]
        if wanted != stored:
            raise ValueError(f"{out} holds a run of model {stored}, but --config and the overrides describe "
                             f"{wanted}; choose another --out, or pass --force to delete that run and start over")
    elif model_keys(overrides):
        return resume_config(out, overrides)  # the same error as --resume
    return resume_config(out, [o for o in overrides if o not in model_keys(overrides)])


def run(args: argparse.Namespace) -> int:
    from hqvae.train.loop import train

    overrides = [args.resume_override, *args.overrides] if args.resume_override else args.overrides
    resume = args.resume
    if resume == "auto" and not RunDir(args.out).exists():
        resume = None  # nothing to resume: start it
    if resume == "auto":
        config = auto_resume_config(args.out, args.config, overrides)
    elif resume:
        if args.config:
            raise ValueError("--resume takes the config from the run's run.json; drop --config "
                             "(pass changes as key=value overrides), or use --resume auto")
        config = resume_config(args.out, overrides)
    else:
        if not args.config:
            raise ValueError("--config is required (e.g. --config configs/fashion_mnist.yaml model.name=sqvae2)")
        config = load_config(args.config, overrides)
    try:
        info = train(config, args.out, resume=bool(resume), force=args.force)
    except Interrupted as stop:  # the message is in run.json and was printed
        return stop.exit_code
    if info.status != "finished":
        return 1
    if int(os.environ.get("RANK", 0)) != 0:
        return 0
    best = info.best
    summary = f"best val loss {best['val_loss']:.6g} at step {best['step']}" if best else "no validation"
    print(f"finished {info.steps} steps in {info.wall_time_s:.0f} s ({summary}); run folder {args.out}")
    return 0
