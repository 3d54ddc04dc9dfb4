"""Quantizer throughput: ours against vector-quantize-pytorch, side by side in one process.

Forward + backward of 8,192 vectors of d = 64 (as a (8, 1024, 64) channel-last batch) for
K ∈ {512, 4096, 16384}:
  * our VectorQuantizer (EMA)            vs  vector_quantize_pytorch.VectorQuantize (EMA)
  * our ResidualQuantizer of 4 VQ layers vs  vector_quantize_pytorch.ResidualVQ(num_quantizers=4)
  * our StochasticQuantizer              vs  our VectorQuantizer (the cost of stochastic training)

The peer runs twice: at its defaults, and "matched" to ours (decay 0.99, commitment 0.25, plain
straight-through, no rotation trick). Calls alternate between the contenders and the median of
the repeats is kept, so machine noise hits both sides alike.

    pip install vector-quantize-pytorch   # benchmark only; not a dependency of hqvae
    python benchmarks/quantizers.py [--repeats 7] [--out benchmarks/results/quantizers.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from hqvae.io import atomic_write_json
from hqvae.quantizers import ResidualQuantizer, StochasticQuantizer, VectorQuantizer
from hqvae.train.run_info import now

DIM, BATCH, TOKENS = 64, 8, 1024  # 8,192 vectors


def ours_vq(k: int):
    return VectorQuantizer(DIM, k, init="normal", channel_last=True)


def ours_rvq(k: int):
    return ResidualQuantizer([VectorQuantizer(DIM, k, init="normal", channel_last=True) for _ in range(4)])


def ours_sq(k: int):
    return StochasticQuantizer(DIM, k, channel_last=True)


def peer_vq(k: int, matched: bool):
    from vector_quantize_pytorch import VectorQuantize

    extra = dict(decay=0.99, commitment_weight=0.25, straight_through=True, rotation_trick=False) if matched else {}
    return VectorQuantize(dim=DIM, codebook_size=k, **extra)


def peer_rvq(k: int, matched: bool):
    from vector_quantize_pytorch import ResidualVQ

    extra = dict(decay=0.99, commitment_weight=0.25, straight_through=True, rotation_trick=False) if matched else {}
    return ResidualVQ(dim=DIM, num_quantizers=4, codebook_size=k, **extra)


def step_ours(module, z):
    out = module(z)
    (out.loss + out.z_q.square().mean()).backward()


def step_peer(module, z):
    quantized, _, loss = module(z)
    (loss.sum() + quantized.square().mean()).backward()


def timed(step, module, z) -> float:
    z = z.detach().requires_grad_(True)
    start = time.perf_counter()
    step(module, z)
    return time.perf_counter() - start


def compare(contenders: dict, z: torch.Tensor, repeats: int) -> dict[str, float]:
    """Alternate the contenders' steps; return the median seconds per forward+backward."""
    for step, module in contenders.values():  # warm-up (allocators, lazy init, k-means off)
        module.train()
        timed(step, module, z)
        timed(step, module, z)
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (step, module) in contenders.items():
            samples[name].append(timed(step, module, z))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 16384])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/quantizers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import vector_quantize_pytorch

    torch.manual_seed(0)
    z = torch.randn(BATCH, TOKENS, DIM)
    vectors = BATCH * TOKENS
    rows = []
    for k in args.sizes:
        seconds = compare(
            {
                "ours_vq": (step_ours, ours_vq(k)),
                "peer_vq_default": (step_peer, peer_vq(k, matched=False)),
                "peer_vq_matched": (step_peer, peer_vq(k, matched=True)),
                "ours_sq": (step_ours, ours_sq(k)),
            },
            z,
            args.repeats,
        )
        seconds.update(
            compare(
                {
                    "ours_rvq4": (step_ours, ours_rvq(k)),
                    "peer_rvq4_default": (step_peer, peer_rvq(k, matched=False)),
                    "peer_rvq4_matched": (step_peer, peer_rvq(k, matched=True)),
                },
                z,
                args.repeats,
            )
        )
        row = {"codebook_size": k, "vectors_per_second": {n: vectors / s for n, s in seconds.items()}}
        row["ratios"] = {
            "vq_vs_peer_default": seconds["peer_vq_default"] / seconds["ours_vq"],
            "vq_vs_peer_matched": seconds["peer_vq_matched"] / seconds["ours_vq"],
            "rvq4_vs_peer_default": seconds["peer_rvq4_default"] / seconds["ours_rvq4"],
            "rvq4_vs_peer_matched": seconds["peer_rvq4_matched"] / seconds["ours_rvq4"],
            "sq_cost_over_our_vq": seconds["ours_sq"] / seconds["ours_vq"],
        }
        rows.append(row)
        print(f"K={k:6d}  " + "  ".join(f"{n}={v:.2f}" for n, v in row["ratios"].items()), flush=True)

    result = {
        "benchmark": "quantizer forward+backward throughput",
        "setup": f"{vectors} vectors of d={DIM} as a ({BATCH}, {TOKENS}, {DIM}) channel-last batch, train mode, "
        f"median of {args.repeats} alternating repeats",
        "ratios_explained": "peer seconds / our seconds (>1 means we are faster); sq_cost = our SQ seconds / our VQ seconds",
        "device": f"CPU, {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "vector_quantize_pytorch": getattr(vector_quantize_pytorch, "__version__", None)
        or __import__("importlib.metadata").metadata.version("vector-quantize-pytorch"),
        "date": now(),
        "load_average_at_end": os.getloadavg(),
        "command": f"python benchmarks/quantizers.py --repeats {args.repeats} --threads {args.threads}",
        "rows": rows,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
