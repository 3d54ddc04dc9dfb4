"""PNG image grids with Pillow: tiles of images, originals above their reconstructions.

Images are float tensors (N, C, H, W) in [0, 1] (values outside are clipped).  1- and
3-channel images are shown as grey / RGB; spectrograms (``spectrogram=True``, 1 channel,
frequency along H) are drawn through a colormap with low frequencies at the bottom.  Small
images are enlarged by an integer factor (nearest neighbour) so that a 28×28 item stays visible.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hqvae.io import atomic_write

PAD = 2  # pixels between tiles (after enlarging)
BACKGROUND = "white"
MIN_SIDE = 64  # tiles are enlarged until their shorter side reaches this many pixels
COLORMAP = "magma"


def to_pil(image: torch.Tensor, spectrogram: bool = False, scale: int = 1) -> Image.Image:
    """One image (C, H, W) in [0, 1] -> a Pillow image, enlarged ``scale`` times."""
    pixels = image.detach().float().clamp(0, 1).cpu().numpy()
    if spectrogram:
        from matplotlib import colormaps  # optional dependency, only for spectrograms

        pixels = colormaps[COLORMAP](pixels[0][::-1])[..., :3]  # (H, W, 3), low frequencies at the bottom
    elif pixels.shape[0] in (1, 3):
        pixels = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    else:
        raise ValueError(f"can only draw 1- or 3-channel images, got {pixels.shape[0]} channels")
    picture = Image.fromarray((pixels * 255).round().astype(np.uint8))
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def tile(rows: list[torch.Tensor], spectrogram: bool = False) -> Image.Image:
    """Rows of images, each (N_r, C, H, W) of one size, -> one picture with ``PAD`` pixels between tiles."""
    if not rows or not any(len(row) for row in rows):
        raise ValueError("nothing to draw: no images")
    height, width = rows[0].shape[-2:]
    scale = max(1, -(-MIN_SIDE // min(height, width)))  # the shorter side enlarged to at least MIN_SIDE
    cell_h, cell_w = height * scale + PAD, width * scale + PAD
    columns = max(len(row) for row in rows)
    mode = "RGB" if spectrogram or rows[0].shape[1] == 3 else "L"
    canvas = Image.new(mode, (columns * cell_w + PAD, len(rows) * cell_h + PAD), BACKGROUND)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas.paste(to_pil(image, spectrogram, scale).convert(mode), (PAD + c * cell_w, PAD + r * cell_h))
    return canvas


def reconstruction_grid(x: torch.Tensor, x_hat: torch.Tensor, columns: int = 8,
                        spectrogram: bool = False) -> Image.Image:
    """Originals x and reconstructions x_hat, both (N, C, H, W): pairs of rows, originals above."""
    if x.shape != x_hat.shape:
        raise ValueError(f"originals {tuple(x.shape)} and reconstructions {tuple(x_hat.shape)} differ in shape")
    return tile([row for pair in zip(x.split(columns), x_hat.split(columns)) for row in pair], spectrogram)


def save_png(picture: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``picture`` as PNG, atomically."""
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
