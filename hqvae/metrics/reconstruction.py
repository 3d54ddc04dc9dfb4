"""Data-set level reconstruction metrics accumulated over batches (and DDP ranks).

Definitions (all pixels in [0, data_range], data_range = 1 for images in [0, 1]):

* RMSE = sqrt(Σ squared errors / number of values), pooled over every value (pixel × channel)
  of every item, not a mean of per-item RMSEs;
* PSNR = mean over items of ``10 log10(data_range² / MSE_item)`` (MSE floored at 1e-10);
* SSIM = mean over items of :func:`hqvae.metrics.image.ssim` (skimage-compatible).

Only sums are stored (float64), so ``merge`` and ``all_reduce`` give exactly the one-shot
values whatever the batch sizes.
"""

import torch

from hqvae.metrics.codebook import Accumulator
from hqvae.metrics.image import psnr, ssim

_FIELDS = ("squared_error", "values", "psnr", "ssim", "items")


class ReconstructionMetrics(Accumulator):
    """Accumulates RMSE, PSNR and SSIM of reconstructions ``x_hat`` of ``x``, both (B, C, H, W).

    ``x_hat`` is clipped to [0, data_range] first, as a reconstruction shown as an image would
    be.  ``with_ssim=False`` skips SSIM (e.g. for images smaller than 11×11).
    """

    SUMS = ("sums",)

    def __init__(self, data_range: float = 1.0, with_ssim: bool = True):
        self.data_range = data_range
        self.with_ssim = with_ssim
        self.sums = torch.zeros(len(_FIELDS), dtype=torch.float64)

    @torch.no_grad()
    def update(self, x_hat: torch.Tensor, x: torch.Tensor) -> None:
        x_hat, x = x_hat.clamp(0, self.data_range).float(), x.float()
        batch = torch.zeros_like(self.sums)
        batch[0] = (x_hat - x).double().square().sum().cpu()
        batch[1] = x.numel()
        batch[2] = psnr(x_hat, x, self.data_range).double().sum().cpu()
        if self.with_ssim:
            batch[3] = ssim(x_hat, x, self.data_range).double().sum().cpu()
        batch[4] = x.shape[0]
        self.sums += batch

    def compute(self) -> dict:
        """``{"rmse", "mse", "psnr", "ssim" (when enabled), "items", "values"}``."""
        squared_error, values, psnr_sum, ssim_sum, items = self.sums.tolist()
        if items == 0:
            raise ValueError("no reconstructions were added")
        result = {"rmse": (squared_error / values) ** 0.5, "mse": squared_error / values, "psnr": psnr_sum / items,
                  "items": int(items), "values": int(values)}
        if self.with_ssim:
            result["ssim"] = ssim_sum / items
        return result
