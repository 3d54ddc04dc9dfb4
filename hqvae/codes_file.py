"""Files of discrete codes written by ``hqvae encode`` and read by ``hqvae decode``.

Two containers hold the same content:

* ``.safetensors``: tensors ``layer_0``, ``layer_1``, ... (coarse to fine), each (N, h_l, w_l)
  (a PQ-VAE's steps: (N, G)),
  int16 when every codebook has at most 32768 entries, else int32; ``labels`` (N,) int64 when
  the data set has labels; the metadata as one JSON string under the header key ``hqvae``;
* ``.npz``: the same arrays, and the metadata JSON as the 0-d string array ``metadata``
  (readable with ``numpy.load(path)``, no pickle).

Metadata (JSON): ``format`` ("hqvae.codes/1"), ``model_type``, ``num_layers``,
``code_shapes`` [[h, w], ...] (PQ-VAE: [[G], ...]), ``codebook_sizes`` [K_l, ...], ``in_channels``, ``image_size``
[H, W], ``items``, ``split``, ``dataset`` (description), ``run`` {path, name},
``checkpoint`` {which, step}, ``model_fingerprint`` (sha256 prefix of the weights),
``log_mel`` (the spectrogram parameters for audio data sets, else null).
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hqvae.io import atomic_write

FORMAT = "hqvae.codes/1"
METADATA_KEY = "hqvae"
SUFFIXES = (".safetensors", ".npz")
INT16_MAX_CODES = 2**15


def check_suffix(path: str | os.PathLike) -> str:
    """The file's suffix, which must be one of ``SUFFIXES``."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: a codes file must end in {' or '.join(SUFFIXES)}")
    return path.suffix


def save_codes(path: str | os.PathLike, codes: list[torch.Tensor], labels: torch.Tensor | None,
               metadata: dict) -> Path:
    """Write ``codes`` (one (N, *positions) integer tensor per layer), ``labels`` (N,) or None and
    ``metadata`` (JSON-ready dict) atomically, as safetensors or npz by the file's suffix."""
    path = Path(path)
    suffix = check_suffix(path)
    dtype = torch.int16 if max(metadata["codebook_sizes"]) <= INT16_MAX_CODES else torch.int32
    tensors = {f"layer_{layer}": code.to(dtype).contiguous().cpu() for layer, code in enumerate(codes)}
    if labels is not None:
        tensors["labels"] = labels.to(torch.int64).contiguous().cpu()
    text = json.dumps({"format": FORMAT, **metadata})
    if suffix == ".safetensors":
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={METADATA_KEY: text}))

    def write_npz(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object keeps numpy from appending ".npz" to the name
            np.savez(handle, metadata=np.array(text), **{key: value.numpy() for key, value in tensors.items()})

    return atomic_write(path, write_npz)


def _corrupt(path: Path, reason: str) -> ValueError:
    return ValueError(f"{path} is not a readable hqvae codes file ({reason}); re-create it with "
                      f"`hqvae encode --run runs/<name> --out {path.name}`")


def _read_arrays(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of the file and its metadata JSON text (None when absent)."""
    if check_suffix(path) == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                text = (handle.metadata() or {}).get(METADATA_KEY)
                return {key: handle.get_tensor(key) for key in handle.keys()}, text
        except (SafetensorError, OSError, ValueError) as error:
            raise _corrupt(path, str(error)) from None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _corrupt(path, str(error)) from None
    text = arrays.pop("metadata", None)
    return {key: torch.from_numpy(value) for key, value in arrays.items()}, (None if text is None else str(text))


def load_codes(path: str | os.PathLike) -> tuple[list[torch.Tensor], torch.Tensor | None, dict]:
    """(codes: one (N, *positions) int64 tensor per layer, labels (N,) or None, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such codes file; write one with "
                                f"`hqvae encode --run runs/<name> --out {path.name}`")
    tensors, text = _read_arrays(path)
    if text is None:
        raise _corrupt(path, "no hqvae metadata")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as error:
        raise _corrupt(path, f"metadata is not JSON: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise _corrupt(path, f"metadata format is not {FORMAT!r}")
    keys = [f"layer_{layer}" for layer in range(sum(key.startswith("layer_") for key in tensors))]
    if not keys or any(key not in tensors for key in keys):
        raise _corrupt(path, f"expected tensors layer_0 ... layer_<L-1>, found {sorted(tensors)}")
    codes = [tensors[key].to(torch.int64) for key in keys]
    if any(code.dim() < 2 or code.shape[0] != codes[0].shape[0] for code in codes):
        raise _corrupt(path, f"layer tensors must all be (N, *positions) with the same N, got "
                             f"{[tuple(code.shape) for code in codes]}")
    labels = tensors.get("labels")
    if labels is not None and tuple(labels.shape) != (codes[0].shape[0],):
        raise _corrupt(path, f"labels must be ({codes[0].shape[0]},), one per item, got {tuple(labels.shape)}")
    return codes, labels, metadata


def check_codes(codes: list[torch.Tensor], metadata: dict, model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Raise a ValueError saying what differs when ``codes`` cannot have come from ``model``:
    number of layers, grid of any layer (for the image size implied by layer 0), or an index
    beyond a layer's codebook.  A prefix of the model's layers (coarse to fine, as
    ``hqvae decompress --upto`` writes) fits."""
    origin = (f"the codes were made by a {metadata.get('model_type', '?')!r} model with "
              f"{metadata.get('num_layers', '?')} layers, grids {metadata.get('code_shapes')} and codebook sizes "
              f"{metadata.get('codebook_sizes')} (run {metadata.get('run', {}).get('path', '?')})")

    def mismatch(problem: str) -> ValueError:
        return ValueError(f"{path}: {problem}; {origin}; decode them with the run that encoded them (--run), or "
                          f"re-encode with this run")

    sizes, name = model.codebook_sizes, model.config.name
    if not 1 <= len(codes) <= len(sizes):
        raise mismatch(f"{len(codes)} code layers, but this {name!r} model has {len(sizes)}")
    grids = [tuple(code.shape[1:]) for code in codes]
    if [len(grid) for grid in grids] != [len(shape) for shape in model.code_shapes()[:len(codes)]]:
        raise mismatch(f"code grids {grids} do not fit this {name!r} model, whose layers are {model.code_shapes()}")
    expected = model.code_shapes_like(codes)[:len(codes)]
    if grids != expected:
        raise mismatch(f"code grids {grids} do not fit this {name!r} model, which makes {expected} for inputs of "
                       f"that size")
    for layer, (code, size) in enumerate(zip(codes, sizes)):
        if code.numel() and (code.min() < 0 or code.max() >= size):
            raise mismatch(f"layer {layer} holds indices in [{int(code.min())}, {int(code.max())}] but this model's "
                           f"codebook has {size} entries")
