"""Figures drawn with matplotlib's Agg canvas (no pyplot, no global backend change), saved as PNG: codebook
usage, coarse-to-fine curve and strip, training curves, and the rate–distortion and linear-probe curves of
progressive codes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from matplotlib.figure import Figure

from hqvae.io import atomic_write
from hqvae.report.grids import to_pil
from hqvae.train.run_dir import numeric_leaves

DPI = 100
METRIC_LABELS = {"psnr": "PSNR (dB)", "rmse": "RMSE", "ssim": "SSIM", "mse": "MSE"}


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = DPI, crop: bool = True) -> Path:
    """Write ``figure`` as PNG, atomically; ``crop``: to the area drawn on (else the whole figure)."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi,
                                                         bbox_inches="tight" if crop else None))


def codebook_usage_plot(results: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Sorted code frequencies of every layer on a log scale, legend with perplexity and usage."""
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for layer in results["layers"]:
        counts = torch.tensor(layer["counts"], dtype=torch.float64)
        frequency = (counts / counts.sum().clamp(min=1)).sort(descending=True).values
        ranks = torch.arange(1, len(frequency) + 1)
        used = frequency > 0  # unused codes (frequency 0) cannot sit on a log axis: the line stops
        axes.step(ranks[used].numpy(), frequency[used].numpy(), where="mid", marker=".",
                  label=(f"layer {layer['layer']} ({layer['kind']}, {'×'.join(map(str, layer['grid']))}): "
                         f"perplexity {layer['perplexity']:.1f} / {layer['codebook_size']}, "
                         f"usage {layer['usage']:.0%}"))
    data = results["data"]
    axes.set(yscale="log", xlim=(0.5, max(layer["codebook_size"] for layer in results["layers"]) + 0.5),
             xlabel="code rank (most used first; the line ends at the last used code)",
             ylabel="frequency on the split",
             title=title or f"codebook usage, {data.get('split')} split, {data['items']} items")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def coarse_to_fine_curve(results_by_run: dict[str, dict], path: str | os.PathLike) -> Path:
    """RMSE and PSNR of ``decode(codes, upto=m)`` against m, one line per run."""
    figure = Figure(figsize=(9, 3.5))
    panels = figure.subplots(1, 2)
    for axes, metric in zip(panels, ("rmse", "psnr")):
        for name, results in results_by_run.items():
            points = results.get("coarse_to_fine") or []
            axes.plot([p["layers"] for p in points], [p[metric] for p in points], marker="o", label=name)
        axes.set(xlabel="layers decoded, m (coarse to fine)", ylabel=METRIC_LABELS[metric])
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    panels[0].legend(fontsize=8)
    figure.suptitle("coarse-to-fine reconstruction")
    return save_figure(figure, path)


def coarse_to_fine_strip(x: torch.Tensor, progressive: list[torch.Tensor], path: str | os.PathLike,
                         spectrogram: bool = False) -> Path:
    """Rows: items; columns: the original x (N, C, H, W), then ``progressive[m-1]`` (N, C, H, W),
    the decoding from the first m layers."""
    rows, columns = x.shape[0], len(progressive) + 1
    figure = Figure(figsize=(1.3 * columns, 1.3 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        images = [x[r]] + [decoded[r] for decoded in progressive]
        for c, image in enumerate(images):
            axes[r][c].imshow(to_pil(image, spectrogram), cmap=None if spectrogram or image.shape[0] == 3 else "gray",
                              vmin=0, vmax=255, aspect="auto" if spectrogram else "equal", interpolation="nearest")
            axes[r][c].set(xticks=[], yticks=[])
            if r == 0:
                axes[r][c].set_title("original" if c == 0 else f"m = {c}", fontsize=9)
    figure.suptitle("decoded from the first m layers", fontsize=10)
    return save_figure(figure, path)


def _series(records: list[dict], pattern: str) -> dict[str, tuple[list[float], list[float]]]:
    """{label: (steps, values)} for every flattened key matching ``pattern``; a group named
    ``layer`` in the pattern becomes the label "layer <n>", otherwise the key is the label."""
    found: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        if "step" not in record:
            continue
        first = {}  # one value per label and record (a value may be both in "logs" and "metrics")
        for key, value in numeric_leaves(record).items():
            if match := re.search(pattern, key):
                first.setdefault(f"layer {match['layer']}" if "layer" in match.groupdict() else key, value)
        for label, value in first.items():
            steps, values = found.setdefault(label, ([], []))
            steps.append(record["step"])
            values.append(value)
    return dict(sorted(found.items()))


PANELS = (
    ("loss", r"^loss$"),
    ("perplexity per layer", r"(^|/)perplexity/(?P<layer>\d+)$"),
    ("variance s² per layer", r"(^|/)variance/(?P<layer>\d+)$"),
    ("Gumbel temperature", r"^temperature$"),
)


def training_curves(records: list[dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """Panels of :data:`PANELS` that have data, train (solid) and val (dashed) against step.

    ``records``: ``metrics.jsonl`` lines {"step", "split", "loss", "logs": {...}, ...}; missing
    fields are skipped.  Returns None (and writes nothing) when no panel has data.
    """
    splits = {split: [r for r in records if r.get("split", "train") == split] for split in ("train", "val")}
    panels = [(heading, {split: _series(rows, pattern) for split, rows in splits.items()})
              for heading, pattern in PANELS]
    panels = [(heading, lines) for heading, lines in panels if any(lines.values())]
    if not panels:
        return None
    figure = Figure(figsize=(4.2 * len(panels), 3.4))
    for axes, (heading, lines) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for split, style in (("train", "-"), ("val", "--")):
            for label, (steps, values) in lines[split].items():
                axes.plot(steps, values, style, label=f"{split} {label}" if label.startswith("layer") else split)
        axes.set_title(heading, fontsize=10)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10, y=1.03)
    return save_figure(figure, path)


def plot_rate_distortion(curves: dict[str, list[dict]], path: str | os.PathLike,
                         metrics: tuple[str, ...] = ("rmse", "psnr", "ssim"), title: str = "") -> Path:
    """One panel per metric of ``metrics`` against bits per item (log axis), one line per curve
    (points: dicts with "bits" per item and the metric, e.g. from ``evaluate``'s "coarse_to_fine")."""
    present = [m for m in metrics if any(m in point for points in curves.values() for point in points)]
    figure = Figure(figsize=(4.2 * len(present), 3.6))
    axes = figure.subplots(1, len(present), squeeze=False)
    for axis, metric in zip(axes[0], present):
        for name, points in curves.items():
            kept = [p for p in points if metric in p]
            axis.plot([p["bits"] for p in kept], [p[metric] for p in kept], marker="o", markersize=3, label=name)
        axis.set_xscale("log", base=2)
        axis.set(xlabel="bits per item", ylabel=METRIC_LABELS.get(metric, metric))
        axis.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path, 120, crop=False)


def plot_probe(curves: dict[str, list[dict]], path: str | os.PathLike, title: str = "") -> Path:
    """Test accuracy against prefix length, one line per curve (``hqvae.metrics.progressive.linear_probe``
    dicts), with the majority-class chance level dashed."""
    figure = Figure(figsize=(5.0, 3.6))
    axis = figure.subplots()
    chance = None
    for name, points in curves.items():
        axis.plot([p["prefix_len"] for p in points], [p["test_accuracy"] for p in points], marker="o", markersize=3,
                  label=name)
        chance = points[0]["chance"] if points else chance
    if chance is not None:
        axis.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
    axis.set(xlabel="prefix length m (steps)", ylabel="linear-probe test accuracy", ylim=(0, 1))
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path, 120, crop=False)
