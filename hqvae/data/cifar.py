"""CIFAR-10 in its canonical python layout (``cifar-10-batches-py``).

The folder holds ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and ``batches.meta``,
each a pickled dict.  A batch has ``data``, a uint8 array (n, 3072) whose rows are the 1024
red, then green, then blue values of a 32×32 image in row-major order, and ``labels``, n ints
in 0..9; any n loads.  ``batches.meta`` has ``label_names``.

The pickles are read with a restricted unpickler that can build only dicts, lists, strings,
bytes, numbers and numpy arrays, so a hostile file cannot run code.

Where the data are looked for, first match wins:

1. ``root=`` when given: the ``cifar-10-batches-py`` folder, a folder containing it, or the
   official ``cifar-10-python.tar.gz`` (extracted once into the cache);
2. ``$HQVAE_DATA_ROOT`` (the folder or the tarball inside it);
3. the cache ``$HQVAE_DATA/cifar10``, where the tarball is downloaded (``download=True``) from
   the official address, checked against its published md5 and extracted.

Splits: ``train`` = the five training batches less, per class, the last 10% of images in batch
order (500 per class, 5,000 in all); ``val`` = those images; ``test`` = ``test_batch``.
Images are uint8 (N, 3, 32, 32).
"""

import codecs
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from hqvae.data.archive import extract
from hqvae.data.dataset import ImageDataset
from hqvae.data.download import download as fetch
from hqvae.data.download import verify_checksum
from hqvae.data.errors import CorruptFileError, DataError
from hqvae.data.paths import cache_dir, data_root
from hqvae.data.splits import split_by_tail

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
VAL_FRACTION = 0.1  # 500 of the 5,000 training images of each class
_RULES = {"train": "training batches less the last 10% of each class",
          "val": "last 10% of each class of the training batches",
          "test": "official test batch"}


def _latin1_encode(text: str, encoding: str) -> bytes:
    """What a protocol-2 pickle written by Python 3 calls to rebuild a bytes object."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


_NUMPY_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # protocols 0-4
_NUMPY_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _NUMPY_FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _NUMPY_FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): bytes,  # how protocol 2 spells an empty bytes object
    ("builtins", "bytes"): bytes,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only builtin containers and scalars and numpy arrays: no other global can be loaded."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch") from None


def read_pickle(path: str | os.PathLike) -> dict:
    """Load a CIFAR pickle safely; byte-string keys (from Python 2 pickles) are decoded to str."""
    try:
        with open(path, "rb") as f:
            content = _RestrictedUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, OSError) as error:
        raise CorruptFileError(f"{path}: not a readable CIFAR-10 pickle ({type(error).__name__}: {error}); "
                               f"delete it and fetch the data again") from error
    if not isinstance(content, dict):
        raise CorruptFileError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file → images uint8 (n, 3, 32, 32) and labels int64 (n,)."""
    batch = read_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptFileError(f"{path}: 'data' must be a uint8 array of shape (n, 3072), got {got}; "
                               f"is this a CIFAR-10 batch file?")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise CorruptFileError(f"{path}: 'labels' is not a list of integers") from error
    if labels.shape != (data.shape[0],):
        raise CorruptFileError(f"{path}: {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptFileError(f"{path}: labels outside 0..9 (CIFAR-100 files use 'fine_labels' and are not supported)")
    return data.reshape(-1, 3, 32, 32), labels


def read_label_names(path: str | os.PathLike) -> list[str]:
    """The 10 class names of ``batches.meta``."""
    names = read_pickle(path).get("label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise CorruptFileError(f"{path}: expected 'label_names', a list of 10 class names")
    return [name.decode("latin1") if isinstance(name, bytes) else str(name) for name in names]


def _batches_folder(path: Path) -> Path | None:
    """``path`` itself or its ``cifar-10-batches-py`` sub-folder, whichever holds ``batches.meta``."""
    return next((folder for folder in (path, path / FOLDER) if (folder / META_FILE).is_file()), None)


def _from_archive(archive: Path) -> Path:
    """Extract the batches of the official tarball into the cache (once) after checking its md5."""
    target = cache_dir() / "cifar10"
    folder = target / FOLDER
    if not (folder / META_FILE).is_file():
        verify_checksum(archive, "md5", MD5, hint=f"this is not the official {ARCHIVE}; delete it to re-download, "
                                                  f"or point root= at a good copy")
        extract(archive, target, lambda name: name.startswith(f"{FOLDER}/"))
    return folder


def locate(root=None, download: bool = True) -> Path:
    """The ``cifar-10-batches-py`` folder, found or fetched as the module docstring says."""
    if root is not None:
        root = Path(root)
        folder = _from_archive(root) if root.is_file() else _batches_folder(root)
        if folder is None:
            raise DataError(f"{root}: no {META_FILE} here or in {root / FOLDER}; point root= at the "
                            f"{FOLDER} folder or at {ARCHIVE}")
        return folder
    for place in filter(None, (data_root(), cache_dir(create=False) / "cifar10")):
        folder = _batches_folder(place)
        if folder is not None:
            return folder
        if (place / ARCHIVE).is_file():  # a tarball not extracted yet
            return _from_archive(place / ARCHIVE)
    if not download:
        raise DataError(f"CIFAR-10 not found (searched root=, $HQVAE_DATA_ROOT and {cache_dir(create=False)}); "
                        f"pass root= or allow download=True")
    return _from_archive(fetch(URL, cache_dir() / "cifar10" / ARCHIVE, md5=MD5))


def load_cifar10(split: str, root=None, *, download: bool = True) -> ImageDataset:
    """CIFAR-10 from the python batches as uint8 (N, 3, 32, 32); see the module docstring."""
    folder = locate(root, download)
    classes = read_label_names(folder / META_FILE)
    files = (TEST_FILE,) if split == "test" else TRAIN_FILES
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(missing)}; the folder is incomplete, fetch it again")
    parts = [read_batch(folder / name) for name in files]
    images = torch.from_numpy(np.concatenate([images for images, _ in parts]))
    labels = torch.from_numpy(np.concatenate([labels for _, labels in parts]))
    if split != "test":
        indices = split_by_tail(labels, VAL_FRACTION)[split]
        images, labels = images[indices], labels[indices]
    description = f"CIFAR-10, {split} split ({_RULES[split]}), {len(labels)} images, from {folder}"
    return ImageDataset(images.contiguous(), labels, name="cifar10", split=split, description=description,
                        classes=classes)
