"""Data sets held in memory as tensors, with deterministic splits and fast batching.

``load_dataset(name, split, root=None, **options)`` returns an :class:`ImageDataset`; its
``batches(...)`` method or :func:`make_loader` serve float batches in [0, 1].  See
:mod:`hqvae.data.registry` for the sources, :mod:`hqvae.data.splits` for the split rule and
:mod:`hqvae.data.paths` for ``HQVAE_DATA`` (cache) and ``HQVAE_DATA_ROOT`` (local copies).
"""

from hqvae.data.audio import LogMel, griffin_lim, log_mel, mel_to_audio, read_wav, write_wav
from hqvae.data.dataset import ImageDataset
from hqvae.data.download import download, file_digest, verify_checksum
from hqvae.data.errors import ChecksumError, CorruptFileError, DataError
from hqvae.data.loader import BatchLoader, make_loader
from hqvae.data.paths import cache_dir, data_root
from hqvae.data.registry import LOADERS, load_dataset, register_dataset
from hqvae.data.splits import SPLITS

__all__ = [
    "LOADERS", "SPLITS", "BatchLoader", "ChecksumError", "CorruptFileError", "DataError", "ImageDataset", "LogMel",
    "cache_dir", "data_root", "download", "file_digest", "griffin_lim", "load_dataset", "log_mel", "make_loader",
    "mel_to_audio", "read_wav", "register_dataset", "verify_checksum", "write_wav",
]
