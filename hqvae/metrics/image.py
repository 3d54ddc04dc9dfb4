"""Per-item reconstruction metrics for images in [0, data_range]: MSE, RMSE, PSNR, SSIM.

All take ``x_hat`` and ``x`` of shape (B, C, H, W) and return float32 tensors of shape (B,).
They are pure torch, differentiable and run on any device.

SSIM follows Wang et al. (2004) exactly as scikit-image's
``structural_similarity(x, x_hat, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=data_range, channel_axis=0)`` computes it for one item: Gaussian window of σ = 1.5
truncated at 3.5σ (11 taps), K1 = 0.01, K2 = 0.03, local statistics with population
(biased) covariances, the SSIM map cropped by the window radius (5 pixels) on every side,
then the mean over the remaining pixels and the channels.  Because of the crop, the window
never reaches past the image border, so no padding convention enters the result.
"""

import torch
import torch.nn.functional as F

MIN_MSE = 1e-10  # PSNR of a perfect reconstruction is capped at 10·log10(data_range² / MIN_MSE) (100 dB for 1.0)


def _check(x_hat: torch.Tensor, x: torch.Tensor) -> None:
    if x_hat.shape != x.shape or x.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of the same shape, got {tuple(x_hat.shape)} "
                         f"and {tuple(x.shape)}")


def mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each item, (B,)."""
    _check(x_hat, x)
    return (x_hat.float() - x.float()).square().flatten(1).mean(1)


def rmse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Root mean squared error of each item, (B,).  (The data-set RMSE pools squared errors first:
    use :class:`~hqvae.metrics.ReconstructionMetrics`, not the mean of these.)"""
    return mse(x_hat, x).sqrt()


def psnr(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each item in dB, ``10 log10(data_range² / MSE_item)``, (B,)."""
    return 10 * torch.log10(data_range ** 2 / mse(x_hat, x).clamp(min=MIN_MSE))


SSIM_MIN_SIZE = 11  # the taps of SSIM's Gaussian window: smaller images have no SSIM


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate · sigma + 0.5)`` (scipy's ``gaussian_filter`` taps)."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def ssim(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity of each item, mean over channels and cropped pixels, (B,); see module docstring."""
    _check(x_hat, x)
    window = gaussian_window(sigma).to(device=x.device, dtype=torch.float32)
    size = window.numel()
    if min(x.shape[-2:]) < size:
        raise ValueError(f"images must be at least {size}x{size} for SSIM, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    rows = window.view(1, 1, size, 1).repeat(channels, 1, 1, 1)
    cols = window.view(1, 1, 1, size).repeat(channels, 1, 1, 1)

    def blur(image: torch.Tensor) -> torch.Tensor:  # 'valid' separable Gaussian filter, per channel
        return F.conv2d(F.conv2d(image, rows, groups=channels), cols, groups=channels)

    a, b = x_hat.float(), x.float()
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(1)
