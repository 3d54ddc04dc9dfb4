"""Shared pytest fixtures."""

import os
import tarfile
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------
# Data fixtures (tests/test_data.py, tests/test_metrics.py)
# ---------------------------------------------------------------------------------------------

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def shared_data_root() -> Path:
    """``$HQVAE_DATA_ROOT``, or ``../shared/data`` beside the repository (it may not exist)."""
    configured = os.environ.get("HQVAE_DATA_ROOT")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty ``HQVAE_DATA`` cache, and no ``HQVAE_DATA_ROOT``: loaders see only what a test gives them."""
    cache = tmp_path / "hqvae-cache"
    monkeypatch.setenv("HQVAE_DATA", str(cache))
    monkeypatch.delenv("HQVAE_DATA_ROOT", raising=False)
    return cache


@pytest.fixture(scope="session")
def cifar10_jpeg_subset(tmp_path_factory) -> Path:
    """A folder with the first 12 train and 4 test JPEG files of each class of the real CIFAR-10 copy."""
    archive = shared_data_root() / "cifar10-jpeg-q75.tar.gz"
    wanted = {f"{split}/{name}/{number:04d}.jpg" for name in CIFAR10_CLASSES
              for split, count in (("train", 12), ("test", 4)) for number in range(count)}
    folder = tmp_path_factory.mktemp("cifar10-jpeg-subset")
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name in wanted:
                target = folder / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
    assert sum(1 for _ in folder.rglob("*.jpg")) == len(wanted)
    return folder
