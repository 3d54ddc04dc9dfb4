"""``load_dataset``: one entry point for every data source.

======================  ==============================================  ==========================
name                    source                                          items
======================  ==============================================  ==========================
``fashion_mnist``       IDX files (:mod:`hqvae.data.mnist`)              uint8 1×28×28
``mnist``               IDX files (:mod:`hqvae.data.mnist`)              uint8 1×28×28
``cifar10``             python batches (:mod:`hqvae.data.cifar`)         uint8 3×32×32
``cifar10_folder``      JPEG q75 copy (:mod:`hqvae.data.cifar_folder`)   uint8 3×32×32
``image_folder``        any image folder/archive, ``root`` required     uint8 C×H×W
                        (:mod:`hqvae.data.image_folder`)
``audio_folder``        WAV folder, ``root`` required                   float32 1×n_mels×frames
                        (:mod:`hqvae.data.audio_folder`)
``fsdd``                Free Spoken Digit Dataset                       float32 1×80×128
                        (:mod:`hqvae.data.audio_folder`)
======================  ==============================================  ==========================

Every entry is a loader of one signature, ``loader(split, root=None, **options) -> ImageDataset``;
:func:`register_dataset` adds one (``hqvae train data.name=<name>`` then trains on it). Each
source's module gives its split (:mod:`hqvae.data.splits` the shared rule); :mod:`hqvae.data.paths`
the cache and local-copy settings.
"""

from functools import partial

from hqvae.data.audio_folder import load_audio_folder, load_fsdd
from hqvae.data.cifar import load_cifar10
from hqvae.data.cifar_folder import load_cifar10_folder
from hqvae.data.dataset import ImageDataset
from hqvae.data.errors import DataError
from hqvae.data.image_folder import load_image_folder
from hqvae.data.mnist import load_mnist
from hqvae.data.splits import check_split


def _needs_root(loader, name: str):
    def load(split: str, root=None, **options):
        if root is None:
            raise DataError(f"load_dataset('{name}', ...) needs root= pointing at the folder (or archive)")
        return loader(root, split, **options)
    return load


LOADERS = {
    "fashion_mnist": partial(load_mnist, "fashion_mnist"),
    "mnist": partial(load_mnist, "mnist"),
    "cifar10": load_cifar10,
    "cifar10_folder": load_cifar10_folder,
    "image_folder": _needs_root(load_image_folder, "image_folder"),
    "audio_folder": _needs_root(load_audio_folder, "audio_folder"),
    "fsdd": load_fsdd,
}


def register_dataset(name: str, loader) -> None:
    """Let ``load_dataset(name, split, root, **options)`` call ``loader(split, root, **options)``,
    which returns an :class:`ImageDataset` of ``split`` ("train", "val" or "test")."""
    if name in LOADERS:
        raise ValueError(f"a data set named {name!r} is already registered ({', '.join(LOADERS)})")
    LOADERS[name] = loader


def load_dataset(name: str, split: str = "train", root=None, **options) -> ImageDataset:
    """Load data set ``name`` (see the table above) for ``split`` ("train", "val" or "test").

    ``root`` points at a local copy (folder, archive or IDX folder, depending on the source);
    ``options`` go to the source's loader (e.g. ``size=64`` for ``image_folder``,
    ``download=False`` for the downloadable ones, ``skip_corrupt=True`` for folders).
    """
    check_split(split)
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(LOADERS)}")
    return LOADERS[name](split, root, **options)
