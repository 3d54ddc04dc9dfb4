"""hqvae.metrics: SSIM against scikit-image on real images, hand-made codebook histograms, accumulators merged
over uneven batches and over two gloo ranks equal to one-shot values, LPIPS only from weight files."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from skimage.metrics import structural_similarity

from hqvae.data import load_dataset
from hqvae.metrics import (LPIPS, CodebookUsage, MinibatchPerplexity, ReconstructionMetrics, bits_per_item,
                           entropy_bits_per_item, load_lpips, mse, psnr, rmse, ssim)

SHARED = Path(os.environ.get("HQVAE_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data")
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_cifar_copy = pytest.mark.skipif(not (SHARED / "cifar10-jpeg-q75.tar.gz").is_file(),
                                      reason="CIFAR-10 JPEG copy not present")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")


def distortions(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Noisy, blurred and shifted versions of x (B, C, H, W) in [0, 1]."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return {"noise": (x + 0.08 * noise).clamp(0, 1),
            "blur": torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False),
            "shift": torch.roll(x, shifts=1, dims=-1),
            "dark": x * 0.7}


def skimage_ssim(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.tensor([structural_similarity(a.numpy().astype(np.float64), b.numpy().astype(np.float64),
                                               gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                               data_range=1.0, channel_axis=0)
                         for a, b in zip(x, x_hat)])


@needs_cifar_copy
def test_ssim_matches_scikit_image_on_real_colour_images(cifar10_jpeg_subset, data_cache):
    x, _ = load_dataset("cifar10_folder", "test", root=cifar10_jpeg_subset).get_batch(torch.arange(40))
    for name, x_hat in distortions(x).items():
        ours = ssim(x_hat, x)
        assert ours.shape == (40,)
        torch.testing.assert_close(ours.double(), skimage_ssim(x_hat, x), rtol=0, atol=1e-4, msg=name)
    assert torch.allclose(ssim(x, x), torch.ones(40))


@needs_fashion
def test_ssim_matches_scikit_image_on_real_grey_images(data_cache):
    x, _ = load_dataset("fashion_mnist", "test", root=FASHION).get_batch(torch.arange(32))
    for name, x_hat in distortions(x).items():
        torch.testing.assert_close(ssim(x_hat, x).double(), skimage_ssim(x_hat, x), rtol=0, atol=1e-4, msg=name)


def test_mse_rmse_psnr_per_item():
    x = torch.full((3, 1, 4, 4), 0.5)
    x_hat = x.clone()
    x_hat[0] += 0.1
    x_hat[1, :, :2] -= 0.2  # half the pixels off by 0.2: MSE 0.02
    torch.testing.assert_close(mse(x_hat, x), torch.tensor([0.01, 0.02, 0.0]))
    torch.testing.assert_close(rmse(x_hat, x), torch.tensor([0.1, math.sqrt(0.02), 0.0]))
    torch.testing.assert_close(psnr(x_hat, x)[:2], torch.tensor([20.0, 10 * math.log10(50)]))
    assert psnr(x_hat, x)[2] == pytest.approx(100.0)  # MSE floored at 1e-10
    with pytest.raises(ValueError, match="same shape"):
        mse(x_hat, x[:2])


def random_pairs(sizes, seed=0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for size in sizes:
        x = torch.rand(size, 3, 16, 16, generator=generator)
        x_hat = x + 0.2 * torch.randn(x.shape, generator=generator)  # goes outside [0, 1]: clamped
        pairs.append((x_hat, x))
    return pairs


def test_reconstruction_metrics_over_uneven_batches_equal_the_one_shot_values():
    pairs = random_pairs([3, 5, 1, 7])
    x_hat = torch.cat([a for a, _ in pairs]).clamp(0, 1)
    x = torch.cat([b for _, b in pairs])
    first, second = ReconstructionMetrics(), ReconstructionMetrics()
    for i, (a, b) in enumerate(pairs):
        (first if i < 2 else second).update(a, b)
    merged = first.merge(second).compute()
    one_shot = ReconstructionMetrics()
    one_shot.update(x_hat, x)
    expected = {"rmse": (x_hat - x).square().mean().sqrt().item(), "psnr": psnr(x_hat, x).mean().item(),
                "ssim": ssim(x_hat, x).mean().item(), "items": 16, "values": x.numel()}
    for key, value in expected.items():
        assert merged[key] == pytest.approx(value, rel=1e-6) == one_shot.compute()[key]
    # RMSE pools squared errors; the mean of per-item RMSEs is a different number
    assert merged["rmse"] != pytest.approx(rmse(x_hat, x).mean().item(), rel=1e-4)
    with pytest.raises(ValueError, match="no reconstructions"):
        ReconstructionMetrics().compute()


def test_codebook_perplexity_and_usage_on_hand_made_histograms():
    usage = CodebookUsage(8)
    usage.update(torch.tensor([[0, 0, 1, 1]]))
    assert usage.counts.tolist() == [2, 2, 0, 0, 0, 0, 0, 0]
    assert usage.perplexity() == pytest.approx(2.0) and usage.usage() == 0.25 and usage.entropy_bits() == 1.0
    skewed = CodebookUsage(4)
    skewed.update(torch.tensor([[0, 0, 1, 2]]))  # p = (1/2, 1/4, 1/4, 0): H = 1.5 bits
    assert skewed.entropy_bits() == pytest.approx(1.5) and skewed.perplexity() == pytest.approx(2 ** 1.5)
    assert skewed.usage() == 0.75
    uniform = CodebookUsage(16)
    uniform.update(torch.arange(16).view(2, 8))
    assert uniform.perplexity() == pytest.approx(16.0) and uniform.usage() == 1.0 and uniform.positions_per_item == 8
    single = CodebookUsage(16)
    single.update(torch.full((4, 3, 3), 5))
    assert single.perplexity() == 1.0 and single.usage() == 1 / 16
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        skewed.update(torch.tensor([[4, 0, 0, 0]]))
    with pytest.raises(TypeError, match="integer"):
        skewed.update(torch.tensor([[0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="codes per item"):
        uniform.update(torch.zeros(1, 3, dtype=torch.long))


def test_codebook_counts_merged_over_uneven_batches_equal_one_shot():
    generator = torch.Generator().manual_seed(1)
    indices = torch.randint(0, 64, (29, 4, 4), generator=generator) % 40  # 24 of 64 codes never used
    one_shot = CodebookUsage(64)
    one_shot.update(indices)
    parts = [CodebookUsage(64) for _ in range(3)]
    for i, chunk in enumerate(torch.split(indices, [2, 20, 7])):
        parts[i].update(chunk)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert torch.equal(merged.counts, one_shot.counts) and merged.compute() == one_shot.compute()
    assert merged.usage() == 40 / 64 and merged.positions_per_item == 16 and merged.num_items == 29


def test_minibatch_perplexity_averages_per_batch_values_and_states_the_batch_size():
    paper = MinibatchPerplexity(8)
    paper.update(torch.tensor([[0, 0], [1, 1]]))  # 2 codes equally: perplexity 2
    paper.update(torch.tensor([[3, 3], [3, 3]]))  # 1 code: perplexity 1
    other = MinibatchPerplexity(8)
    other.update(torch.tensor([[0, 1, 2, 3]]))  # a last, smaller batch: perplexity 4
    result = paper.merge(other).compute()
    assert result == {"perplexity": pytest.approx(7 / 3), "batch_size": 2, "batches": 3, "items": 5}
    dataset_level = CodebookUsage(8)
    for batch in (torch.tensor([[0, 0], [1, 1]]), torch.tensor([[3, 3], [3, 3]]), torch.tensor([[0, 1], [2, 3]])):
        dataset_level.update(batch)
    assert dataset_level.perplexity() > result["perplexity"]


def test_rates_in_bits_per_item():
    top, bottom = CodebookUsage(512), CodebookUsage(4)
    top.update(torch.zeros(2, 4, 4, dtype=torch.long))  # one code only: 0 bits of entropy
    bottom.update(torch.tensor([[[0, 1], [2, 3]]] * 3))  # uniform over 4: 2 bits per position
    assert bits_per_item([(64, 512), (256, 512)]) == 320 * 9
    assert bits_per_item([top, bottom]) == 16 * 9 + 4 * 2
    assert entropy_bits_per_item([top, bottom]) == pytest.approx(0 + 4 * 2)


# --- DDP: two gloo ranks ----------------------------------------------------------------------------------------------

def ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    reconstruction, usage, paper = ReconstructionMetrics(), CodebookUsage(32), MinibatchPerplexity(32)
    for i, (x_hat, x) in enumerate(random_pairs([3, 5, 1, 7, 2])):
        if i % 2 == rank:  # uneven shards: rank 0 gets 3 batches (3+1+2 items), rank 1 two (5+7)
            reconstruction.update(x_hat, x)
            usage.update((x * 32).long().clamp(max=31)[:, 0])
            paper.update((x * 32).long().clamp(max=31)[:, 0])
    reconstruction.all_reduce()
    usage.all_reduce()
    paper.all_reduce()
    torch.save({"reconstruction": reconstruction.compute(), "counts": usage.counts, "items": usage.num_items,
                "paper": paper.compute()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_all_reduce_over_two_ranks_equals_one_process(tmp_path):
    mp.spawn(ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    reconstruction, usage, paper = ReconstructionMetrics(), CodebookUsage(32), MinibatchPerplexity(32)
    for x_hat, x in random_pairs([3, 5, 1, 7, 2]):
        reconstruction.update(x_hat, x)
        usage.update((x * 32).long().clamp(max=31)[:, 0])
        paper.update((x * 32).long().clamp(max=31)[:, 0])
    for result in results:
        assert result["reconstruction"] == pytest.approx(reconstruction.compute(), rel=1e-9)
        assert torch.equal(result["counts"], usage.counts) and result["items"] == 18
        assert result["paper"] == pytest.approx(paper.compute(), rel=1e-9)


# --- LPIPS --------------------------------------------------------------------------------------------------------

def test_lpips_requires_user_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not downloaded automatically"):
        load_lpips(None, None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_lpips(tmp_path / "alexnet.pth", tmp_path / "alex.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="junk.pth"):
        load_lpips(tmp_path / "junk.pth", tmp_path / "junk.pth")


def test_lpips_loads_files_in_the_torchvision_and_lpips_layouts(tmp_path):
    # Random weights stored under the key names of torchvision's alexnet and lpips' alex.pth: this checks the
    # loading and the arithmetic's invariants, not the published numbers (no real weights here).
    torch.manual_seed(0)
    reference = LPIPS("alex")
    backbone = {f"features.{key}": value for key, value in reference.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)  # the classifier is ignored
    linear = {f"lin{i}.model.1.weight": lin.weight.abs() for i, lin in enumerate(reference.lins)}
    torch.save(backbone, tmp_path / "alexnet-owt.pth")
    torch.save(linear, tmp_path / "alex.pth")
    model = load_lpips(tmp_path / "alexnet-owt.pth", tmp_path / "alex.pth")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(model(x, x), torch.zeros(2))
    noisy = model((x + 0.2 * torch.rand(x.shape)).clamp(0, 1), x)
    assert noisy.shape == (2,) and (noisy > 0).all()
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="partial.pth: not the alex LPIPS weights"):
        load_lpips(tmp_path / "alexnet-owt.pth", tmp_path / "partial.pth")
