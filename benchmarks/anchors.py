"""The learned anchor: CompressAI's Ballé et al. (2018) models trained in-domain, coded for real.

    python benchmarks/anchors.py --dataset fashion_mnist --model bmshj2018-hyperprior \\
        --lmbda 0.0035 --steps 400 --out runs/anchors/fashion_mnist-hyperprior-0.0035

trains ``bmshj2018-hyperprior`` (CompressAI's ``ScaleHyperprior``, N=128, M=192: its quality 1–5
size; ``bmshj2018-factorized``: ``FactorizedPrior``) on the same training split as the tokenizers
(``hqvae.data.load_dataset(dataset, "train")``), with CompressAI's rate–distortion loss
λ·255²·MSE + bpp, Adam (lr 1e-4; the entropy bottleneck's quantiles with their own Adam,
lr 1e-3, as CompressAI's example trainer), for ``--steps`` batches; grey images get a
one-channel first and last layer. Images are padded (replicated edges) to a multiple of 64
pixels, the model's total stride; bits are counted over the original pixels.

:func:`code_images` then runs CompressAI's real entropy coder (``model.compress`` /
``decompress`` after ``model.update``) on the test images: bytes of the strings it writes, plus a
minimal container per image (a varint length of each string), PSNR / SSIM of the decoded images,
and encode / decode seconds per image.

CompressAI is a benchmark-only optional dependency (``make anchors``): version 1.2.0, built from
its source against the pinned torch with ``pip install --no-deps --no-build-isolation
compressai==1.2.0`` (it imports without torchvision; its ``ans`` range coder is a C++ extension
built then).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

MODELS = {"bmshj2018-hyperprior": "ScaleHyperprior", "bmshj2018-factorized": "FactorizedPrior"}
STRIDE = 64
N_CHANNELS, M_CHANNELS = 128, 192  # CompressAI's bmshj2018 models at quality 1–5


def _compressai():
    try:
        import compressai.models as models
        from compressai.layers import GDN  # noqa: F401  (the extension and layers import)
    except ImportError as error:
        raise ImportError(f"the learned anchors need CompressAI ({error}); install it with `make anchors` "
                          f"(pip install --no-deps --no-build-isolation compressai==1.2.0)") from None
    return models


def build(model: str, channels: int) -> torch.nn.Module:
    """An untrained ``model`` (a key of MODELS) for ``channels``-channel images."""
    from compressai.models.utils import conv, deconv

    if model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    network = getattr(_compressai(), MODELS[model])(N_CHANNELS, M_CHANNELS)
    if channels != 3:  # CompressAI's models are RGB; grey images get their own first and last layer
        network.g_a[0] = conv(channels, N_CHANNELS)
        network.g_s[-1] = deconv(N_CHANNELS, channels)
    return network


def pad(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) -> replicate-padded to multiples of the model's stride (64)."""
    height, width = x.shape[2:]
    return F.pad(x, (0, -width % STRIDE, 0, -height % STRIDE), mode="replicate")


def train(model_name: str, dataset, lmbda: float, steps: int, batch_size: int = 32, seed: int = 0,
          log_every: int = 50) -> tuple[torch.nn.Module, list[dict]]:
    """Train on ``dataset`` (an hqvae ImageDataset of the training split) for ``steps`` batches."""
    torch.manual_seed(seed)
    channels = dataset.get_batch(torch.arange(1))[0].shape[1]
    network = build(model_name, channels).train()
    main = [p for n, p in network.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in network.named_parameters() if n.endswith(".quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main, lr=1e-4), torch.optim.Adam(aux, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        indices = torch.randint(0, len(dataset), (batch_size,), generator=generator)
        x = dataset.get_batch(indices)[0]
        height, width = x.shape[2:]
        out = network(pad(x))
        x_hat = out["x_hat"][:, :, :height, :width]
        pixels = x.shape[0] * height * width
        bpp = sum(torch.log(l).sum() for l in out["likelihoods"].values()) / (-math.log(2) * pixels)
        mse = F.mse_loss(x_hat, x)
        loss = lmbda * 255 ** 2 * mse + bpp
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        optimizer.step()
        aux_loss = network.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
        if step % log_every == 0 or step == steps:
            history.append({"step": step, "loss": loss.item(), "bpp": bpp.item(), "mse": mse.item(),
                            "aux_loss": aux_loss.item(), "wall_time_s": round(time.perf_counter() - start, 1)})
            print(json.dumps(history[-1]), flush=True)
    network.update(force=True)
    return network.eval(), history


def _varint_bytes(value: int) -> int:
    return max(1, math.ceil(value.bit_length() / 7))


@torch.no_grad()
def code_images(network: torch.nn.Module, x: torch.Tensor, batch_size: int = 64) -> dict:
    """Real CompressAI files of the images x (N, C, H, W) in [0, 1]: per image its strings plus a
    varint length of each; bits per pixel, PSNR, SSIM (8-bit decoded images), seconds per image."""
    from hqvae.metrics import psnr, ssim

    height, width = x.shape[2:]
    sizes, decoded, encode_s, decode_s = [], [], 0.0, 0.0
    for i in range(0, x.shape[0], batch_size):
        chunk = pad(x[i:i + batch_size])
        start = time.perf_counter()
        compressed = network.compress(chunk)
        encode_s += time.perf_counter() - start
        start = time.perf_counter()
        x_hat = network.decompress(compressed["strings"], compressed["shape"])["x_hat"]
        decode_s += time.perf_counter() - start
        decoded.append((x_hat[:, :, :height, :width].clamp(0, 1) * 255).round() / 255)
        for item in range(chunk.shape[0]):
            strings = [group[item] for group in compressed["strings"]]
            sizes.append(sum(len(s) + _varint_bytes(len(s)) for s in strings))
    x_hat = torch.cat(decoded)
    items, pixels = x.shape[0], height * width
    return {"bytes": sum(sizes), "bpp": 8 * sum(sizes) / (items * pixels),
            "bpp_single_file": 8 * sum(sizes) / (items * pixels),
            "psnr": float(psnr(x_hat, x).mean()), "ssim": float(ssim(x_hat, x).mean()),
            "encode_s_per_image": encode_s / items, "decode_s_per_image": decode_s / items}


def main(argv: list[str] | None = None) -> int:
    from hqvae.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=("fashion_mnist", "cifar10"))
    parser.add_argument("--model", default="bmshj2018-hyperprior", choices=tuple(MODELS))
    parser.add_argument("--lmbda", type=float, required=True, help="λ of λ·255²·MSE + bpp (CompressAI's scale)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", required=True, help="folder: model.pt (state dict), anchor.json")
    parser.add_argument("--data-root")
    args = parser.parse_args(argv)
    data = load_dataset({"cifar10": "cifar10_folder"}.get(args.dataset, args.dataset), "train",
                        root=args.data_root)  # cifar10: the local JPEG q75 copy, as configs/cifar10.yaml
    start = time.perf_counter()
    network, history = train(args.model, data, args.lmbda, args.steps, args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from hqvae.io import atomic_write, atomic_write_json

    atomic_write(out / "model.pt", lambda tmp: torch.save(network.state_dict(), tmp))
    atomic_write_json(out / "anchor.json", {"model": args.model, "dataset": args.dataset, "lmbda": args.lmbda,
                                            "steps": args.steps, "batch_size": args.batch_size,
                                            "channels": int(data.get_batch(torch.arange(1))[0].shape[1]),
                                            "training_s": round(time.perf_counter() - start, 1), "history": history})
    print(f"trained {args.model} λ={args.lmbda} for {args.steps} steps into {out}")
    return 0


def load(folder: str | Path) -> tuple[torch.nn.Module, dict]:
    """A trained anchor (``main``'s folder) ready to code."""
    folder = Path(folder)
    info = json.loads((folder / "anchor.json").read_text())
    network = build(info["model"], info["channels"])
    state = torch.load(folder / "model.pt", weights_only=True)
    tables = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")  # recomputed from the weights by update()
    missing, unexpected = torch.nn.Module.load_state_dict(
        network, {k: v for k, v in state.items() if not k.endswith(tables)}, strict=False)
    if unexpected or any(not k.endswith(tables) for k in missing):
        raise ValueError(f"{folder / 'model.pt'} does not fit {info['model']} (missing {missing[:4]}, unexpected "
                         f"{unexpected[:4]}); train the anchor again")
    network.update(force=True)
    return network.eval(), info


if __name__ == "__main__":
    raise SystemExit(main())
