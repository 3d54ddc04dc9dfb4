"""PNG figures of progressive codes: rate–distortion curves and linear-probe curves.

Each function takes several named curves (lists of the dicts that ``hqvae.metrics.progressive`` returns),
draws them on one set of axes with matplotlib's Agg canvas (no pyplot, as ``plots.py``) and writes the
PNG atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from hqvae.io import atomic_write

METRIC_LABELS = {"psnr": "PSNR (dB)", "rmse": "RMSE", "ssim": "SSIM", "mse": "MSE"}


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


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
        axis.set_xlabel("bits per item")
        axis.set_ylabel(METRIC_LABELS.get(metric, metric))
        axis.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return _save(figure, path)


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
    axis.set_xlabel("prefix length m (steps)")
    axis.set_ylabel("linear-probe test accuracy")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title, fontsize=10)
    return _save(figure, path)
