"""The ``hqvae`` command line: one module per command, each with ``add_arguments`` and ``run``.

    hqvae train  --config configs/<dataset>/<model>.yaml --out runs/<name> [key=value ...]
    hqvae eval   --run runs/<name> [--split test] --out results.json
    hqvae encode --run runs/<name> --out codes.safetensors
    hqvae decode --run runs/<name> --codes codes.safetensors --out images/
    hqvae report --run runs/<a> runs/<b> --out report/
    hqvae demo   (the main job: vqvae2 vs sqvae2 on Fashion-MNIST, then the report)
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "train": "hqvae.cli.train",
    "eval": "hqvae.cli.evaluate",
    "encode": "hqvae.cli.encode",
    "decode": "hqvae.cli.decode",
    "report": "hqvae.cli.report",
    "demo": "hqvae.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hqvae", description="Hierarchical discrete representation learning.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # a command still being built
        sub = commands.add_parser(name, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        print(f"hqvae {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
