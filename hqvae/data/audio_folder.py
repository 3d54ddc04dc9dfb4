"""Folders of WAV files as log-mel spectrogram images, and the Free Spoken Digit Dataset.

Every clip is read (:func:`hqvae.data.audio.read_wav`; several channels are averaged to mono),
must have the :class:`~hqvae.data.audio.LogMel` sample rate (no resampling is done), and is
turned into a float32 spectrogram (1, n_mels, frames) in [0, 1].  All clips are converted in
one batched STFT, so no cache is needed: the 3,000 FSDD clips take well under a second.

Two naming rules:

* ``load_audio_folder``: the folder rules of :mod:`hqvae.data.layout` (class sub-folders,
  flat folders, ``train/``/``val/``/``test/``) with the per-class tail split.
* ``load_fsdd``: the Free Spoken Digit Dataset, files ``{digit}_{speaker}_{take}.wav`` in one
  folder (``recordings/`` of the repository).  Label = digit.  Splits: takes 0–4 test (the
  dataset's standard split), takes 5–9 val, takes 10–49 train: every speaker and digit is in
  every split.  A file not following the naming raises an error naming it.

``meta`` of the result: ``files`` (each item's path inside the folder), ``skipped``,
``log_mel`` (the :class:`LogMel`, whose ``inverse`` turns items back into sound), and for FSDD
``speakers`` and ``takes``.
"""

import re
from pathlib import Path

import numpy as np
import torch

from hqvae.data.audio import LogMel, read_wav
from hqvae.data.dataset import ImageDataset
from hqvae.data.errors import CorruptFileError, DataError
from hqvae.data.layout import WHOLE, FolderPlan, decode_files, folder_dataset, list_files, plan_folder
from hqvae.data.paths import data_root

FSDD_NAME = re.compile(r"(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<take>\d+)\.wav")
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"


def _spectrograms(plan: FolderPlan, split: str, log_mel: LogMel, skip_corrupt: bool) -> dict:
    """:func:`decode_files` with the clips as ``images``, spectrograms float32 (N, 1, n_mels, frames)."""
    root = Path(plan.source)

    def read(path: str) -> np.ndarray:
        samples, rate = read_wav(root / path)
        if rate != log_mel.sample_rate:
            raise CorruptFileError(f"{root / path}: sample rate {rate} Hz, expected {log_mel.sample_rate} Hz; "
                                   f"resample the files or pass sample_rate={rate}")
        if samples.shape[1] <= log_mel.n_fft // 2 and log_mel.frames is None:
            raise CorruptFileError(f"{root / path}: only {samples.shape[1]} samples, too short for a spectrogram")
        return log_mel.fix_length(samples.mean(0)).numpy()

    data = decode_files(plan, split, read, skip_corrupt, "WAV", "frames= to cut or pad every clip to one length")
    data["images"] = log_mel(torch.from_numpy(data.pop("items"))).unsqueeze(1).contiguous()
    return data


def _wav_files(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; pass root= pointing at the folder of WAV files")
    return list_files(root, (".wav",))


def load_audio_folder(root, split: str = "train", *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                      skip_corrupt: bool = False, name: str = "audio_folder", **log_mel_options) -> ImageDataset:
    """A folder of WAV files as float32 spectrograms (N, 1, n_mels, frames); see the module docstring.

    ``log_mel_options`` are :class:`LogMel`'s parameters (``sample_rate``, ``n_fft``, ...).
    """
    root = Path(root)
    log_mel = LogMel(**log_mel_options)
    data = _spectrograms(plan_folder(_wav_files(root), str(root)), split, log_mel, skip_corrupt)
    return folder_dataset(data, split, val_fraction, test_fraction, root=root, name=name,
                          title="Audio folder as log-mel spectrograms", what="WAV", items="clips", log_mel=log_mel)


def load_fsdd(split: str = "train", root=None, *, skip_corrupt: bool = False, **log_mel_options) -> ImageDataset:
    """The Free Spoken Digit Dataset as float32 spectrograms (N, 1, 80, 128) by default; see the module docstring.

    ``root``: the recordings folder or a folder holding ``recordings/``; default ``$HQVAE_DATA_ROOT/fsdd``.
    """
    if root is None:
        if data_root() is None:
            raise DataError(f"FSDD not found: pass root= (the recordings/ folder of {FSDD_URL}) or set "
                            f"HQVAE_DATA_ROOT to a folder holding fsdd/recordings/")
        root = data_root() / "fsdd"
    folder = Path(root) / "recordings" if (Path(root) / "recordings").is_dir() else Path(root)
    matches = {}  # path → its name's match, for the files of this split
    for path in _wav_files(folder):
        match = FSDD_NAME.fullmatch(path)
        if match is None:
            raise DataError(f"{folder / path}: not an FSDD name ({{digit}}_{{speaker}}_{{take}}.wav); remove it, "
                            f"or use load_dataset('audio_folder', ...) for other folders")
        take = int(match["take"])
        if split == ("test" if take < 5 else "val" if take < 10 else "train"):
            matches[path] = match
    if not matches:
        raise DataError(f"{folder}: no FSDD recordings of the {split} split; point root= at the recordings/ folder")
    log_mel = LogMel(**log_mel_options)
    classes = tuple(str(digit) for digit in range(10))
    digits = tuple(int(match["digit"]) for match in matches.values())
    plan = FolderPlan(str(folder), tuple(matches), (WHOLE,) * len(matches), digits, classes)
    data = _spectrograms(plan, split, log_mel, skip_corrupt)
    kept = [matches[path] for path in data["paths"]]
    return folder_dataset(data, split, 0, 0, root=folder, name="fsdd", what="WAV", items="clips",
                          title=f"Free Spoken Digit Dataset as log-mel spectrograms {tuple(data['images'].shape[1:])}",
                          rule={"test": "takes 0-4", "val": "takes 5-9", "train": "takes 10-49"}[split],
                          speakers=[match["speaker"] for match in kept], takes=[int(match["take"]) for match in kept],
                          log_mel=log_mel)
