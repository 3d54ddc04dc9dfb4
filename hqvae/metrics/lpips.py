"""LPIPS (Zhang et al. 2018, version 0.1), only from weight files the user supplies.

LPIPS needs a pretrained backbone and learned linear layers that cannot be downloaded here, so
nothing is fetched and nothing is reported without them: :func:`load_lpips` raises a clear
error when a path is missing.  The two files:

* ``backbone``: torchvision's ImageNet weights, ``alexnet-owt-7be5be79.pth`` (``net="alex"``)
  or ``vgg16-397923af.pth`` (``net="vgg"``); only the ``features.*`` entries are used;
* ``linear``: the LPIPS v0.1 linear layers, ``alex.pth`` or ``vgg.pth`` from the
  ``lpips`` package (entries ``lin0.model.1.weight`` … ``lin4.model.1.weight``).

Computation: inputs in [0, 1] are mapped to [-1, 1], shifted and scaled per channel as in the
reference, passed through the backbone; at each of five ReLU outputs the features are
unit-normalised along channels, their squared difference weighted by the linear layer, and
averaged over space; the five values are summed.
"""

import os
from pathlib import Path

import torch
from torch import nn

_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

# torchvision ``features`` layouts: ("conv", in, out, kernel, stride, padding), ("relu",), ("pool", kernel, stride);
# the outputs after the listed layer indices are the five LPIPS taps.
_NETS = {
    "alex": ([("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("relu",),
              ("pool", 3, 2), ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
              ("conv", 256, 256, 3, 1, 1), ("relu",)],
             (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": ([("conv", 3, 64, 3, 1, 1), ("relu",), ("conv", 64, 64, 3, 1, 1), ("relu",), ("pool", 2, 2),
             ("conv", 64, 128, 3, 1, 1), ("relu",), ("conv", 128, 128, 3, 1, 1), ("relu",), ("pool", 2, 2),
             ("conv", 128, 256, 3, 1, 1), ("relu",), ("conv", 256, 256, 3, 1, 1), ("relu",),
             ("conv", 256, 256, 3, 1, 1), ("relu",), ("pool", 2, 2),
             ("conv", 256, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
             ("conv", 512, 512, 3, 1, 1), ("relu",), ("pool", 2, 2),
             ("conv", 512, 512, 3, 1, 1), ("relu",), ("conv", 512, 512, 3, 1, 1), ("relu",),
             ("conv", 512, 512, 3, 1, 1), ("relu",)],
            (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
}
_LAYERS = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}  # called with a spec's numbers, in order


class LPIPS(nn.Module):
    """The LPIPS distance; build it with :func:`load_lpips`.  ``forward(x_hat, x)`` → (B,)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in _NETS:
            raise ValueError(f"net must be one of {', '.join(_NETS)}, got {net!r}")
        layers, self.taps, channels = _NETS[net]
        self.features = nn.Sequential(*[_LAYERS[kind](*numbers) for kind, *numbers in layers])
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((2 * x - 1) - self.shift) / self.scale
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return outputs

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LPIPS of each item; inputs (B, 3, H, W) in [0, 1] (grey images are repeated to 3 channels)."""
        if x.shape[1] == 1:
            x_hat, x = x_hat.repeat(1, 3, 1, 1), x.repeat(1, 3, 1, 1)
        return sum(lin((a - b).square()).mean(dim=(1, 2, 3))
                   for lin, a, b in zip(self.lins, self._taps(x_hat.float()), self._taps(x.float())))


def _read_state(path, what: str) -> dict:
    if path is None:
        raise FileNotFoundError(f"LPIPS needs the {what} weight file, which is not downloaded automatically: "
                                f"pass its path (see hqvae.metrics.lpips for which file); LPIPS is not reported "
                                f"without it")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS {what} weights: {path} does not exist; pass the path of the file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a wrong file
        raise ValueError(f"LPIPS {what} weights: cannot read {path} as a PyTorch state dict ({error})") from error


def load_lpips(backbone: str | os.PathLike | None, linear: str | os.PathLike | None, net: str = "alex") -> LPIPS:
    """An :class:`LPIPS` with the user's weight files (module docstring); errors name any missing or wrong file."""
    model = LPIPS(net)
    backbone_state = {key.removeprefix("features."): value for key, value in _read_state(backbone, "backbone").items()
                      if key.startswith("features.")}
    linear_state = {key.replace(".model.1.", ".").replace("lin", "", 1): value
                    for key, value in _read_state(linear, "linear").items() if key.startswith("lin")}
    for module, state, path in ((model.features, backbone_state, backbone), (model.lins, linear_state, linear)):
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{path}: not the {net} LPIPS weights expected here ({error})") from error
    return model
