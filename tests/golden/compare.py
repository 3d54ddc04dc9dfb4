"""How the golden test compares recomputed values with the stored ones: per kind of quantity, the
largest difference relative to a scale of the tensor, within a tolerance measured across CPU kernel
selections (``tests/golden/spread.py`` re-measures it into spread.json; docs/golden-tolerances.md).

For a stored tensor r and a recomputed tensor a of one kind (``kind``):

    deviation = max|a − r| / scale,   scale = max(max|r|, floor · S_group)          (float64)

and the comparison fails where deviation > TOLERANCE[kind]. The scale is the tensor's own scale,
not each element's (near-zero entries would fail an element-wise test), with a floor taken from
its group, because some tensors are pure rounding noise of the same size for every CPU:

    scalar    loss, terms and logs of one model in one mode (train/eval). S_group = the largest
              |value| among them; floor 1e-3 (``mi`` = marginal − conditional entropy ≈ 1e-6 is
              a difference of two ≈2-valued entropies and moves by half of itself).
    recon     x̂, decode, decode_upto1: own scale (floor 0).
    grad      gradients (grad/ in full; grad_fingerprint/ as (Σg, ‖g‖₂), ‖g‖₂ = √Σg²). S_group =
              the model's largest gradient scale; floor 1e-3 (a convolution bias feeding a
              BatchNorm has the true gradient 0: its 1e-12 value is rounding noise).
    train_run weights after 5 Adam steps. Adam's update m̂/√v̂ moves a parameter by about lr a
              step whatever the gradient's size, so a rounding-level change of a near-zero
              gradient (the biases above) moves a parameter, and the BatchNorm mean that follows
              it, by up to lr per step. The comparison is max|a − r| ≤ TOLERANCE · max|r| +
              ADAM_STEPS · lr · steps (two trajectories, each up to lr·steps away, with margin 2).
    codes     integer codes: compared exactly (no code changed across the measured kernel
              selections, so no near-tie is allowed; a changed code is reported with its count).
"""
from __future__ import annotations

from collections import defaultdict

import torch

KINDS = ("scalar", "recon", "grad", "train_run", "codes")

# Measured largest deviation across 11 kernel selections (docs/golden-tolerances.md) -> tolerance.
TOLERANCE = {
    "scalar": 3e-4,     # measured 1.1e-5
    "recon": 1e-4,      # measured 2.4e-6
    "grad": 3e-3,       # measured 2.9e-4 (a zero-gradient bias, at the floor); 1.7e-4 above the floor
    "train_run": 1e-3,  # plus ADAM_STEPS · lr · steps; measured max|a − r| 1.0e-2 = 2.0 lr·steps
    "codes": 0,
}
FLOOR = {"scalar": 1e-3, "recon": 0.0, "grad": 1e-3}
ADAM_STEPS = 4.0
TRAIN_LR = 1e-3     # the registry's lr of both train-run models (tests/golden/make_golden.py)
TRAIN_STEPS = 5


def kind(key: str) -> str:
    """The kind of a golden key (module docstring)."""
    parts = key.split("/")
    if parts[0] == "train_run":
        return "train_run"
    section = parts[1]
    if section == "encode" or (section in ("train", "eval") and parts[2] == "codes"):
        return "codes"
    if section.startswith("decode") or (section in ("train", "eval") and parts[2] == "x_hat"):
        return "recon"
    if section in ("grad", "grad_fingerprint"):
        return "grad"
    return "scalar"


def group(key: str) -> str:
    """Keys sharing a floor: model/mode for scalars, the model for the rest."""
    parts = key.split("/")
    if parts[0] == "train_run" or kind(key) == "scalar":
        return "/".join(parts[:2])
    return parts[0]


def _comparable(key: str, value: torch.Tensor) -> torch.Tensor:
    """float64; a gradient fingerprint (Σg, Σg²) as (Σg, ‖g‖₂), both in the gradient's units."""
    value = value.double()
    if "/grad_fingerprint/" in key:
        value = torch.stack([value[0], value[1].clamp_min(0).sqrt()])
    return value


def _magnitude(key: str, value: torch.Tensor) -> float:
    value = _comparable(key, value)
    return value.abs().max().item() if value.numel() else 0.0


def group_scales(stored: dict[str, torch.Tensor]) -> dict[str, float]:
    scales: dict[str, float] = defaultdict(float)
    for key, value in stored.items():
        if kind(key) in FLOOR:
            scales[group(key)] = max(scales[group(key)], _magnitude(key, value))
    return scales


def deviation(key: str, expected: torch.Tensor, got: torch.Tensor, scales: dict[str, float]) -> float:
    """The deviation of ``got`` from ``expected`` in units of its tolerance's measure: for codes the
    number of changed codes; for train_run max|a − r| − ADAM_STEPS·lr·steps over max|r|; else
    max|a − r| / scale (module docstring)."""
    which = kind(key)
    if which == "codes":
        return float((got != expected).sum().item())
    if expected.dtype in (torch.bool, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        return float((got != expected).sum().item())  # counters (num_batches_tracked, initialized)
    gap = (_comparable(key, got) - _comparable(key, expected)).abs().max().item() if expected.numel() else 0.0
    own = _magnitude(key, expected)
    if which == "train_run":
        return max(gap - ADAM_STEPS * TRAIN_LR * TRAIN_STEPS, 0.0) / max(own, 1e-30)
    scale = max(own, FLOOR[which] * scales[group(key)])
    return gap / scale if scale > 0 else gap


def compare(stored: dict[str, torch.Tensor], recomputed: dict[str, torch.Tensor]) -> list[str]:
    """One line per key that is missing, new, of another dtype or shape, or beyond its tolerance
    (empty: the recomputed values match)."""
    problems = [f"{key}: missing" for key in sorted(set(stored) - set(recomputed))]
    problems += [f"{key}: new (not in the golden file)" for key in sorted(set(recomputed) - set(stored))]
    scales = group_scales(stored)
    for key, expected in stored.items():
        if key not in recomputed:
            continue
        got = recomputed[key]
        if got.dtype != expected.dtype or got.shape != expected.shape:
            problems.append(f"{key}: {got.dtype}{tuple(got.shape)} != {expected.dtype}{tuple(expected.shape)}")
            continue
        which = kind(key)
        value = deviation(key, expected, got, scales)
        if value > TOLERANCE[which] or value != value:  # NaN fails too
            unit = "codes changed" if which == "codes" or not expected.is_floating_point() else "relative to scale"
            problems.append(f"{key} ({which}): {value:.3g} {unit} > tolerance {TOLERANCE[which]:g}")
    return problems
