"""The command line's argument handling, over every command: key=value overrides anywhere on the line
(the README's command lines, in the README's order, with overrides added after ``--out``), and a
one-line message naming the path and the fix for every file or folder argument that does not
exist (walking the parser, so that a new command or argument is covered without a new test)."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from hqvae.cli import COMMANDS, build_parser, main
from hqvae.cli.parsing import ExistingPath
from hqvae.train.config import load_config
from hqvae.train.run_dir import RunDir

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TAKES_OVERRIDES = (("train",), ("prior", "train"))
ADDED = ["train.seed=3", "logging.progress=false"]  # after --out, as a user adds them

# Arguments that name an input; each must be checked (type ExistingPath) wherever it appears.
INPUT_DESTS = {"config", "run_dir", "run_dirs", "prior", "codes", "data_root", "lpips_weights", "file", "inputs"}


def readme_commands() -> list[list[str]]:
    """Every ``hqvae ...`` line of the README's bash blocks, in order, as argv without ``hqvae``:
    comments dropped, ``[optional ...]`` parts kept without brackets and without ``...``."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if not line.startswith("hqvae "):
                continue
            line = line.replace("[", " ").replace("]", " ").replace("...", " ")
            commands.append(shlex.split(line)[1:])
    return commands


def command_path(argv: list[str]) -> tuple[str, ...]:
    return tuple(argv[:2]) if argv[0] == "prior" else (argv[0],)


def with_overrides_after_out(argv: list[str]) -> list[str]:
    at = argv.index("--out") + 2
    return argv[:at] + ADDED + argv[at:]


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser(argv[0]).parse_args(argv)


def test_the_readme_shows_the_commands_that_take_overrides():
    shown = {command_path(argv) for argv in readme_commands()}
    assert set(TAKES_OVERRIDES) <= shown
    assert {path[0] for path in shown} <= set(COMMANDS)


@pytest.mark.parametrize("argv", readme_commands(), ids=" ".join)
def test_readme_command_parses_with_overrides_added_after_out(argv, monkeypatch):
    """Parsed as written (paths need not exist here: the next tests check those); a command that
    takes overrides also with ``train.seed=3 logging.progress=false`` added right after ``--out
    PATH``, and a train config then resolves with them and with the README's own."""
    monkeypatch.setattr(ExistingPath, "__call__", lambda self, value: value)
    monkeypatch.chdir(REPO)
    args = parse(argv)
    if command_path(argv) not in TAKES_OVERRIDES:
        return
    written = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    args = parse(with_overrides_after_out(argv))
    given = [args.resume_override] if getattr(args, "resume_override", None) else []
    assert sorted(given + args.overrides) == sorted(written + ADDED)
    if argv[0] == "train" and args.config:
        config = load_config(args.config, args.overrides)
        assert config.train.seed == 3 and config.logging.progress is False
        if "optim.lr=3e-4" in argv:
            assert config.optim.lr == 3e-4 and config.train.steps == 20000
        assert f"model.name={config.model.name}" in argv


def test_overrides_on_both_sides_of_options_and_after_resume(monkeypatch):
    monkeypatch.chdir(REPO)
    args = parse(["train", "--config", "configs/cifar10.yaml", "model.name=sqvae", "--out", "runs/x", "optim.lr=3e-4",
                  "--force", "train.steps=20000"])
    assert args.overrides == ["model.name=sqvae", "optim.lr=3e-4", "train.steps=20000"] and args.force
    args = parse(["train", "--out", "runs/x", "--resume", "train.steps=40000", "logging.progress=false"])
    assert args.resume == "always" and [args.resume_override, *args.overrides] == [
        "train.steps=40000", "logging.progress=false"]
    args = parse(["train", "train.steps=5", "--out", "runs/x", "--resume", "auto", "optim.lr=1e-4"])
    assert args.resume == "auto" and args.overrides == ["train.steps=5", "optim.lr=1e-4"]


@pytest.mark.skipif(not (FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="needs the Debian package dataset-fashion-mnist (make data installs it)")
def test_readme_training_line_runs_with_overrides_after_out(tmp_path, monkeypatch):
    """The README's resubmittable line, run for real with small overrides after --out; then the
    resume line with an override after --resume and another after it."""
    line = next(argv for argv in readme_commands() if "--resume" in argv and "--config" in argv)
    monkeypatch.chdir(REPO)
    out = tmp_path / "x"
    small = ["data.limit=64", "model.overrides={hidden: 16, codebook_size: 16, dim: 8}", "train.batch_size=16",
             "train.val_every=2", "train.val_batches=1", "train.checkpoint_every=2", "train.device=cpu",
             "logging.progress=false"]
    argv = [str(out) if arg == "runs/x" else arg for arg in line]
    at = argv.index("--out") + 2
    assert main(argv[:at] + ["train.steps=2", *small] + argv[at:]) == 0
    assert RunDir(out).read_info().steps == 2
    assert main(["train", "--out", str(out), "--resume", "train.steps=4", "logging.progress=false"]) == 0
    assert RunDir(out).read_info().steps == 4


# --- input paths that do not exist -----------------------------------------------------------


def every_command_parser():
    """(command path, parser) for every command and verb the CLI has, walked from the parser."""
    top = build_parser(None)
    commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for name in commands.choices:
        parser = next(a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction))
        stack = [((name,), parser.choices[name])]
        while stack:
            path, sub = stack.pop()
            verbs = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
            if verbs:
                stack += [((*path, verb), p) for verb, p in verbs[0].choices.items()]
            else:
                yield path, sub


def input_arguments():
    cases = []
    for path, parser in every_command_parser():
        for action in (action for action in parser._actions if isinstance(action.type, ExistingPath)):
            cases.append(pytest.param(path, action.dest, id=" ".join(path) + " " + (action.option_strings or [action.dest])[0]))
    return cases


def test_every_command_is_walked_and_every_input_argument_is_checked():
    walked = list(every_command_parser())
    assert {path[0] for path, _ in walked} == set(COMMANDS)
    unchecked = [f"{' '.join(path)} {action.dest}" for path, parser in walked for action in parser._actions
                 if action.dest in INPUT_DESTS and not isinstance(action.type, ExistingPath)]
    assert not unchecked, f"input arguments without type=ExistingPath: {unchecked}"
    assert len(input_arguments()) >= 15


def command_line(path: tuple[str, ...], parser: argparse.ArgumentParser, missing: str, work: Path) -> list[str]:
    """A command line for ``parser`` whose ``missing`` argument names a path that does not exist and
    whose other arguments are valid (existing placeholder files and folders, 1 for numbers)."""
    argv = list(path)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or not (action.required or action.dest == missing):
            continue
        if action.dest == missing:
            count = 2 if action.nargs == 2 else 1
            values = [str(work / f"nothere-{action.dest}-{n}") for n in range(count)]
        elif isinstance(action.type, ExistingPath):
            placeholder = work / f"present-{action.dest}"
            placeholder.mkdir() if action.type.kind == "folder" else placeholder.touch()
            values = [str(placeholder)] * (2 if action.nargs == 2 else 1)
        elif action.type is int:
            values = ["1"]
        else:
            values = [str(work / f"out-{action.dest}")]
        argv += (action.option_strings[:1] + values) if action.option_strings else values
    return argv


def parser_action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(action for action in parser._actions if action.dest == dest)


@pytest.mark.parametrize("path, dest", input_arguments())
def test_a_missing_input_path_gives_one_line_naming_it_and_the_fix(path, dest, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    parser = dict(every_command_parser())[path]
    argv = command_line(path, parser, dest, work)
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"hqvae {path[0]}: error: {work / f'nothere-{dest}-0'}: no such ")
    assert f"; {parser_action(parser, dest).type.fix(str(work / f'nothere-{dest}-0'))}\n" in error
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before  # nothing written or removed


def test_a_file_for_a_folder_and_a_folder_for_a_file_are_named(tmp_path, capsys):
    (tmp_path / "run.txt").write_text("not a run\n")
    assert main(["eval", "--run", str(tmp_path / "run.txt")]) == 2
    assert "run.txt is a file, not a folder (--run); give a folder written by hqvae train" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "is a folder, not a file (--config); give one of configs/<dataset>.yaml" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_issue_example_names_the_missing_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "nothere.yaml", "--out", "r"]) == 2
    assert capsys.readouterr().err == ("hqvae train: error: nothere.yaml: no such config file (--config); give one of "
                                       "configs/<dataset>.yaml, e.g. configs/fashion_mnist.yaml\n")
    assert list(tmp_path.iterdir()) == []
