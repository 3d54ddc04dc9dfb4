"""Convolutional ResNet backbone: bottom-up encoder, decoder, up-sampling blocks.

At one latent resolution (÷4, ``hidden`` = 64) this is the public SQ-VAE CIFAR-10 network
(sony/sqvae, ``vision/networks/net_32.py``):

    encoder  conv 4×4/2 (C → h/2), BN, ReLU; conv 4×4/2 (h/2 → h), BN, ReLU;
             conv 3×3 (h → h), BN, ReLU; ResBlock × num_res_blocks
    decoder  ResBlock × num_res_blocks; convT 3×3 (h → h), BN, ReLU;
             convT 4×4/2 (h → h/2), BN, ReLU; convT 4×4/2 (h/2 → C); sigmoid

Finer or coarser finest latents add or remove stride-2 stages (the width halves per extra stage
towards the pixels); each further, coarser resolution adds conv 4×4/2 + BN + ReLU per factor 2
and its own ResBlocks.
"""
from __future__ import annotations

from torch import Tensor, nn


def norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def num_stages(factor: int) -> int:
    """Number of stride-2 stages for a power-of-2 factor."""
    return factor.bit_length() - 1


class ResBlock(nn.Module):
    """x + [ReLU, conv 3×3, BN, ReLU, conv 1×1, BN](x)      (B, C, H, W) -> (B, C, H, W)"""

    def __init__(self, channels: int, batch_norm: bool = True):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(channels, batch_norm),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
            norm(channels, batch_norm),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def res_blocks(channels: int, count: int, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels, batch_norm) for _ in range(count)))


class Upsample(nn.Sequential):
    """×factor with one transposed conv 4×4/2 per factor 2, ReLU in between.

    (B, C, h, w) -> (B, C, h·factor, w·factor)
    """

    def __init__(self, channels: int, factor: int):
        modules: list[nn.Module] = []
        for _ in range(num_stages(factor)):
            modules += [nn.ReLU(), nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)]
        super().__init__(*modules[1:])  # no ReLU before the first


class Encoder(nn.Module):
    """Bottom-up encoder with a ``hidden``-channel feature map at each of ``factors`` (powers of 2 ≥ 2,
    any order), ``num_res_blocks`` residual blocks after each resolution.

    forward: (B, C, H, W) -> {factor: (B, hidden, H / factor, W / factor)}
    """

    def __init__(self, in_channels: int, hidden: int, factors: list[int], num_res_blocks: int, batch_norm: bool):
        super().__init__()
        self.factors = sorted(set(factors))
        stages = num_stages(self.factors[0])
        widths = [hidden >> (stages - 1 - i) for i in range(stages)]  # e.g. [h/2, h] for ÷4
        stem: list[nn.Module] = []
        for channels, width in zip([in_channels, *widths], widths):
            stem += [nn.Conv2d(channels, width, 4, stride=2, padding=1), norm(width, batch_norm), nn.ReLU()]
        stem += [nn.Conv2d(hidden, hidden, 3, padding=1), norm(hidden, batch_norm), nn.ReLU()]
        stem.append(res_blocks(hidden, num_res_blocks, batch_norm))
        self.stages = nn.ModuleList([nn.Sequential(*stem)])
        for finer, coarser in zip(self.factors, self.factors[1:]):
            down: list[nn.Module] = []
            for _ in range(num_stages(coarser // finer)):
                down += [nn.Conv2d(hidden, hidden, 4, stride=2, padding=1), norm(hidden, batch_norm), nn.ReLU()]
            down.append(res_blocks(hidden, num_res_blocks, batch_norm))
            self.stages.append(nn.Sequential(*down))

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        features = {}
        for factor, stage in zip(self.factors, self.stages):
            x = features[factor] = stage(x)
        return features


class Decoder(nn.Module):
    """The finest top-down state -> x̂ in [0, 1] (mirror of the encoder stem).

    forward: (B, hidden, H / factor, W / factor) -> (B, out_channels, H, W)
    """

    def __init__(self, hidden: int, out_channels: int, factor: int, num_res_blocks: int, batch_norm: bool):
        super().__init__()
        widths = [hidden >> i for i in range(num_stages(factor))]  # e.g. [h, h/2] for ÷4
        modules: list[nn.Module] = [
            res_blocks(hidden, num_res_blocks, batch_norm),
            nn.ConvTranspose2d(hidden, hidden, 3, padding=1),
            norm(hidden, batch_norm),
            nn.ReLU(),
        ]
        for width, out in zip(widths, widths[1:]):
            modules += [nn.ConvTranspose2d(width, out, 4, stride=2, padding=1), norm(out, batch_norm),
                        nn.ReLU()]
        modules += [nn.ConvTranspose2d(widths[-1], out_channels, 4, stride=2, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*modules)

    def forward(self, state: Tensor) -> Tensor:
        return self.net(state)


def init_weights(module: nn.Module, std: float) -> None:
    """Conv weights ~ N(0, std²); BatchNorm weight ~ N(1, std²), bias 0 (the SQ-VAE code's init)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
