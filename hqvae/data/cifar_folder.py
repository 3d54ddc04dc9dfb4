"""The CIFAR-10 JPEG copy: an image folder (``train/<class>/NNNN.jpg``, ``test/<class>/NNNN.jpg``).

The images were re-encoded as JPEG quality 75 (4:2:0 chroma) by a public mirror; against the
true pixels they average about 30.5 dB PSNR.  Numbers measured on it are therefore labelled
"CIFAR-10 (JPEG q75 copy)" and are not comparable with published CIFAR-10 numbers.

Source: ``root=`` (the ``.tar.gz`` or an extracted folder), by default
``$HQVAE_DATA_ROOT/cifar10-jpeg-q75.tar.gz``.  The archive is read directly and decoded once
into the cache (see :mod:`hqvae.data.image_folder`).  With ``verify=True`` (default) an
archive must have the SHA-256 of the known copy; a folder must have exactly the ten CIFAR-10
classes.  Splits as for the python batches: val = the last 500 images (10%) of each training
class (file numbers follow the original batch order, so these are the same images as
``load_dataset("cifar10", "val")``), test = ``test/``.
"""

from pathlib import Path

from hqvae.data.archive import is_archive
from hqvae.data.dataset import ImageDataset
from hqvae.data.download import verify_checksum
from hqvae.data.errors import DataError
from hqvae.data.image_folder import load_image_folder
from hqvae.data.paths import data_root

ARCHIVE = "cifar10-jpeg-q75.tar.gz"
SHA256 = "8a63a01a3b4f1d66eac4f29e923633cfca53174576a9321cefdff1e5e28358c8"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_cifar10_folder(split: str, root=None, *, verify: bool = True, cache: bool = True) -> ImageDataset:
    """The CIFAR-10 JPEG copy as uint8 (N, 3, 32, 32); see the module docstring."""
    if root is None:
        shared = data_root()
        if shared is None or not (shared / ARCHIVE).is_file():
            raise DataError(f"{ARCHIVE} not found: set HQVAE_DATA_ROOT to the folder holding it, or pass root=")
        root = shared / ARCHIVE
    root = Path(root)
    if verify and root.is_file() and is_archive(root):
        verify_checksum(root, "sha256", SHA256, hint=f"this is not the known {ARCHIVE}; use "
                                                     f"load_dataset('image_folder', ...) for other copies, "
                                                     f"or pass verify=False")
    dataset = load_image_folder(root, split, channels=3, val_fraction=0.1, cache=cache, name="cifar10_folder",
                                title="CIFAR-10 (JPEG q75 copy)")
    if verify and tuple(dataset.classes) != CLASSES:
        raise DataError(f"{root}: classes {dataset.classes} are not the ten CIFAR-10 classes; "
                        f"use load_dataset('image_folder', ...) for other folders, or pass verify=False")
    if dataset.image_size != (32, 32):
        raise DataError(f"{root}: images are {dataset.image_size}, not 32x32; is this the CIFAR-10 copy?")
    return dataset
