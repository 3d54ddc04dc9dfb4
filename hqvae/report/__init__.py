"""Figures and comparison reports made from evaluation results (JSON is the source of truth).

* ``grids.py``     PNG image grids (Pillow): originals vs reconstructions, spectrograms in colour
* ``plots.py``     matplotlib figures: codebook usage, coarse-to-fine strip and curve, training curves,
                   rate–distortion and linear-probe curves of progressive codes
* ``document.py``  the report's content as blocks (tables, figures, provenance) from results dicts
* ``render.py``    blocks -> self-contained HTML, and Markdown
* ``build.py``     ``build_report``: the report folder for several runs
"""
from hqvae.report.build import ReportRun, build_report

__all__ = ["ReportRun", "build_report"]
