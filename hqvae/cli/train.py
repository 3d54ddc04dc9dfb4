"""Train a model into a run folder (run.json, metrics.jsonl, checkpoints/{best,last}).

    hqvae train --config configs/fashion_mnist/sqvae2.yaml --out runs/fmnist-sqvae2
    hqvae train --config configs/cifar10/sqvae.yaml --out runs/c10 optim.lr=3e-4 train.steps=20000
    hqvae train --config configs/image_folder_64/hqvae.yaml --out runs/faces data.root=/data/faces
    hqvae train --out runs/fmnist-sqvae2 --resume [train.steps=40000]

Overrides are dotted key=value pairs read as YAML scalars (model.overrides.codebook_size=256,
logging.progress=false), given together (not split by a --flag); hqvae/train/config.py
describes every section and key.
--resume continues from checkpoints/last with the config stored in run.json (overrides may
change the schedule or the logging, not the model). --force deletes the run files of --out and
starts over.

Several processes (one per GPU, or CPU processes with gloo):
    torchrun --standalone --nproc_per_node=2 -m hqvae train --config ... --out ...

Exit status: 0 finished, 1 stopped on a non-finite loss (checkpoints/last holds the last good
state), 2 usage error.
"""
from __future__ import annotations

import argparse
import os

from hqvae.train.config import TrainConfig, apply_overrides, load_config
from hqvae.train.run_dir import RunDir



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config, e.g. configs/fashion_mnist/sqvae2.yaml")
    parser.add_argument("--out", required=True, help="the run folder to create (or resume)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. optim.lr=3e-4 model.overrides.codebook_size=256")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last")
    parser.add_argument("--force", action="store_true", help="delete the run files in --out and start over")


def resume_config(out: str, overrides: list[str]) -> TrainConfig:
    """The config stored in ``out``'s run.json with ``overrides`` applied (model keys excluded)."""
    model_keys = [o for o in overrides if o.split("=", 1)[0].startswith("model.")]
    if model_keys:
        raise ValueError(f"{model_keys}: a resumed run keeps its model (it comes from checkpoints/last)")
    run = RunDir(out)
    if not run.exists():
        raise FileNotFoundError(f"{out} holds no run to resume ({run.run_file} is missing); start it without --resume")
    return TrainConfig.from_dict(apply_overrides(run.read_info()["config"], overrides))


def run(args: argparse.Namespace) -> int:
    from hqvae.train.loop import train

    if args.resume:
        if args.config:
            raise ValueError("--resume takes the config from the run's run.json; drop --config "
                             "(pass changes as key=value overrides)")
        config = resume_config(args.out, args.overrides)
    else:
        if not args.config:
            raise ValueError("--config is required (e.g. --config configs/fashion_mnist/sqvae2.yaml)")
        config = load_config(args.config, args.overrides)
    info = train(config, args.out, resume=args.resume, force=args.force)
    if info["status"] != "finished":
        return 1
    if int(os.environ.get("RANK", 0)) != 0:
        return 0
    best = info["best"]
    summary = f"best val loss {best['val_loss']:.6g} at step {best['step']}" if best else "no validation"
    print(f"finished {info['steps']} steps in {info['wall_time_s']:.0f} s ({summary}); run folder {args.out}")
    return 0
