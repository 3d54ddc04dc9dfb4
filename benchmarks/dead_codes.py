"""Which codes an SQ layer leaves unused, and where they are (issue 18: codes in use ≥ 0.5 per layer).

For each stochastic layer of each trained run, over a split (default: test), from the model's own
posteriors P(k | x) (``encode_posteriors``, eval mode):

- ``usage``: the fraction of codes that are the argmax at least once (the claims benchmark's);
- ``unused_mass_share``: the share of all posterior mass Σ_positions P(k | x) that the unused
  codes hold: near 0, they are dead, not shadowed by a neighbour that wins the argmax;
- ``unused_best_log_p``: quantiles (10/50/90 %) over the unused codes of their best log P(k | x)
  at any position (nats): how far from winning anywhere they are;
- ``code_norm_median``: the median ||e_k|| of the used and of the unused codes, beside
  ``first_batch_scale`` = √(d · s²₀), with s²₀ the per-dimension variance of the first training
  batch's latents that the data initialisation recorded (the bounded variance's ``variance_bound``):
  the norm a code drawn from the first batch has when those latents are centred;
- ``nearest_code_distance_in_s``: the median distance to the nearest other code, in units of s.

With ``--gradient-batches N`` (runs whose ``checkpoints/last`` keeps the optimiser state), also how
fast the unused codes can move: N training batches (batch 32, the run's final τ) through the
training forward and backward, and per code the RMS over batches of its gradient row's norm, the
norm of Adam's √v̂ from the saved optimiser state, their ratio (about the size of an Adam step
relative to the lr, for a gradient of that size), the consistency ||mean g|| / RMS (1: the same
direction every batch; ~1/√N: noise), and the cosine between −mean g and the direction from the
code to the used codes' centroid — medians over the used and over the unused codes.

    python benchmarks/dead_codes.py --runs RUN [RUN ...] --threads 1 --out benchmarks/results/dead-codes-<name>.json
"""
from __future__ import annotations

import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import portable  # noqa: E402
from decoder_refit import parse_run_arguments, run_arguments  # noqa: E402

from hqvae.io import atomic_write_json  # noqa: E402
from hqvae.quantizers import StochasticQuantizer  # noqa: E402
from hqvae.runs import load_run_data, open_run  # noqa: E402
from hqvae.train.checkpoint import load_train_state  # noqa: E402
from hqvae.train.config import TrainConfig  # noqa: E402
from hqvae.train.optim import build_optimizer  # noqa: E402
from hqvae.train.run_info import git_commit, now  # noqa: E402
from hqvae.train.schedules import temperature  # noqa: E402

QUANTILES = (0.1, 0.5, 0.9)


def layer_quantizers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The quantizer of every layer, coarse to fine (the order of ``encode``'s codes)."""
    if not hasattr(model, "groups"):
        raise SystemExit(f"{type(model).__name__}: only the hierarchical models (top-down groups) are supported")
    return [quantizer for group in model.groups for quantizer in group.quantizers]


@torch.no_grad()
def posterior_tallies(model, dataset, batch_size: int = 250) -> list[dict[str, torch.Tensor] | None]:
    """Per layer (None for a deterministic one): argmax counts, posterior mass and best log P per code."""
    tallies = None
    for x, _ in dataset.batches(batch_size):
        codes, posteriors = model.encode_posteriors(x)
        if tallies is None:
            tallies = [None if p is None else {"count": torch.zeros(p.shape[1]), "mass": torch.zeros(p.shape[1]),
                                               "best_log_p": torch.full((p.shape[1],), -float("inf"))}
                       for p in posteriors]
        for tally, code, probs in zip(tallies, codes, posteriors):
            if tally is None:
                continue
            tally["count"] += torch.bincount(code.flatten(), minlength=probs.shape[1]).float()
            tally["mass"] += probs.sum(0)
            tally["best_log_p"] = torch.maximum(tally["best_log_p"], probs.clamp_min(1e-45).log().amax(0))
    return tallies


def layer_report(quantizer: StochasticQuantizer, tally: dict[str, torch.Tensor]) -> dict:
    codebook = quantizer.codebook.detach().float()  # (K, d)
    s2 = float(quantizer.variance().detach())
    used = tally["count"] > 0
    distances = torch.cdist(codebook, codebook).fill_diagonal_(float("inf")).amin(1) / s2 ** 0.5
    norms = codebook.norm(dim=1)
    first_batch = (float(quantizer.variance_bound) * codebook.shape[1]) ** 0.5 if quantizer.bounded_variance else None

    def median(values: torch.Tensor) -> float | None:
        return float(values.median()) if values.numel() else None

    return {
        "codebook_size": codebook.shape[0], "usage": float(used.float().mean()), "s2": s2,
        "unused_mass_share": float(tally["mass"][~used].sum() / tally["mass"].sum()),
        "unused_best_log_p": ([float(q) for q in tally["best_log_p"][~used].quantile(torch.tensor(QUANTILES))]
                              if (~used).any() else None),
        "code_norm_median": {"used": median(norms[used]), "unused": median(norms[~used])},
        "first_batch_scale": first_batch,
        "nearest_code_distance_in_s": {"used": median(distances[used]), "unused": median(distances[~used])},
    }


def gradient_report(opened, train_set, quantizers: list, used: list[torch.Tensor], batches: int) -> list[dict]:
    """Per stochastic layer: medians over used / unused codes of the gradient and Adam statistics."""
    model = opened.model
    config = TrainConfig.from_dict(opened.info.config).with_model_defaults(model.config.train_defaults)
    optimizer = build_optimizer(model, config.optim)
    optimizer.load_state_dict(load_train_state(opened.run_dir)["optimizer"])
    model.set_temperature(temperature(opened.info.step, config.temperature))
    model.train()
    rows = [[] for _ in quantizers]
    generator = torch.Generator().manual_seed(0)
    for index, (x, _) in enumerate(train_set.batches(32, shuffle=True, generator=generator, drop_last=True)):
        if index == batches:
            break
        model.zero_grad(set_to_none=True)
        model(x).loss.backward()
        for row, quantizer in zip(rows, quantizers):
            row.append(quantizer.weight.grad.detach().clone())
    reports = []
    for quantizer, grads, in_use in zip(quantizers, rows, used):
        grads = torch.stack(grads)  # (batches, K, d)
        mean, rms = grads.mean(0), grads.pow(2).mean(0).sqrt()
        state = optimizer.state[quantizer.weight]
        beta2 = next(group["betas"][1] for group in optimizer.param_groups  # its own group's β2 (codebook_beta2)
                     if any(p is quantizer.weight for p in group["params"]))
        sqrt_v = (state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))).sqrt().norm(dim=1)
        codebook = quantizer.weight.detach()
        towards_used = codebook[in_use].mean(0) - codebook
        cosine = torch.nn.functional.cosine_similarity(-mean, towards_used, dim=1)
        measures = {"gradient_rms": rms.norm(dim=1), "adam_sqrt_v": sqrt_v,
                    "gradient_over_sqrt_v": rms.norm(dim=1) / sqrt_v,
                    "consistency": mean.norm(dim=1) / rms.norm(dim=1).clamp_min(1e-45),
                    "cosine_towards_used_centroid": cosine}
        reports.append({name: {"used": float(values[in_use].median()),
                               "unused": float(values[~in_use].median()) if (~in_use).any() else None}
                        for name, values in measures.items()})
    model.zero_grad(set_to_none=True)
    return reports


def main() -> None:
    parser = run_arguments(__doc__, "run folders of hierarchical SQ models")
    parser.add_argument("--split", default="test")
    parser.add_argument("--gradient-batches", type=int, default=0,
                        help="measure the codes' gradients over this many training batches (0: skip)")
    args = parse_run_arguments(parser)
    rows = []
    for path in args.runs:
        opened = open_run(path, args.checkpoint)
        dataset = load_run_data(opened.info, args.split)
        pairs = [(quantizer, tally) for quantizer, tally
                 in zip(layer_quantizers(opened.model), posterior_tallies(opened.model, dataset)) if tally is not None]
        layers = [layer_report(quantizer, tally) for quantizer, tally in pairs]
        if args.gradient_batches:
            gradients = gradient_report(opened, load_run_data(opened.info, "train"), [q for q, _ in pairs],
                                        [tally["count"] > 0 for _, tally in pairs], args.gradient_batches)
            for layer, gradient in zip(layers, gradients):
                layer["gradients"] = {"batches": args.gradient_batches, **gradient}
        rows.append({"run": path, "model": opened.info.config["model"]["name"], "step": opened.info.step,
                     "layers": layers})
        print(f"{path} (step {opened.info.step}): usage {[round(layer['usage'], 3) for layer in layers]}, "
              f"unused codes' mass share {[round(layer['unused_mass_share'], 4) for layer in layers]}", flush=True)
    atomic_write_json(args.out, portable({
        "benchmark": "unused codes of SQ layers: posterior mass, best log-posterior, norms (issue 18)",
        "data": dataset.description, "split": args.split, "quantiles": list(QUANTILES),
        "commit": git_commit(), "date": now(), "machine": platform.processor() or platform.machine(),
        "command": "python " + " ".join(sys.argv), "runs": rows}))


if __name__ == "__main__":
    main()
