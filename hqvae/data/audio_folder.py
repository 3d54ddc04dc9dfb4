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
import warnings
from pathlib import Path

import torch

from hqvae.data.audio import LogMel, read_wav
from hqvae.data.dataset import ImageDataset
from hqvae.data.errors import CorruptFileError, DataError
from hqvae.data.layout import is_visible, plan_folder, select_split
from hqvae.data.paths import data_root
from hqvae.data.splits import check_split

FSDD_NAME = re.compile(r"(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<take>\d+)\.wav")
FSDD_TEST_TAKES = range(0, 5)
FSDD_VAL_TAKES = range(5, 10)
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"


def _spectrograms(root: Path, paths: list[str], log_mel: LogMel,
                  skip_corrupt: bool) -> tuple[torch.Tensor, list[int], list[str]]:
    """Spectrograms (N, 1, n_mels, frames) of the readable clips, their positions in ``paths``, and the skipped."""
    clips, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            samples, rate = read_wav(root / path)
            if rate != log_mel.sample_rate:
                raise CorruptFileError(f"{root / path}: sample rate {rate} Hz, expected {log_mel.sample_rate} Hz; "
                                       f"resample the files or pass sample_rate={rate}")
            if samples.shape[1] <= log_mel.n_fft // 2 and log_mel.frames is None:
                raise CorruptFileError(f"{root / path}: only {samples.shape[1]} samples, too short for a spectrogram")
        except CorruptFileError:
            if not skip_corrupt:
                raise
            skipped.append(path)
            continue
        clips.append(log_mel.fix_length(samples.mean(0)))
        kept.append(i)
    if not clips:
        raise DataError(f"{root}: none of the {len(paths)} WAV files could be read")
    if log_mel.frames is None and len({clip.shape[-1] for clip in clips}) > 1:
        raise DataError(f"{root}: clips of different lengths; pass frames= to cut or pad them to one size")
    with torch.no_grad():
        images = log_mel(torch.stack(clips)).unsqueeze(1)
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable WAV files, e.g. {skipped[0]}", stacklevel=3)
    return images.contiguous(), kept, skipped


def _wav_files(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; pass root= pointing at the folder of WAV files")
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                  if path.suffix.lower() == ".wav" and path.is_file() and is_visible(path.relative_to(root).as_posix()))


def load_audio_folder(root, split: str = "train", *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                      skip_corrupt: bool = False, name: str = "audio_folder", **log_mel_options) -> ImageDataset:
    """A folder of WAV files as float32 spectrograms (N, 1, n_mels, frames); see the module docstring.

    ``log_mel_options`` are :class:`LogMel`'s parameters (``sample_rate``, ``n_fft``, ...).
    """
    check_split(split)
    root = Path(root)
    log_mel = LogMel(**log_mel_options)
    plan = plan_folder(_wav_files(root), str(root))
    groups = plan.needed_groups(split)
    chosen = [i for i, group in enumerate(plan.groups) if group in groups]
    images, kept, skipped = _spectrograms(root, [plan.paths[i] for i in chosen], log_mel, skip_corrupt)
    chosen = [chosen[k] for k in kept]
    labels = torch.tensor([plan.labels[i] for i in chosen], dtype=torch.int64)
    item_groups = [plan.groups[i] for i in chosen]
    indices, rule = select_split(split, labels, item_groups, val_fraction, test_fraction)
    description = (f"Audio folder as log-mel spectrograms, {split} split ({rule}), {len(indices)} clips, "
                   f"from {root}" + (f", {len(skipped)} unreadable files skipped" if skipped else ""))
    return ImageDataset(images[indices], labels[indices], name=name, split=split, description=description,
                        classes=plan.classes,
                        meta={"files": [plan.paths[chosen[i]] for i in indices.tolist()], "skipped": skipped,
                              "log_mel": log_mel})


def _fsdd_folder(root) -> Path:
    """The folder of FSDD recordings: ``root`` (or its ``recordings/``), else ``$HQVAE_DATA_ROOT/fsdd/recordings``."""
    if root is None:
        shared = data_root()
        if shared is None:
            raise DataError(f"FSDD not found: pass root= (the recordings/ folder of {FSDD_URL}) or set "
                            f"HQVAE_DATA_ROOT to a folder holding fsdd/recordings/")
        root = shared / "fsdd"
    root = Path(root)
    return root / "recordings" if (root / "recordings").is_dir() else root


def load_fsdd(split: str = "train", root=None, *, skip_corrupt: bool = False, **log_mel_options) -> ImageDataset:
    """The Free Spoken Digit Dataset as float32 spectrograms (N, 1, 80, 128) by default; see the module docstring."""
    check_split(split)
    folder = _fsdd_folder(root)
    paths, digits, speakers, takes = [], [], [], []
    for path in _wav_files(folder):
        match = FSDD_NAME.fullmatch(path)
        if match is None:
            raise DataError(f"{folder / path}: not an FSDD name ({{digit}}_{{speaker}}_{{take}}.wav); remove it, "
                            f"or use load_dataset('audio_folder', ...) for other folders")
        take = int(match["take"])  # 0–4 test, 5–9 val, the rest train
        if split == ("test" if take in FSDD_TEST_TAKES else "val" if take in FSDD_VAL_TAKES else "train"):
            paths.append(path)
            digits.append(int(match["digit"]))
            speakers.append(match["speaker"])
            takes.append(take)
    if not paths:
        raise DataError(f"{folder}: no FSDD recordings of the {split} split; point root= at the recordings/ folder")
    log_mel = LogMel(**log_mel_options)
    images, kept, skipped = _spectrograms(folder, paths, log_mel, skip_corrupt)
    rule = {"test": "takes 0-4", "val": "takes 5-9", "train": "takes 10-49"}[split]
    description = (f"Free Spoken Digit Dataset as log-mel spectrograms {tuple(images.shape[1:])}, {split} split "
                   f"({rule}), {len(kept)} clips, from {folder}"
                   + (f", {len(skipped)} unreadable files skipped" if skipped else ""))
    return ImageDataset(images, torch.tensor([digits[i] for i in kept]), name="fsdd", split=split,
                        description=description, classes=[str(digit) for digit in range(10)],
                        meta={"files": [paths[i] for i in kept], "speakers": [speakers[i] for i in kept],
                              "takes": [takes[i] for i in kept], "skipped": skipped, "log_mel": log_mel})
