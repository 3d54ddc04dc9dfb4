"""Write a comparison report folder from the results of several runs.

    <out>/report.html  report.md       the same content, HTML (self-contained) and Markdown
    <out>/report.json                  {"title", "created", "runs": [{"name", "results"}]}: the source of truth
    <out>/coarse_to_fine.png           RMSE/PSNR against layers decoded, every multi-layer run
    <out>/<run>/results.json           each run's results, copied
    <out>/<run>/*.png                  codebook usage (drawn from the JSON), training curves (from
                                       metrics.jsonl), and the reconstruction grid and
                                       coarse-to-fine strip made by ``hqvae eval`` (copied)
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from hqvae.io import atomic_write, atomic_write_json
from hqvae.report.document import ReportRun, build_document
from hqvae.report.render import render_html, render_markdown
from hqvae.report.plots import codebook_usage_plot, coarse_to_fine_curve, training_curves

COPIED_FIGURES = ("reconstructions", "coarse_to_fine")  # keys of results["files"] that are PNGs to copy


def folder_name(name: str) -> str:
    """A file-system-safe folder name for a run."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"


def unique_names(names: list[str]) -> list[str]:
    """``names`` with repeats suffixed "-2", "-3", ... in order."""
    return [f"{name}-{names[:i].count(name) + 1}" if name in names[:i] else name for i, name in enumerate(names)]


def _run_figures(run: ReportRun, folder: Path, out_dir: Path) -> dict[str, str]:
    """Draw or copy the run's figures into ``folder``; their paths relative to ``out_dir``."""
    figures = {"training_curves": training_curves(run.records, folder / "training_curves.png", title=run.name)}
    files = run.results.get("files") or {}
    for key in COPIED_FIGURES:
        if run.results_dir is not None and key in files and (run.results_dir / files[key]).is_file():
            source, figures[key] = run.results_dir / files[key], folder / f"{key}.png"
            if source.resolve() != figures[key].resolve():
                atomic_write(figures[key], lambda tmp: shutil.copyfile(source, tmp))
    if run.results.get("layers"):
        figures["codebook_usage"] = codebook_usage_plot(run.results, folder / "codebook_usage.png",
                                                        title=f"{run.name}: codebook usage")
    return {key: Path(os.path.relpath(path, out_dir)).as_posix() for key, path in figures.items()
            if path is not None}


def build_report(runs: list[ReportRun], out_dir: str | os.PathLike, title: str = "hqvae report") -> dict[str, Path]:
    """Write the report folder (module docstring); returns {"html", "markdown", "json"} paths."""
    if not runs:
        raise ValueError("a report needs at least one run")
    out_dir = Path(out_dir)  # created, with the runs' folders, by the atomic writes
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    entries = []
    for run, name in zip(runs, unique_names([run.name for run in runs])):
        folder = out_dir / folder_name(name)
        atomic_write_json(folder / "results.json", run.results)
        entries.append(replace(run, name=name, figures=_run_figures(run, folder, out_dir)))
    figures = {}
    multi_layer = {entry.name: entry.results for entry in entries if len(entry.results.get("coarse_to_fine") or []) > 1}
    if multi_layer:
        coarse_to_fine_curve(multi_layer, out_dir / "coarse_to_fine.png")
        figures["coarse_to_fine_curve"] = "coarse_to_fine.png"
    blocks = build_document(entries, title, figures, created)
    return {
        "json": atomic_write_json(out_dir / "report.json", {"title": title, "created": created,
                                                            "runs": [{"name": e.name, "results": e.results}
                                                                     for e in entries]}),
        "html": atomic_write(out_dir / "report.html", lambda tmp: Path(tmp).write_text(render_html(blocks, title))),
        "markdown": atomic_write(out_dir / "report.md", lambda tmp: Path(tmp).write_text(render_markdown(blocks))),
    }
