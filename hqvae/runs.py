"""A run folder (``hqvae.train.run_dir.RunDir``) from the library: :func:`open_run` (its model),
:func:`load_run_data` (its data, from run.json's ``config.data``: name, root, options; "limit"
is ignored), :func:`evaluate_run` (results.json and figures, by default in ``<run>/eval/`` for
the test split and best checkpoint, else ``<run>/eval/<split>-<checkpoint>/``; ``hqvae eval``
describes the files). run.json is read as :class:`hqvae.train.run_info.RunInfo`, any version.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hqvae._version import __version__
from hqvae.codes_file import save_codes
from hqvae.data import DataError, ImageDataset, load_dataset, write_wav
from hqvae.evaluate import evaluate
from hqvae.io import atomic_write, atomic_write_json, file_fingerprint
from hqvae.models import from_pretrained
from hqvae.models.pretrained import WEIGHTS_NAME
from hqvae.train.run_dir import RunDir
from hqvae.train.run_info import RunInfo, now

GRID_ITEMS = 16
STRIP_ITEMS = 6
TRAINING_ONLY_KEYS = ("split", "limit")  # config.data keys that select training items, not loader options


def default_results_path(run: str | Path, split: str = "test", checkpoint: str = "best") -> Path:
    """Where ``hqvae eval`` writes and ``hqvae report`` looks for the results of a run."""
    folder = "" if (split, checkpoint) == ("test", "best") else f"{split}-{checkpoint}"
    return Path(run) / "eval" / folder / "results.json"


@dataclass
class OpenedRun:
    """A run folder with its model loaded from one checkpoint.

    checkpoint: {"which": "best" | "last", "step": int | None, "path": str, "note": str (only
    when the requested checkpoint was missing and the other one was used)}.
    """

    run_dir: RunDir
    info: RunInfo
    model: nn.Module
    checkpoint: dict
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.run_dir.root.resolve().name

    @property
    def seed(self) -> int | None:
        """``config.train.seed`` (hqvae train), else ``config.seed`` or ``seed`` (early runs); None if unknown."""
        config = self.info.config
        return next((value for value in ((config.get("train") or {}).get("seed"), config.get("seed"),
                                         self.info.extra.get("seed")) if value is not None), None)

    def describe(self) -> dict:
        """The run's labels for a results file (training data: ``dataset`` in early runs)."""
        return {
            "path": str(self.run_dir.root),
            "name": self.name,
            "model_type": self.info.model_type or self.model.config.name,
            "seed": self.seed,
            "status": self.info.status,
            "step": self.info.step,
            "training_data": self.info.data.get("train") or self.info.extra.get("dataset"),
        }

    def fingerprint(self) -> str:
        """Short sha256 of the checkpoint's weight file: tells codes of one training run from another's
        (hashed once per opened run)."""
        if self._fingerprint is None:
            self._fingerprint = file_fingerprint(Path(self.checkpoint["path"]) / WEIGHTS_NAME)
        return self._fingerprint


def open_run(path: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> OpenedRun:
    """Read ``run.json`` and load the model of ``checkpoints/<checkpoint>``.

    A missing ``best`` falls back to ``last`` (and the other way round), saying so in
    ``checkpoint["note"]``; no checkpoint at all raises a FileNotFoundError naming the fix.
    """
    run_dir = RunDir(path)
    if not run_dir.root.is_dir():
        raise FileNotFoundError(f"{run_dir.root}: no such run folder; pass --run runs/<name> "
                                f"(a folder made by hqvae train)")
    info = run_dir.read_info()
    other = "last" if checkpoint == "best" else "best"
    # run_dir.checkpoint raises on a name other than best/last
    which = next((name for name in (checkpoint, other) if (run_dir.checkpoint(name) / WEIGHTS_NAME).is_file()), None)
    if which is None:
        raise FileNotFoundError(
            f"{run_dir.root} has no checkpoint: neither checkpoints/best/{WEIGHTS_NAME} nor "
            f"checkpoints/last/{WEIGHTS_NAME} exists; train the run first (hqvae train ... --out {run_dir.root}) "
            f"or wait until it has saved one"
        )
    folder = run_dir.checkpoint(which)
    step = (info.best or {}).get("step") if which == "best" else info.step
    record = {"which": which, "step": step, "path": str(folder)}
    if which != checkpoint:
        record["note"] = f"checkpoints/{checkpoint} is missing; used checkpoints/{other}"
    return OpenedRun(run_dir, info, from_pretrained(folder, device=device), record)


def load_run_data(info: RunInfo, split: str, root: str | None = None, limit: int | None = None) -> ImageDataset:
    """The ``split`` of the data set the run was trained on (``run.json``'s ``config.data``).

    ``root`` replaces the recorded data root (a run moved to another machine); ``limit`` keeps
    the first ``limit`` items, and says so in the description.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be positive, got {limit}")
    data = dict(info.config.get("data") or {})
    name, recorded_root, nested = data.pop("name", None), data.pop("root", None), data.pop("options", None)
    if name is None:
        raise ValueError("run.json has no config.data.name: cannot tell which data set to load")
    options = {**{key: value for key, value in data.items() if key not in TRAINING_ONLY_KEYS}, **(nested or {})}
    try:
        dataset = load_dataset(name, split, root=root or recorded_root, **options)
    except DataError as error:
        raise FileNotFoundError(f"cannot load the run's data set {name!r} ({error}); "
                                f"pass --data-root to point at it") from None
    except TypeError as error:
        raise ValueError(f"run.json's config.data has options load_dataset({name!r}) does not accept "
                         f"({error})") from None
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(torch.arange(limit), split, f"{dataset.description}; first {limit} items only")
    return dataset


@torch.no_grad()
def encode_items(model, dataset, batch_size: int) -> list[torch.Tensor]:
    """Codes of every item of ``dataset``, one (N, *positions) long tensor per layer (CPU)."""
    device = next(model.parameters()).device
    pieces = [model.encode(x.to(device)) for x, _ in dataset.batches(batch_size)]
    return [torch.cat([piece[layer].cpu() for piece in pieces]) for layer in range(len(pieces[0]))]


def codes_metadata(opened: OpenedRun, layers: list[torch.Tensor], split: str, dataset: str, items: int,
                   image_size, log_mel: dict | None) -> dict:
    """The metadata of a codes file (``hqvae.codes_file``) of ``layers`` made by ``opened``'s model from
    ``items`` items of ``dataset`` (a description), ``log_mel`` the spectrogram parameters or None."""
    model = opened.model
    return {
        "model_type": model.config.name,
        "num_layers": len(layers),
        "code_shapes": [list(code.shape[1:]) for code in layers],
        "codebook_sizes": model.codebook_sizes,
        "in_channels": model.config.in_channels,
        "image_size": list(image_size),
        "items": items,
        "split": split,
        "dataset": dataset,
        "run": {"path": str(opened.run_dir.root), "name": opened.name},
        "checkpoint": {"which": opened.checkpoint["which"], "step": opened.checkpoint["step"]},
        "model_fingerprint": opened.fingerprint(),
        "log_mel": log_mel,
    }


def encode_to_file(opened: OpenedRun, dataset, split: str, path: str | os.PathLike,
                   batch_size: int) -> tuple[list[torch.Tensor], torch.Tensor | None, dict, Path]:
    """Encode every item of ``dataset`` (``split`` of the run's data) with ``opened``'s model and write
    them to the codes file ``path``: (codes per layer, labels or None when unlabelled, metadata, path)."""
    layers = encode_items(opened.model, dataset, batch_size)
    labels = dataset.labels if bool((dataset.labels >= 0).any()) else None
    log_mel = dataset.meta.get("log_mel")
    metadata = codes_metadata(opened, layers, split, dataset.description, len(dataset), dataset.image_size,
                              log_mel.config() if log_mel is not None else None)
    return layers, labels, metadata, save_codes(path, layers, labels, metadata)


def write_figures(model, dataset, results: dict, folder: Path, wavs: int = 4) -> dict[str, list[Path] | Path]:
    """Reconstruction grid, codebook usage plot, coarse-to-fine strip and, for spectrograms, ``wavs``
    pairs of WAVs in ``folder``."""
    from hqvae.report.grids import reconstruction_grid, save_png
    from hqvae.report.plots import codebook_usage_plot, coarse_to_fine_strip

    spectrogram = "log_mel" in dataset.meta
    count = min(GRID_ITEMS, len(dataset))
    device = next(model.parameters()).device
    x, _ = dataset.get_batch(torch.arange(count), device=device)
    codes = model.encode(x)
    progressive = model.decode_progressive(codes)
    x, progressive = x.cpu(), [decoded.cpu().clamp(0, 1) for decoded in progressive]
    files: dict[str, list[Path] | Path] = {
        "reconstructions": save_png(reconstruction_grid(x, progressive[-1], spectrogram=spectrogram),
                                    folder / "reconstructions.png"),
        "codebook_usage": codebook_usage_plot(results, folder / "codebook_usage.png"),
    }
    if len(progressive) > 1:
        strip = min(STRIP_ITEMS, count)
        files["coarse_to_fine"] = coarse_to_fine_strip(x[:strip], [p[:strip] for p in progressive],
                                                       folder / "coarse_to_fine.png", spectrogram)
    if spectrogram and wavs > 0:  # Griffin-Lim waveforms of the first originals and reconstructions (1, n_mels, T)
        log_mel, files["audio"] = dataset.meta["log_mel"], []
        for i in range(min(wavs, count)):
            for kind, image in (("original", x[i, 0]), ("reconstruction", progressive[-1][i, 0])):
                samples = log_mel.inverse(image)
                files["audio"].append(atomic_write(folder / "audio" / f"{i:02d}_{kind}.wav",
                                                   lambda tmp: write_wav(tmp, samples, log_mel.sample_rate)))
    if "tokens" in results:  # a PQ-VAE
        from hqvae.report.plots import plot_probe, plot_rate_distortion

        name = results["model"]["type"]
        curve = [{"bits": p["bits_per_item"], **{k: p[k] for k in ("rmse", "psnr", "ssim") if k in p}}
                 for p in results["coarse_to_fine"]]
        files["rate_distortion"] = plot_rate_distortion({name: curve}, folder / "rate_distortion.png")
        if "linear_probe" in results:
            files["probe"] = plot_probe({name: results["linear_probe"]["points"]}, folder / "probe.png")
    return files


def _relative(files: dict, start: Path) -> dict:
    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, start)).as_posix()

    return {key: [rel(p) for p in value] if isinstance(value, list) else rel(value) for key, value in files.items()}


def load_checked_lpips(weights: tuple[str, str], net: str, dataset, device: str):
    """LPIPS from the user's weight files, tried once on the data set's image size."""
    from hqvae.metrics import load_lpips

    lpips = load_lpips(*weights, net=net).to(device)
    probe = torch.zeros(1, dataset.num_channels, *dataset.image_size, device=device)
    try:
        with torch.no_grad():
            lpips(probe, probe)
    except RuntimeError as error:
        raise ValueError(f"LPIPS ({net}) cannot run on {dataset.num_channels}×{dataset.image_size[0]}×"
                         f"{dataset.image_size[1]} images ({error}); AlexNet needs at least 32×32 pixels: "
                         f"try --lpips-net vgg with the VGG-16 weight files") from None
    return lpips


def progressive_analyses(opened: OpenedRun, dataset, probe_items: int, data_root: str | None, batch_size: int) -> dict:
    """Extras of a model that supports "token_statistics" (PQ-VAE): token statistics and, on labelled
    data, the linear probe fitted on ``probe_items`` evenly spaced training items (0: no probe)."""
    from hqvae.metrics.progressive import linear_probe, probe_lengths, token_statistics

    if probe_items < 0:
        raise ValueError(f"--probe-items must be ≥ 0, got {probe_items}")
    model = opened.model
    extra = {"tokens": token_statistics(model, dataset, batch_size)}
    if probe_items and not bool((dataset.labels < 0).any()):
        probe_train = load_run_data(opened.info, "train", data_root).evenly_spaced(probe_items)
        points = linear_probe(model, probe_train, dataset, probe_lengths(model.num_layers), batch_size)
        extra["linear_probe"] = {"train_data": probe_train.description, "points": points}
    return extra


def evaluate_run(run: str, split: str = "test", checkpoint: str = "best", out: str | None = None,
                 images_dir: str | None = None, batch_size: int = 256, perplexity_batch: int = 32,
                 limit: int | None = None, data_root: str | None = None, device: str = "cpu", wavs: int = 4,
                 lpips_weights: tuple[str, str] | None = None, lpips_net: str = "alex",
                 probe_items: int = 10000) -> tuple[dict, Path]:
    """Evaluate a run and write its results JSON and figures; returns (results, JSON path)."""
    opened = open_run(run, checkpoint, device)
    dataset = load_run_data(opened.info, split, data_root, limit)
    lpips = load_checked_lpips(lpips_weights, lpips_net, dataset, device) if lpips_weights else None
    results = evaluate(opened.model, dataset, batch_size=batch_size, minibatch_perplexity_batch=perplexity_batch,
                       lpips=lpips)
    if opened.model.supports("token_statistics"):
        results.update(progressive_analyses(opened, dataset, probe_items, data_root, batch_size))
    results.update(run=opened.describe(), checkpoint=opened.checkpoint, hqvae_version=__version__, created=now())
    if lpips is not None:
        results["settings"]["lpips"] = {"net": lpips_net, "weights": [str(Path(p)) for p in lpips_weights]}

    path = Path(out) if out else default_results_path(run, split, checkpoint)
    folder = Path(images_dir) if images_dir else path.parent
    results["files"] = _relative(write_figures(opened.model, dataset, results, folder, wavs), path.parent)
    atomic_write_json(path, results)
    return results, path
