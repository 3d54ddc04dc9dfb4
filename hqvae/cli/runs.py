"""Kept for the encode and decode commands: the run workflow lives in :mod:`hqvae.runs`."""
from hqvae.runs import OpenedRun, load_run_data, open_run

__all__ = ["OpenedRun", "load_run_data", "open_run"]
