"""Give a run trained before ``train.recalibrate_batchnorm`` the last step training now ends with.

    hqvae recalibrate --run runs/<name> [--batches 200] [--data-root PATH] [--device cpu]

Every BatchNorm layer's running statistics in checkpoints/last are recomputed on ``--batches``
random training batches forwarded in eval mode, so that the layers after an SQ quantizer are
normalised with the statistics of argmax decodes, which evaluation, encoding and the codec use,
instead of those of the relaxed samples training decoded (``hqvae.train.tokenizer.recalibrate_run``).
No trained parameter changes; the checkpoint is rewritten atomically with its training state and
run.json records it. A run trained in one process gets exactly the checkpoint the current trainer
writes; a finished run only (resume an interrupted one first, and it recalibrates by itself).
"""
from __future__ import annotations

import argparse

from hqvae.cli.parsing import add_common
from hqvae.train.tokenizer import recalibrate_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "run_dir", "data_root", "device")
    parser.add_argument("--batches", type=int, default=None,
                        help="training batches (of the run's batch size); default: the run's "
                             "train.recalibrate_batchnorm, 200 for a run that predates it")


def run(args: argparse.Namespace) -> int:
    if args.batches is not None and args.batches < 1:
        raise ValueError(f"--batches must be at least 1, got {args.batches}")
    info = recalibrate_run(args.run_dir, args.batches, args.device, args.data_root)
    done = info.batchnorm_recalibration
    print(f"{args.run_dir}: BatchNorm statistics of checkpoints/last (step {done['step']}) recomputed on "
          f"{done['items']} training items; run.json updated")
    return 0
