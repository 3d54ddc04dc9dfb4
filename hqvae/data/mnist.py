"""MNIST and Fashion-MNIST from their four IDX files.

Where the files are looked for, first match wins:

1. ``root=`` when given (a folder holding the files; nothing else is then tried);
2. ``$HQVAE_DATA_ROOT/<name>`` (``fashion_mnist`` or ``fashion-mnist``, ``mnist``);
3. the Debian package location ``/usr/share/datasets/fashion-mnist`` (Fashion-MNIST only;
   ``apt-get install dataset-fashion-mnist``);
4. the cache ``$HQVAE_DATA/<name>``, where missing files are downloaded (``download=True``)
   from the official address and checked against the published md5 of the ``.gz`` file.

Files may be gzipped (``train-images-idx3-ubyte.gz``) or not.  With ``verify=True`` (default)
the md5 of each *decompressed* file must equal the official one; this accepts the Debian
package, whose ``.gz`` files were recompressed, and catches any other copy that differs.

Splits: ``train`` = the official training set minus, per class, its last 1/12 (in file order);
``val`` = that last 1/12 (5,000 images for Fashion-MNIST, 5,002 for MNIST); ``test`` = the
official test set.  Images are uint8 (N, 1, 28, 28).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from hqvae.data.dataset import ImageDataset
from hqvae.data.download import download as fetch
from hqvae.data.errors import ChecksumError, CorruptFileError, DataError
from hqvae.data.idx import parse_idx, read_bytes
from hqvae.data.paths import cache_dir, data_root
from hqvae.data.splits import split_by_tail

VAL_FRACTION = 1 / 12
_RULES = {"train": "official training set less the last 1/12 of each class",
          "val": "last 1/12 of each class of the official training set",
          "test": "official test set"}


@dataclass(frozen=True)
class IdxFile:
    name: str  # without .gz
    gz_md5: str  # md5 of the published .gz file
    md5: str  # md5 of the decompressed file


@dataclass(frozen=True)
class IdxSource:
    title: str
    mirrors: tuple[str, ...]
    files: dict[str, tuple[IdxFile, IdxFile]]  # source split ("train"/"test") → (images, labels)
    classes: tuple[str, ...]
    folder_names: tuple[str, ...]  # sub-folder names searched under $HQVAE_DATA_ROOT
    system_dirs: tuple[str, ...] = ()


IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_files(*md5s: tuple[str, str]) -> dict[str, tuple[IdxFile, IdxFile]]:
    """The four files of :data:`IDX_NAMES` from their (gz_md5, md5) pairs, as ``IdxSource.files``."""
    files = [IdxFile(name, *pair) for name, pair in zip(IDX_NAMES, md5s, strict=True)]
    return {"train": (files[0], files[1]), "test": (files[2], files[3])}


SOURCES = {
    "mnist": IdxSource(
        title="MNIST",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        files=_idx_files(("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
                         ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
                         ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
                         ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637")),
        classes=tuple(str(digit) for digit in range(10)),
        folder_names=("mnist",),
    ),
    "fashion_mnist": IdxSource(
        title="Fashion-MNIST",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=_idx_files(("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                         ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
                         ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
                         ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965")),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        folder_names=("fashion_mnist", "fashion-mnist"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


def _existing(folder: Path, file: IdxFile) -> Path | None:
    """The gzipped or plain copy of ``file`` in ``folder``, if any."""
    return next((path for path in (folder / f"{file.name}.gz", folder / file.name) if path.is_file()), None)


def locate(name: str, files: tuple[IdxFile, ...], root=None, download: bool = True) -> list[Path]:
    """Paths of ``files`` for data set ``name``, searching and downloading as the module docstring says."""
    source = SOURCES[name]
    if root is not None:
        found = [_existing(Path(root), file) for file in files]
        missing = [file.name for file, path in zip(files, found) if path is None]
        if missing:
            raise DataError(f"{root}: missing {', '.join(missing)} (plain or .gz); point root= at the folder "
                            f"holding the {source.title} IDX files")
        return found
    shared = data_root()
    folders = [shared / folder for folder in source.folder_names] if shared is not None else []
    folders += [Path(folder) for folder in source.system_dirs] + [cache_dir(create=False) / name]
    for folder in folders:
        found = [_existing(folder, file) for file in files]
        if all(found):
            return found
    if not download:
        raise DataError(f"{source.title} not found (searched {', '.join(map(str, folders))}); pass root=, "
                        f"set HQVAE_DATA_ROOT, or allow download=True")
    return [_download(source, file, cache_dir() / name) for file in files]


def _download(source: IdxSource, file: IdxFile, folder: Path) -> Path:
    """Fetch ``file`` from the first mirror that answers, checking the published md5."""
    errors = []
    for mirror in source.mirrors:
        try:
            return fetch(mirror + f"{file.name}.gz", folder / f"{file.name}.gz", md5=file.gz_md5)
        except ChecksumError:
            raise
        except DataError as error:
            errors.append(str(error))
    raise DataError("; ".join(errors))


def _read(path: Path, file: IdxFile, verify: bool) -> torch.Tensor:
    data = read_bytes(path)
    if verify:
        actual = hashlib.md5(data).hexdigest()
        if actual != file.md5:
            raise ChecksumError(f"checksum mismatch for {path}: the decompressed file has md5 {actual}, the official "
                                f"{file.name} has {file.md5}; delete it to re-download, point root= at a good copy, "
                                f"or pass verify=False if you mean to use a modified copy")
    return torch.from_numpy(parse_idx(data, path))


def load_mnist(name: str, split: str, root=None, *, download: bool = True, verify: bool = True) -> ImageDataset:
    """MNIST (``name="mnist"``) or Fashion-MNIST (``"fashion_mnist"``) as uint8 (N, 1, 28, 28); see module docstring."""
    source = SOURCES[name]
    image_file, label_file = source.files["test" if split == "test" else "train"]
    image_path, label_path = locate(name, (image_file, label_file), root, download)
    images = _read(image_path, image_file, verify)
    labels = _read(label_path, label_file, verify)
    if images.ndim != 3 or images.dtype != torch.uint8:
        raise CorruptFileError(f"{image_path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
                               f"{tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise CorruptFileError(f"{label_path}: {labels.shape[0] if labels.ndim else 0} labels for "
                               f"{images.shape[0]} images in {image_path}; the two files do not belong together")
    labels = labels.to(torch.int64)
    if labels.min() < 0 or labels.max() >= len(source.classes):
        raise CorruptFileError(f"{label_path}: labels outside 0..{len(source.classes) - 1}")
    images = images.unsqueeze(1)
    if split != "test":
        indices = split_by_tail(labels, VAL_FRACTION)[split]
        images, labels = images[indices].contiguous(), labels[indices]
    description = f"{source.title}, {split} split ({_RULES[split]}), {len(labels)} images, from {image_path.parent}"
    return ImageDataset(images, labels, name=name, split=split, description=description, classes=source.classes)
