"""The ``hqvae`` command line: one module per command, each with ``add_arguments`` and ``run``.

    hqvae train  --config configs/<dataset>.yaml model.name=<model> --out runs/<name> [key=value ...]
    hqvae eval   --run runs/<name> [--split test] [--out results.json]
    hqvae encode --run runs/<name> --out codes.safetensors
    hqvae decode --run runs/<name> --codes codes.safetensors --out images/
    hqvae report --run runs/<a> runs/<b> --out report/
    hqvae recalibrate --run runs/<name>   (a run trained before training recalibrated BatchNorm)
    hqvae prior train --run runs/<name> --out priors/<name> [key=value ...]
    hqvae prior eval  --prior priors/<name>
    hqvae sample --prior priors/<name> --num 64 --out samples/
    hqvae compress --prior priors/<name> images/*.png --out images.hqz
    hqvae decompress images.hqz --out decoded/
    hqvae demo   [--out runs/demo]   the main job: vqvae2 vs sqvae2 on Fashion-MNIST, then the report

Only the chosen command's module is imported, so each command starts fast and a problem in one
cannot break another.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from hqvae.cli.parsing import MissingPath, Parser
from hqvae.data.errors import DataError
from hqvae.io import WriteFailed

COMMANDS = {  # name -> (module, one-line help)
    "train": ("hqvae.cli.train", "train a model from a YAML config"),
    "eval": ("hqvae.cli.evaluate", "evaluate a run on a split: metrics JSON and figures"),
    "encode": ("hqvae.cli.encode", "encode a dataset split to codes"),
    "decode": ("hqvae.cli.decode", "decode a codes file to images or audio"),
    "report": ("hqvae.cli.report", "an HTML and Markdown report comparing runs"),
    "recalibrate": ("hqvae.cli.recalibrate", "recompute a run's BatchNorm statistics as training now ends"),
    "prior": ("hqvae.cli.prior", "train (prior train) or evaluate (prior eval) an autoregressive prior over a run's codes"),
    "sample": ("hqvae.cli.sample", "draw new images (or audio) from a prior"),
    "compress": ("hqvae.cli.compress", "range-code images or codes with a prior into a .hqz file"),
    "decompress": ("hqvae.cli.decompress", "decode a .hqz file back to codes and images"),
    "demo": ("hqvae.cli.demo", "the main job: train vqvae2 and sqvae2 on Fashion-MNIST, evaluate, report"),
}


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the ``selected`` command only."""
    parser = Parser(prog="hqvae", description="Hierarchical discrete representation learning.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == selected:
            module = importlib.import_module(module_name)
            sub.description = module.__doc__
            module.add_arguments(sub)
            sub.set_defaults(_command=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    selected = next((arg for arg in argv if not arg.startswith("-")), None)
    try:
        args = build_parser(selected if selected in COMMANDS else None).parse_args(argv)
    except MissingPath as error:  # an input file or folder that is not there: nothing has run
        print(f"hqvae {selected}: error: {error}", file=sys.stderr)
        return 2
    try:
        return int(args._command(args) or 0)
    except (ValueError, FileNotFoundError, DataError, WriteFailed) as error:  # the message names the fix
        print(f"hqvae {args.command}: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, WriteFailed) else 2  # 1: a full disk, an I/O error, no permission
