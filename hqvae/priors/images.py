"""Writing decoded or sampled items (``hqvae decode``, ``sample``, ``decompress``): one PNG per item,
a grid PNG, and Griffin-Lim WAVs for log-mel spectrogram runs."""
from __future__ import annotations

from pathlib import Path

import torch

from hqvae.data import LogMel, write_wav
from hqvae.io import atomic_write

GRID_ITEMS = 64


def write_items(x_hat: torch.Tensor, out: str | Path, log_mel: dict | None = None) -> list[Path]:
    """x̂ (N, C, H, W) in [0, 1] -> out/00000.png, ... and out/grid.png (the first 64 items, 8 a row);
    with ``log_mel`` (a LogMel config) also out/00000.wav, ... Returns the paths written."""
    from hqvae.report.grids import save_png, tile, to_pil

    out = Path(out)
    inverse = LogMel(**log_mel) if log_mel is not None else None
    written = []
    for i, image in enumerate(x_hat):
        written.append(save_png(to_pil(image), out / f"{i:05d}.png"))
        if inverse is not None:
            samples = inverse.inverse(image[0])
            written.append(atomic_write(out / f"{i:05d}.wav", lambda tmp: write_wav(tmp, samples, inverse.sample_rate)))
    written.append(save_png(tile(list(x_hat[:GRID_ITEMS].split(8)), inverse is not None), out / "grid.png"))
    return written
