"""Command-line parsing shared by every ``hqvae`` command: key=value overrides anywhere on the line,
and one check of every file or folder argument that must already exist.

``Parser`` parses a command without sub-commands with ``parse_known_intermixed_args``, so that
positional overrides may stand on both sides of an option:

    hqvae train --config configs/cifar10.yaml model.name=sqvae --out runs/x optim.lr=3e-4 train.steps=20000

(plain argparse takes ``model.name=sqvae`` as the positional list and then rejects the rest).
Sub-parsers made from a ``Parser`` are ``Parser`` s too, so every command and verb gets it.

``ExistingPath`` is the argparse ``type`` of an argument naming an input file or folder. A path
that does not exist (or is a file where a folder is wanted, or the reverse) raises ``MissingPath``
while the line is parsed, before anything runs or is written; ``hqvae.cli.main`` prints its
one-line message (the path, the argument, the fix) and exits with status 2.

``add_common`` adds the options that several commands share (--run, --split, --device, ...).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Callable

import torch


class MissingPath(Exception):
    """An input path given on the command line does not exist; the message names it and the fix."""


class ExistingPath:
    """argparse ``type=`` for an input path: returns the string unchanged when the path exists.

    kind: "file" or "folder". what: the thing's name in the message ("run folder").
    fix: the rest of the message, how to give a good one ("give a folder written by hqvae train"),
    or a function of the missing path that returns it.
    """

    def __init__(self, kind: str, what: str, fix: str | Callable[[str], str]) -> None:
        self.kind, self.what = kind, what
        self.fix = fix if callable(fix) else lambda value: fix  # the message's fix for the path ``value``
        self.option = None  # set on its own copy by Parser.add_argument: the option, for the message

    def __call__(self, value: str) -> str:
        path = Path(value)
        where = f" ({self.option})" if self.option else ""
        if not value:
            raise MissingPath(f"an empty path was given for the {self.what}{where}; {self.fix(value)}")
        if not path.exists():
            raise MissingPath(f"{value}: no such {self.what}{where}; {self.fix(value)}")
        if path.is_dir() != (self.kind == "folder"):
            found = "folder" if path.is_dir() else "file"
            raise MissingPath(f"{value} is a {found}, not a {self.kind}{where}; {self.fix(value)}")
        return value


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that lets positional arguments and options intermix (module docstring)."""

    _intermixing = False

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if isinstance(action.type, ExistingPath):
            action.type = copy.copy(action.type)
            action.type.option = "/".join(action.option_strings) or action.metavar or action.dest
        return action

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing or self._subparsers is not None:  # sub-commands: plain parsing
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _config_fix(value: str) -> str:
    from hqvae.train.config import missing_config_fix  # imported by the train command only

    return missing_config_fix(value)


CONFIG = ExistingPath("file", "config file", _config_fix)
RUN = ExistingPath("folder", "run folder", "give a folder written by hqvae train ... --out runs/<name>")
PRIOR = ExistingPath("folder", "prior folder", "give a folder written by hqvae prior train --run RUN --out priors/<name>")
DATA_ROOT = ExistingPath("folder", "data folder", "give the folder that holds the data set, or leave --data-root "
                                                  "out to use the recorded (or default) place")
CODES = ExistingPath("file", "codes file", "give a file written by hqvae encode --run RUN --out codes.safetensors")
HQZ = ExistingPath("file", ".hqz file", "give a file written by hqvae compress --prior PRIOR INPUT ... --out FILE.hqz")
INPUT = ExistingPath("file", "input file", "give image files (or one codes file of hqvae encode); check the name, "
                                           "or let the shell expand a pattern such as images/*.png")
LPIPS_WEIGHTS = ExistingPath("file", "LPIPS weight file", "give the torchvision backbone file, then the LPIPS v0.1 "
                                                          "linear weights (hqvae.metrics.lpips says where to get "
                                                          "them), or leave --lpips-weights out")

COMMON = {  # the options several commands share: dest -> (flag, add_argument keywords)
    "run_dir": ("--run", dict(metavar="RUN", required=True, type=RUN, help="run folder written by hqvae train")),
    "prior": ("--prior", dict(required=True, type=PRIOR, help="prior folder (hqvae prior train)")),
    "split": ("--split", dict(default="test", choices=("train", "val", "test"))),
    "checkpoint": ("--checkpoint", dict(default="best", choices=("best", "last"))),
    "batch_size": ("--batch-size", dict(type=int, default=256)),
    "limit": ("--limit", dict(type=int, help="the first N items only")),
    "data_root": ("--data-root", dict(type=DATA_ROOT,
                                      help="where the run's data set is now, if not at the recorded root")),
    "device": ("--device", dict(default="cuda" if torch.cuda.is_available() else "cpu")),
}


def add_common(parser: argparse.ArgumentParser, *dests: str, **changes) -> None:
    """Add the ``COMMON`` options ``dests``; ``changes`` maps a dest to the keywords it changes
    (``batch_size={"default": 64}``, ``limit={"help": ...}``, ``run_dir={"dest": "run_dirs", "nargs": "+"}``)."""
    for dest in dests:
        flag, keywords = COMMON[dest]
        parser.add_argument(flag, **{"dest": dest, **keywords, **changes.get(dest, {})})

