"""Training speed of the reference configurations, and where the step time goes.

For ``sqvae`` (the public SQ-VAE CIFAR-10 network, batch 32) and ``vqvae`` on the same network,
and for ``sqvae2`` / ``rsqvae``: training images per second of one full step (forward, backward,
Adam step) on real CIFAR-10 test images (JPEG q75 copy), and the time of each part of the step
measured on its own (forward + backward): bottom-up encoder, top-down layers (of which the
quantizers), decoder, and the optimiser step. Steps of the contenders alternate and the median
is kept, so that machine noise hits all of them alike.

Reference figures for the same network on the 2-core CPU machine (given in the issue, measured by
the project with the public implementation): SQ-VAE 700 img/s, VQ-VAE (EMA) 1,070 img/s.

The models run as the training loop runs them: channels-last layout and, on glibc, the allocator
set to keep freed memory (``hqvae.train.performance``); ``--nchw`` and ``--no-allocator-tuning``
measure without either.

    python benchmarks/speed.py [--steps 30] [--threads 2] [--out benchmarks/results/speed.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import hqvae
from hqvae.data import load_dataset
from hqvae.io import atomic_write_json
from hqvae.models.hierarchical import reconstruction_terms
from hqvae.train.config import OptimConfig
from hqvae.train.optim import build_optimizer
from hqvae.train.performance import channels_last, channels_last_batch, keep_freed_memory
from hqvae.train.run_info import now

BATCH = 32
MODELS = ("sqvae", "vqvae", "sqvae2", "rsqvae")
REFERENCE_IMG_PER_S = {"sqvae": 700.0, "vqvae": 1070.0}


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The training loop's own optimiser at the reference settings (Adam, lr 1e-3)."""
    return build_optimizer(model, OptimConfig(name="adam", lr=1e-3))


def full_step(model, optimizer, x) -> None:
    out = model(x)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()


def parts(model, optimizer, x) -> dict[str, float]:
    """Seconds of each part of one step, each run forward + backward on its own."""
    timings = {}
    start = time.perf_counter()
    features = model.encoder(x)
    sum(f.square().mean() for f in features.values()).backward()
    timings["encoder"] = time.perf_counter() - start

    features = {k: v.detach().requires_grad_(True) for k, v in features.items()}
    start = time.perf_counter()
    state, outputs = model._top_down(features)
    (state.square().mean() + sum(o.loss for o in outputs)).backward()
    timings["top_down_layers"] = time.perf_counter() - start

    quantizer_time = 0.0
    for group in model.groups:
        z = torch.randn(x.shape[0], group.dim, x.shape[2] // group.factor, x.shape[3] // group.factor, requires_grad=True)
        start = time.perf_counter()
        out = group.quantizer(z)
        (out.loss + out.z_q.square().mean()).backward()
        quantizer_time += time.perf_counter() - start
    timings["of_which_quantizers"] = quantizer_time

    state = state.detach().requires_grad_(True)
    start = time.perf_counter()
    x_hat = model.decoder(state)
    recon, _ = reconstruction_terms(x_hat, x, model.stochastic)
    recon.backward()
    timings["decoder_and_loss"] = time.perf_counter() - start

    start = time.perf_counter()
    optimizer.step()
    timings["optimizer"] = time.perf_counter() - start
    optimizer.zero_grad(set_to_none=True)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", default="benchmarks/results/speed.json")
    parser.add_argument("--nchw", action="store_true",
                        help="NCHW layout instead of the training loop's default channels-last")
    parser.add_argument("--no-allocator-tuning", action="store_true",
                        help="leave glibc's allocator at its defaults (the training loop tunes it on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator_tuned = False if args.no_allocator_tuning else keep_freed_memory()
    root = os.environ.get("HQVAE_DATA_ROOT", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    data = load_dataset("cifar10_folder", "test", root=str(Path(root) / "cifar10-jpeg-q75.tar.gz"))

    torch.manual_seed(0)
    contenders = {}
    for name in args.models:
        model = hqvae.create_model(name, 3, 32)
        if not args.nchw:
            channels_last(model)
        model.train()
        contenders[name] = (model, make_optimizer(model))
    batches = [data.get_batch(torch.arange(i * BATCH, (i + 1) * BATCH))[0] for i in range(8)]
    if not args.nchw:
        batches = [channels_last_batch(x) for x in batches]
    for model, optimizer in contenders.values():  # warm-up, k-means init of VQ codebooks
        for x in batches[:3]:
            full_step(model, optimizer, x)

    step_times = {name: [] for name in contenders}
    part_times = {name: [] for name in contenders}
    for step in range(args.steps):
        x = batches[step % len(batches)]
        for name, (model, optimizer) in contenders.items():
            start = time.perf_counter()
            full_step(model, optimizer, x)
            step_times[name].append(time.perf_counter() - start)
            if step % 3 == 0:
                part_times[name].append(parts(model, optimizer, x))

    rows = {}
    for name in contenders:
        step = statistics.median(step_times[name])
        breakdown = {key: statistics.median(p[key] for p in part_times[name]) for key in part_times[name][0]}
        rows[name] = {
            "img_per_s": BATCH / step,
            "step_ms": 1000 * step,
            "parts_ms": {k: 1000 * v for k, v in breakdown.items()},
            "quantizer_share_of_step": breakdown["of_which_quantizers"] / step,
            "parameters": sum(p.numel() for p in contenders[name][0].parameters()),
        }
        if name in REFERENCE_IMG_PER_S:
            rows[name]["reference_img_per_s"] = REFERENCE_IMG_PER_S[name]
            rows[name]["speedup_over_reference"] = rows[name]["img_per_s"] / REFERENCE_IMG_PER_S[name]
        print(f"{name:8s} {rows[name]['img_per_s']:7.0f} img/s  quantizer share {rows[name]['quantizer_share_of_step']:.0%}  "
              + "  ".join(f"{k} {v:.1f} ms" for k, v in rows[name]["parts_ms"].items()), flush=True)

    load = os.getloadavg()
    result = {
        "benchmark": "training speed, batch 32, 3×32×32",
        "data": data.description,
        "method": f"median of {args.steps} alternating full steps (forward, backward, Adam); parts timed "
                  "separately (forward + backward each), so they add up only roughly",
        "device": f"CPU, {args.threads} threads ({platform.machine()})",
        "layout": "NCHW" if args.nchw else "channels-last (the training loop's default)",
        "allocator": "glibc keeps freed memory (hqvae.train.performance)" if allocator_tuned else "default",
        "load_average_at_end": load,
        "torch": torch.__version__,
        "hqvae": hqvae.__version__,
        "date": now(),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "models": rows,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
