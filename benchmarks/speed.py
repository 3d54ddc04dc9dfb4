"""Training speed of each SQ model against its VQ partner (and the official SQ-VAE code), and
where the step time goes.

In ONE process, with the steps of all contenders alternating (so that machine noise hits all of
them alike), batch 32 of real CIFAR-10 test images (JPEG q75 copy): the median time of one full
training step (forward, backward, Adam at lr 1e-3) of ``sqvae`` / ``vqvae``, ``sqvae2`` /
``vqvae2`` and ``rsqvae`` / ``rqvae``, and their ratios (SQ step / VQ step; the issue's target
is ≤ 1.2). With ``--official PATH``, also the official SQ-VAE code's CIFAR-10 model
(sony/sqvae, ``vision/``: GaussianSQVAE, gaussian_1, resnet with 2 residual blocks, 512 × 64
codes), from a checkout outside this repository that has been patched to run on the CPU
(``device="cuda"`` -> ``"cpu"``, ``.cuda()`` removed); it is imported from there, never copied.
The target there is ``sqvae`` img/s ≥ 1.4 × the official code's.

Our models run as the training loop runs them: channels-last layout and, on glibc, the allocator
set to keep freed memory (``hqvae.train.performance``); ``--nchw`` and ``--no-allocator-tuning``
measure without either. Each ``--threads`` value is a separate round. The JSON records the machine (CPU model), the load
average before and after each round, the date, the commit and the command. With ``--parts``,
each model's step is also split (each part forward + backward on its own): encoder, top-down
layers (of which the quantizers), decoder and loss, optimiser.

Exactness: the SQ layers' fused op (``hqvae/quantizers/relaxed.py``) is checked against the plain
autograd path on the first batch — the relative error of the loss and the largest
scale-relative error over the parameter gradients — and written to the JSON (``exactness``);
``tests/test_relaxed.py`` checks both against float64.

    python benchmarks/speed.py [--threads 1 2] [--steps 30] [--official ../sqvae-official]
                               [--out benchmarks/results/speed-cifar10.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

import hqvae
from hqvae.data import load_dataset
from hqvae.io import atomic_write_json
from hqvae.models.base import reconstruction
from hqvae.quantizers import StochasticQuantizer
from hqvae.train.config import FALLBACKS, OptimConfig
from hqvae.train.optim import build_optimizer
from hqvae.train.performance import channels_last, channels_last_batch, keep_freed_memory
from hqvae.train.run_info import git_commit, now

BATCH = 32
PAIRS = (("sqvae", "vqvae"), ("sqvae2", "vqvae2"), ("rsqvae", "rqvae"))
OFFICIAL = "official_sqvae"


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The training loop's own optimiser at the reference settings (Adam, lr 1e-3), with the model's
    codebook learning rate."""
    scale = model.config.train_defaults.get("codebook_lr_scale", FALLBACKS["codebook_lr_scale"])
    return build_optimizer(model, OptimConfig(name="adam", lr=1e-3, codebook_lr_scale=scale))


def full_step(model, optimizer, x) -> None:
    out = model(x)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()


def official_model(path: Path):
    """The official SQ-VAE CIFAR-10 model (``vision/configs/cifar10_gauss_1.yaml``) and its training
    step, imported from the checkout at ``path`` (its root or its ``vision/`` folder)."""
    vision = path / "vision" if (path / "vision").is_dir() else path
    if not (vision / "model.py").is_file() or not (vision / "quantizer.py").is_file():
        raise SystemExit(f"--official {path}: no vision/model.py there; pass a sony/sqvae checkout")
    if "cuda" in (vision / "quantizer.py").read_text():
        raise SystemExit(f"--official {path}: its quantizer.py still asks for CUDA; patch it for the CPU "
                         "(sed -i 's/device=\"cuda\"/device=\"cpu\"/; s/\\.cuda()//g' vision/*.py)")
    sys.path.insert(0, str(vision))
    from model import GaussianSQVAE  # noqa: E402  (the official code)

    node = SimpleNamespace
    cfgs = node(
        dataset=node(name="CIFAR10", dim_x=3 * 32 * 32),
        model=node(name="GaussianSQVAE", log_param_q_init=2.995732273553991, param_var_q="gaussian_1"),
        network=node(name="resnet", num_rb=2),
        quantization=node(size_dict=512, dim_dict=64, temperature=node(init=1.0, decay=1e-5, min=0.0)),
    )
    flags = node(arelbo=True, bn=True, var_q=False)
    model = GaussianSQVAE(cfgs, flags).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def official_step(model, optimizer, x) -> None:
    """The official trainer's step (vision/trainer.py): loss["all"] backward and Adam."""
    _, _, loss = model(x, flg_train=True, flg_quant_det=False)
    optimizer.zero_grad()
    loss["all"].backward()
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
        z = features[group.factor].detach().requires_grad_(True)
        start = time.perf_counter()
        out = group.quantizer(z)
        (out.loss + out.z_q.square().mean()).backward()
        quantizer_time += time.perf_counter() - start
    timings["of_which_quantizers"] = quantizer_time

    state = state.detach().requires_grad_(True)
    start = time.perf_counter()
    x_hat = model.decoder(state)
    recon, _ = reconstruction(x_hat, x, "arelbo" if model.stochastic else "mse")
    recon.backward()
    timings["decoder_and_loss"] = time.perf_counter() - start

    start = time.perf_counter()
    optimizer.step()
    timings["optimizer"] = time.perf_counter() - start
    optimizer.zero_grad(set_to_none=True)
    return timings


def set_fused(model: torch.nn.Module, fused: bool) -> None:
    for module in model.modules():
        if isinstance(module, StochasticQuantizer):
            module.fused = fused


def exactness(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """The fused SQ op against the plain autograd path, same weights and Gumbel noise: relative
    error of the loss and the largest max|Δg| / max|g| over the parameter gradients."""
    results = []
    for fused in (True, False):
        set_fused(model, fused)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        out = model(x)
        out.loss.backward()
        results.append((out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    set_fused(model, True)
    model.zero_grad(set_to_none=True)
    (fused_loss, fused_grads), (plain_loss, plain_grads) = results
    gaps = {n: float((fused_grads[n] - g).abs().max() / g.abs().max().clamp_min(1e-30)) for n, g in plain_grads.items()}
    quantizer_gaps = [v for n, v in gaps.items() if "quantizer" in n]
    return {
        "loss_relative_error": abs(fused_loss - plain_loss) / abs(plain_loss),
        "quantizer_parameters_max_gradient_error": max(quantizer_gaps),
        "median_parameter_gradient_error": statistics.median(gaps.values()),
        "note": "scale-relative, per tensor; the largest over all tensors is set by gradients that are zero "
                "up to rounding (conv biases before BatchNorm)",
    }


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def measure(contenders: dict, batches: list, steps: int, with_parts: bool) -> dict[str, dict]:
    for model, optimizer, step_fn, _ in contenders.values():  # warm-up (and data / k-means initialisation)
        for x, x_cl in batches[:3]:
            step_fn(model, optimizer, x_cl if _ else x)
    step_times = {name: [] for name in contenders}
    part_times = {name: [] for name in contenders}
    for step in range(steps):
        x, x_cl = batches[step % len(batches)]
        for name, (model, optimizer, step_fn, ours) in contenders.items():
            start = time.perf_counter()
            step_fn(model, optimizer, x_cl if ours else x)
            step_times[name].append(time.perf_counter() - start)
            if with_parts and ours and step % 3 == 0:
                part_times[name].append(parts(model, optimizer, x_cl))
    rows = {}
    for name in contenders:
        step = statistics.median(step_times[name])
        rows[name] = {"img_per_s": BATCH / step, "step_ms": 1000 * step,
                      "step_ms_quartiles": [1000 * q for q in statistics.quantiles(step_times[name], n=4)]}
        if part_times[name]:
            breakdown = {k: statistics.median(p[k] for p in part_times[name]) for k in part_times[name][0]}
            rows[name]["parts_ms"] = {k: 1000 * v for k, v in breakdown.items()}
            rows[name]["quantizer_share_of_step"] = breakdown["of_which_quantizers"] / step
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--pairs", nargs="+", default=[sq for sq, _ in PAIRS], choices=[sq for sq, _ in PAIRS],
                        help="the SQ models whose pair to time")
    parser.add_argument("--official", type=Path, default=None,
                        help="a sony/sqvae checkout patched for the CPU (outside this repository)")
    parser.add_argument("--parts", action="store_true", help="also time the parts of each of our steps")
    parser.add_argument("--nchw", action="store_true",
                        help="our models in NCHW layout instead of the training loop's default channels-last")
    parser.add_argument("--no-allocator-tuning", action="store_true",
                        help="leave glibc's allocator at its defaults (the training loop tunes it on CPU)")
    parser.add_argument("--out", default="benchmarks/results/speed-cifar10.json")
    args = parser.parse_args()
    allocator_tuned = False if args.no_allocator_tuning else keep_freed_memory()
    root = os.environ.get("HQVAE_DATA_ROOT", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    data = load_dataset("cifar10_folder", "test", root=str(Path(root) / "cifar10-jpeg-q75.tar.gz"))
    batches = [data.get_batch(torch.arange(i * BATCH, (i + 1) * BATCH))[0] for i in range(8)]
    batches = [(x, x if args.nchw else channels_last_batch(x)) for x in batches]
    pairs = [pair for pair in PAIRS if pair[0] in args.pairs]

    rounds, exact = {}, {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        contenders = {}
        for pair in pairs:
            for name in pair:
                model = hqvae.create_model(name, 3, 32).train()
                if not args.nchw:
                    channels_last(model)
                contenders[name] = (model, make_optimizer(model), full_step, True)
        if args.official is not None:
            model, optimizer = official_model(args.official)
            contenders[OFFICIAL] = (model, optimizer, official_step, False)
        load_before = os.getloadavg()
        rows = measure(contenders, batches, args.steps, args.parts)
        ratios = {f"{sq}/{vq}": rows[sq]["step_ms"] / rows[vq]["step_ms"] for sq, vq in pairs}
        if args.official is not None and "sqvae" in rows:
            ratios[f"sqvae img/s / {OFFICIAL} img/s"] = rows["sqvae"]["img_per_s"] / rows[OFFICIAL]["img_per_s"]
            ratios[f"vqvae img/s / {OFFICIAL} img/s"] = rows["vqvae"]["img_per_s"] / rows[OFFICIAL]["img_per_s"]
        rounds[str(threads)] = {"load_average_before": load_before, "load_average_after": os.getloadavg(),
                                "ratios": ratios, "models": rows}
        for name, row in rows.items():
            print(f"threads {threads}  {name:15s} {row['img_per_s']:7.0f} img/s  {row['step_ms']:6.1f} ms", flush=True)
        for key, value in ratios.items():
            print(f"threads {threads}  {key}: {value:.3f}", flush=True)
        if not exact:
            for sq, _ in pairs:
                exact[sq] = exactness(contenders[sq][0], batches[0][1])

    result = {
        "benchmark": "training step, batch 32, 3×32×32, SQ models against their VQ partners (and the official SQ-VAE code)",
        "data": data.description.replace(root, "$HQVAE_DATA_ROOT"),  # no machine paths in the results
        "method": f"median of {args.steps} full steps (forward, backward, Adam) per model, the models' steps "
                  "alternating in one process after 3 warm-up steps each; the official code as it runs (NCHW)",
        "layout": "NCHW" if args.nchw else "channels-last (the training loop's default)",
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "arch": platform.machine()},
        "allocator": "glibc keeps freed memory (hqvae.train.performance)" if allocator_tuned else "default",
        "official": None if args.official is None else "sony/sqvae vision/ (GaussianSQVAE gaussian_1, CIFAR-10 "
                                                        "config), patched to run on the CPU, imported from outside the repository",
        "torch": torch.__version__,
        "hqvae": hqvae.__version__,
        "commit": git_commit(),
        "date": now(),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *(a if not os.path.isabs(a) else Path(a).name for a in sys.argv[1:])]),
        "threads": rounds,
        "exactness_fused_vs_autograd": exact,
    }
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
