"""The codec as a library: ``hqvae.compress`` and ``hqvae.decompress`` (the CLI commands of the same
names are thin layers over these).

    result = hqvae.compress(["a.png", "b.png"], prior="priors/sqvae2", out="ab.hqz")
    result.prefix_bytes          # [bytes of the file up to layer 1, up to layer 2]
    back = hqvae.decompress("ab.hqz", upto=1)   # reads only the first prefix_bytes[0] bytes
    back.layers, back.images     # the codes of the first layer (exactly those of encode), x̂ (N, C, H, W)

A file is written coarse to fine: with ``progressive`` (the default whenever the prior allows
it) every layer of the tokenizer (HQ-VAE layer, RQ depth, PQ-VAE step) is its own segment and a
prefix of segments, or a file cut after a whole segment, decodes on its own. The format is in
``hqvae.hqz``, the coder in ``hqvae.priors.coding``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from hqvae.codes_file import SUFFIXES, load_codes
from hqvae.hqz import VERSION, Hqz, HqzError, pack, read_hqz, unpack
from hqvae.io import atomic_write_bytes
from hqvae.priors.coding import (DEFAULT_CODING_BATCH, coding_copy, decode_tokens, encode_tokens,
                                 progressive_problem)
from hqvae.priors.folder import OpenedPrior, check_codes_origin, open_prior
from hqvae.priors.layout import CodeLayout, decode_layers

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class Compressed:
    """What :func:`compress` wrote: the file's ``data`` (also at ``path`` when given), the number of
    ``items`` (``tokens`` codes in all), ``prefix_bytes[s]`` the bytes up to the end of segment s (one segment per layer when
    ``progressive``), the seconds spent encoding images into codes and range coding them."""

    data: bytes
    path: Path | None
    items: int
    tokens: int
    progressive: bool
    prefix_bytes: list[int]
    encode_seconds: float
    coding_seconds: float

    @property
    def bytes(self) -> int:
        return len(self.data)


@dataclass
class Decompressed:
    """What :func:`decompress` read: ``layers`` the decoded codes (one (N, *positions) long tensor
    per layer, the first ``upto`` of ``total_layers``), ``images`` x̂ (N, C, H, W) in [0, 1] decoded
    from them (None without images), ``metadata`` for a codes file of them, the seconds spent."""

    layers: list[torch.Tensor]
    upto: int
    total_layers: int
    images: torch.Tensor | None
    hqz: Hqz
    metadata: dict
    coding_seconds: float
    decode_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def read_images(paths: Sequence[str | os.PathLike], channels: int, size: Sequence[int]) -> torch.Tensor:
    """Image files -> x (N, C, H, W) float in [0, 1] (8-bit values / 255, as the data loaders give),
    converted to ``channels`` (grey or RGB); every file must be ``size`` (H, W) pixels."""
    from hqvae.data.errors import CorruptFileError
    from hqvae.data.image_folder import decode_image

    if channels not in (1, 3):
        raise ValueError(f"the tokenizer takes {channels}-channel inputs; compress its codes file (hqvae encode) instead")
    images = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image file")
        try:
            array = decode_image(path.read_bytes(), str(path), channels)
        except CorruptFileError as error:
            raise ValueError(f"{path} is not a readable image ({type(error.__cause__).__name__}); pass image files "
                             "or one codes file") from None
        if list(array.shape[:2]) != list(size):
            raise ValueError(f"{path} is {array.shape[0]}×{array.shape[1]} pixels but the tokenizer was trained on "
                             f"{size[0]}×{size[1]}; resize it to that size first")
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(images).float() / 255


def _open(prior, checkpoint: str = "best") -> OpenedPrior:
    return prior if isinstance(prior, OpenedPrior) else open_prior(prior, checkpoint, "cpu")


def _layers_of(inputs, opened: OpenedPrior, device: str, batch_size: int) -> tuple[list[torch.Tensor], float]:
    """The codes (one tensor per layer) of ``inputs``: image paths, one codes file, images x (N, C, H, W)
    in [0, 1], or codes (a list of integer tensors); and the seconds the tokenizer took."""
    from hqvae.data import ImageDataset
    from hqvae.runs import encode_items

    layout = opened.prior.layout
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(x, torch.Tensor) for x in inputs):
        layout.check_layers(inputs, "the codes given")
        return [code.long() for code in inputs], 0.0
    if isinstance(inputs, torch.Tensor):
        x, what = inputs, "the images given"
    else:
        paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
        if not paths:
            raise ValueError("nothing to compress: pass image files, one codes file, images or codes")
        if any(p.suffix in SUFFIXES for p in paths):
            if len(paths) != 1:
                raise ValueError("pass either image files or exactly one codes file, not both or several codes files")
            layers, _, metadata = load_codes(paths[0])
            check_codes_origin(metadata, opened, f"the codes in {paths[0]}")
            layout.check_layers(layers, f"the codes in {paths[0]}")
            return layers, 0.0
        unknown = [str(p) for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
        if unknown:
            raise ValueError(f"{unknown[:3]}: not image files ({', '.join(IMAGE_SUFFIXES)}) or a codes file "
                             f"({' or '.join(SUFFIXES)})")
        x, what = None, f"{len(paths)} image files"
    if opened.info.get("log_mel"):
        raise ValueError("this prior's run works on spectrograms; compress a codes file of `hqvae encode` instead")
    tokenizer = opened.open_tokenizer(device)
    if x is None:
        x = read_images(paths, tokenizer.model.config.in_channels, opened.info["image_size"])
    if x.dim() != 4 or list(x.shape[2:]) != list(opened.info["image_size"]):
        raise ValueError(f"{what}: expected images (N, C, {opened.info['image_size'][0]}, "
                         f"{opened.info['image_size'][1]}), got {tuple(x.shape)}")
    start = time.perf_counter()
    dataset = ImageDataset(x.float(), torch.full((x.shape[0],), -1), name="files", split="input", description=what)
    layers = encode_items(tokenizer.model, dataset, batch_size)  # the prior's tokenizer at its size: its layout
    return layers, time.perf_counter() - start


def compress(inputs, prior, out: str | os.PathLike | None = None, *, coding_batch: int = DEFAULT_CODING_BATCH,
             progressive: bool | None = None, checkpoint: str = "best", device: str = "cpu",
             batch_size: int = 256, record_prior_path: bool = True) -> Compressed:
    """Range-code ``inputs`` with ``prior`` (a prior folder or an opened one) into ``.hqz`` bytes,
    written atomically to ``out`` when given.

    inputs: image file paths (all the run's image size), one codes file of ``hqvae encode``, images
    x (N, C, H, W) in [0, 1], or codes (one (N, *positions) integer tensor per layer).
    progressive: one segment per layer, coarse to fine (None: whenever the prior allows it; True:
    a ValueError naming the reason when it does not); record_prior_path: store the prior's folder
    so that ``decompress`` finds it without being told (it costs its length in bytes)."""
    if out is not None and Path(out).suffix != ".hqz":
        raise ValueError(f"{out}: the compressed file must end in .hqz")
    if coding_batch < 1:
        raise ValueError(f"coding_batch must be ≥ 1, got {coding_batch}")
    opened = _open(prior, checkpoint)
    layout = opened.prior.layout
    if progressive is None:
        progressive = progressive_problem(opened.prior) is None
    layers, encode_seconds = _layers_of(inputs, opened, device, batch_size)
    tokens = layout.flatten(layers)
    start = time.perf_counter()
    segments = encode_tokens(coding_copy(opened.prior), tokens, coding_batch, progressive)
    coding_seconds = time.perf_counter() - start
    data = pack(segments, items=int(tokens.shape[0]), coding_batch=coding_batch, layers=layout.num_layers,
                progressive=progressive, prior_fingerprint=opened.fingerprint,
                model_fingerprint=opened.tokenizer["model_fingerprint"], prior_checkpoint=opened.which,
                prior_path=str(opened.folder.root.resolve()) if record_prior_path else None)
    if out is not None:
        atomic_write_bytes(Path(out), data)
    prefix = unpack(data, "the file written").prefix_bytes
    return Compressed(data, None if out is None else Path(out), int(tokens.shape[0]), tokens.numel(), progressive,
                      prefix, encode_seconds, coding_seconds)


def _check(hqz: Hqz, opened: OpenedPrior, name: str) -> None:
    """An HqzError naming the fix when the file was written with another prior or tokenizer."""
    if not opened.fingerprint.startswith(hqz.prior_fingerprint or "?"):
        raise HqzError(f"{name} was compressed with the prior {hqz.prior_path or '(folder not recorded)'} "
                       f"({hqz.prior_checkpoint} checkpoint, weights {hqz.prior_fingerprint}), not with this prior "
                       f"(weights {opened.fingerprint}); pass that prior with --prior")
    if not opened.tokenizer["model_fingerprint"].startswith(hqz.model_fingerprint or "?"):
        raise HqzError(f"{name} holds codes of the tokenizer weights {hqz.model_fingerprint}, but the prior models "
                       f"those of {opened.tokenizer['model_fingerprint']}; pass the prior trained on that run with --prior")
    layout = opened.prior.layout
    if hqz.layers != layout.num_layers:
        raise HqzError(f"{name} holds codes of {hqz.layers} layers, the prior's have {layout.num_layers}; pass the "
                       f"prior it was made with")
    expected = layout.to_dict()
    found = {key: hqz.extra.get(key) for key in expected}
    if hqz.version == 1 and found != expected:
        raise HqzError(f"{name} holds codes of layout {found['code_shapes']} / {found['codebook_sizes']}, the prior's "
                       f"is {expected['code_shapes']} / {expected['codebook_sizes']}; pass the prior it was made with")


def decompress(source: str | os.PathLike | bytes, prior=None, *, upto: int | None = None, images: bool = True,
               run: str | os.PathLike | None = None, device: str = "cpu", batch_size: int = 256) -> Decompressed:
    """Decode a ``.hqz`` file (its path, or its bytes) back into codes, and images unless ``images``
    is False.

    prior: the prior folder (default: the one recorded in the file) or an opened prior; upto: decode
    the first ``upto`` layers only (a progressive file; only the bytes they need are read); run: the
    tokenizer run when it has moved. A file cut after a whole segment decodes the layers it holds
    (``notes`` says so); a file of version 1 decodes whole."""
    name = "the data" if isinstance(source, (bytes, bytearray)) else str(source)
    if upto is not None and upto < 1:
        raise ValueError(f"upto must be ≥ 1 (the number of layers to decode, coarse to fine), got {upto}")
    hqz = unpack(bytes(source), name, upto) if isinstance(source, (bytes, bytearray)) else read_hqz(source, upto)
    if prior is None:
        if not hqz.prior_path or not Path(hqz.prior_path).is_dir():
            where = f"the prior {hqz.prior_path}, which is not here" if hqz.prior_path else "a prior it does not name"
            raise HqzError(f"{name} was compressed with {where}; pass its folder with --prior")
        prior = hqz.prior_path
    opened = _open(prior, hqz.prior_checkpoint)
    _check(hqz, opened, name)
    layout = opened.prior.layout
    if upto is not None and upto > layout.num_layers:
        raise ValueError(f"upto must be between 1 and {layout.num_layers} (the layers of {name}), got {upto}")
    notes = []
    if upto is not None and not hqz.progressive:
        notes.append(f"{name} is not progressive (all layers in one segment): read whole, decoded the first {upto} "
                     f"of its layers into images")
    if hqz.progressive and hqz.complete < (upto or hqz.total_segments):
        if upto is not None:
            raise HqzError(f"{name} is truncated: it holds {hqz.complete} whole layer segment"
                           f"{'s' if hqz.complete > 1 else ''} of {hqz.total_segments}, not {upto}; decode upto "
                           f"{hqz.complete}, or copy the whole file again")
        notes.append(f"{name} is truncated after {hqz.complete} of its {hqz.total_segments} layers (at byte "
                     f"{hqz.prefix_bytes[hqz.complete - 1]}): decoded the first {hqz.complete}")
    start = time.perf_counter()
    tokens = decode_tokens(coding_copy(opened.prior), hqz.segments, hqz.items, hqz.coding_batch, hqz.progressive,
                           version=hqz.version)
    coding_seconds = time.perf_counter() - start
    count = hqz.complete if hqz.progressive else (upto or layout.num_layers)
    prefix = CodeLayout(layout.code_shapes[:count], layout.codebook_sizes[:count])  # the layers decoded
    layers = prefix.unflatten(tokens[:, :prefix.length])
    info = opened.info
    metadata = {"model_type": info["tokenizer"]["model_type"], "num_layers": count, **prefix.to_dict(),
                "in_channels": info.get("in_channels"), "image_size": info.get("image_size"), "items": hqz.items,
                "split": "decompressed", "dataset": f"decompressed from {name}",
                "run": {"path": info["tokenizer"].get("run"), "name": Path(info["tokenizer"].get("run") or "").name},
                "checkpoint": {"which": opened.tokenizer["checkpoint"], "step": opened.tokenizer.get("step")},
                "model_fingerprint": hqz.model_fingerprint, "log_mel": info.get("log_mel")}
    x_hat, decode_seconds = None, 0.0
    if images:
        tokenizer = opened.open_tokenizer(device, run)
        start = time.perf_counter()
        x_hat = decode_layers(tokenizer.model, layers, batch_size, upto=count)
        decode_seconds = time.perf_counter() - start
    return Decompressed(layers, count, layout.num_layers, x_hat, hqz, metadata, coding_seconds, decode_seconds, notes)


__all__ = ["Compressed", "Decompressed", "HqzError", "IMAGE_SUFFIXES", "VERSION", "compress", "decompress",
           "read_images"]
