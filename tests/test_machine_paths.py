"""No tracked file names a path of one machine (a home folder, a workspace, a temporary folder) as an
example or a default, and no recorded benchmark result does (the scripts write data under
$HQVAE_DATA_ROOT and run folders relative to the repository: ``benchmarks/claims.py:portable``)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.$])/(work|home|root|Users|tmp)/[\w.-]+")


def tracked_files() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return listed.splitlines()


def test_no_tracked_file_names_a_machine_path():
    found = []
    for name in tracked_files():
        path = REPO / name
        if not path.is_file() or path.suffix in (".png", ".safetensors", ".gz", ".pt"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}" for m in MACHINE_PATH.finditer(text)]
    assert not found, "machine paths in tracked files:\n" + "\n".join(found[:40])
