"""Parameter counts and CPU training throughput of every named model at the CIFAR-10 size.

For each model in ``hqvae.list_models()`` with its default 3×32×32 configuration: the number of
parameters (and of buffers: BatchNorm statistics, EMA codebooks), and forward + backward
images per second in training mode at batch 32: a few warm-up steps (they include the VQ
layers' k-means initialisation), then timed steps taken round-robin over the models, median and
best step reported. Writes ``benchmarks/results/models.json`` atomically and prints a table.

    python benchmarks/models.py [--steps 10] [--warmup 3] [--threads 2]

CPU timings on a shared machine are noisy: compare models within one run, not across runs.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

import hqvae
from hqvae.io import atomic_write_json
from hqvae.train.run_info import now

RESULTS = Path(__file__).parent / "results" / "models.json"


def train_step(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    model(x).loss.backward()
    return time.perf_counter() - start


def benchmark(names: list[str], batch_size: int, steps: int, warmup: int) -> list[dict]:
    """Time the models round-robin, one step each in turn, so that load from other processes
    falls on every model alike."""
    torch.manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32)
    models = {name: hqvae.create_model(name, in_channels=3, image_size=32).train() for name in names}
    for model in models.values():
        for _ in range(warmup):
            train_step(model, x)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(steps):
        for name, model in models.items():
            times[name].append(train_step(model, x))
    rows = []
    for name, model in models.items():
        median, best = statistics.median(times[name]), min(times[name])
        rows.append(
            {
                "model": name,
                "layers": [f"{layer.kind}/{layer.quantizer}" for layer in model.config.layers],
                "code_shapes": model.code_shapes(),
                "parameters": sum(p.numel() for p in model.parameters()),
                "buffers": sum(b.numel() for b in model.buffers()),
                "step_seconds_median": median,
                "step_seconds_min": best,
                "train_images_per_second": batch_size / median,
                "train_images_per_second_best": batch_size / best,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = benchmark(hqvae.list_models(), args.batch_size, args.steps, args.warmup)
    document = {
        "benchmark": "forward + backward, training mode, 3×32×32 default (CIFAR-10) configurations",
        "date": now(),
        "device": f"CPU ({args.threads} cores)",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "hqvae": hqvae.__version__,
        "python": platform.python_version(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "note": "shared machine: other processes used the same cores, so timings are noisy; "
        "models were timed round-robin so the load falls on all of them alike",
        "results": rows,
    }
    atomic_write_json(args.out, document)

    print("| model | layers | codes | parameters | img/s fwd+bwd, median | img/s, best step |")
    print("|---|---|---|---:|---:|---:|")
    for row in rows:
        codes = " + ".join(f"{h}×{w}" for h, w in row["code_shapes"])
        print(
            f"| {row['model']} | {', '.join(row['layers'])} | {codes} | {row['parameters']:,} "
            f"| {row['train_images_per_second']:.0f} | {row['train_images_per_second_best']:.0f} |"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
