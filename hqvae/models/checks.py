"""Input checks shared by the models: each error says what was wrong and how to fix it."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor


def as_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """An image size given as an int or an (H, W) pair -> (H, W)."""
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or an (H, W) pair, got {size!r}")
    return int(size[0]), int(size[1])


def check_image_batch(x: Tensor, channels: int, model_name: str, shape_text: str = "H, W") -> None:
    """Raise a ValueError unless ``x`` is a floating-point (B, channels, H, W) batch."""
    if not isinstance(x, Tensor):
        raise ValueError(f"expected a torch.Tensor of shape (B, {channels}, {shape_text}), got {type(x).__name__}")
    if x.dim() != 4:
        hint = (
            "use x.unsqueeze(1) for a batch of 1-channel images or spectrograms (B, H, W), "
            "or x.unsqueeze(0) for a single image (C, H, W)"
            if x.dim() == 3
            else "reshape it to (B, C, H, W)"
        )
        raise ValueError(f"expected a 4-D batch (B, {channels}, {shape_text}), got shape {tuple(x.shape)}; {hint}")
    if not x.is_floating_point():
        raise ValueError(f"expected floating-point pixels in [0, 1], got dtype {x.dtype}; use x.float() / 255")
    if x.shape[1] != channels:
        raise ValueError(
            f"expected {channels} input channel(s), got {x.shape[1]} in shape {tuple(x.shape)}; "
            f"create the model with in_channels={x.shape[1]}, "
            f"e.g. hqvae.create_model({model_name!r}, in_channels={x.shape[1]}, ...)"
        )
