"""The content of a comparison report, as a list of blocks that ``render.py`` renders (HTML, Markdown).

Every number comes from the runs' results dicts (:func:`hqvae.evaluate.evaluate` plus the
run/checkpoint fields of ``hqvae eval``); figures are referenced by paths relative to the
report folder.  Missing fields show as "–".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MISSING = "–"
FIGURE_CAPTIONS = {  # a run's figures, in the order they appear in its section
    "training_curves": "training curves (metrics.jsonl)",
    "reconstructions": "originals (odd rows) and reconstructions (even rows)",
    "coarse_to_fine": "decoded from the first m layers",
    "codebook_usage": "code frequencies per layer, most used first",
}


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    path: str  # relative to the report folder
    caption: str


Block = Heading | Paragraph | BulletList | Table | Image


@dataclass
class ReportRun:
    """One run of a report (the input of :func:`hqvae.report.build_report`).

    results: the run's results dict; results_dir: the folder its ``results["files"]`` paths are
    relative to (None if the figures are unavailable); records: its ``metrics.jsonl`` records;
    figures: set by ``build_report``, paths relative to the report folder (keys of FIGURE_CAPTIONS).
    """

    name: str
    results: dict
    results_dir: Path | None = None
    records: list[dict] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)


def number(value, digits: int) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def percent(value) -> str:
    return MISSING if value is None else f"{100 * value:.0f}%"


def per_layer(results: dict, key: str, digits: int) -> str:
    """Values of ``key`` for every layer, coarse to fine, joined with " / "."""
    return " / ".join(percent(layer.get(key)) if key == "usage" else number(layer.get(key), digits)
                      for layer in results.get("layers") or []) or MISSING


def checkpoint_label(results: dict) -> str:
    checkpoint = results.get("checkpoint") or {}
    step = checkpoint.get("step")
    return f"{checkpoint.get('which', MISSING)}" + (f" @ {step}" if step is not None else "")


def summary_table(entries: list[ReportRun]) -> Table:
    """One row per run: the SPEC §5 headline metrics."""
    with_lpips = any("lpips" in entry.results.get("reconstruction", {}) for entry in entries)
    header = ["run", "model", "checkpoint", "split (items)", "RMSE ↓", "PSNR ↑", "SSIM ↑"]
    header += ["LPIPS ↓"] if with_lpips else []
    header += ["bits/item", "entropy bits/item", "information per layer (bits/item)", "perplexity per layer",
               "mini-batch perplexity (batch)", "usage per layer"]
    rows = []
    for entry in entries:
        results = entry.results
        recon, data, rate = (results.get(key, {}) for key in ("reconstruction", "data", "rate"))
        batch_size = (results.get("layers") or [{}])[0].get("minibatch_perplexity_batch_size", MISSING)
        row = [entry.name, results.get("model", {}).get("type", MISSING), checkpoint_label(results),
               f"{data.get('split', MISSING)} ({data.get('items', MISSING)})",
               number(recon.get("rmse"), 4), number(recon.get("psnr"), 2), number(recon.get("ssim"), 4)]
        row += [number(recon.get("lpips"), 4)] if with_lpips else []
        row += [number(rate.get("bits_per_item"), 0), number(rate.get("entropy_bits_per_item"), 0),
                per_layer(results, "information_bits_per_item", 0), per_layer(results, "perplexity", 1),
                f"{per_layer(results, 'minibatch_perplexity', 1)} ({batch_size})",
                per_layer(results, "usage", 0)]
        rows.append(row)
    return Table(header, rows)


def layer_table(results: dict) -> Table:
    """One row per layer of one run."""
    header = ["layer", "kind", "quantizer", "grid", "K", "bits", "perplexity", "mini-batch perplexity", "usage",
              "codes used", "entropy (bits)", "information (bits/position)", "posterior entropy (bits)"]
    rows = [[str(layer.get("layer", MISSING)), layer.get("kind", MISSING), layer.get("quantizer", MISSING),
             "×".join(map(str, layer.get("grid") or [])) or MISSING, str(layer.get("codebook_size", MISSING)),
             number(layer.get("bits"), 0), number(layer.get("perplexity"), 1),
             number(layer.get("minibatch_perplexity"), 1), percent(layer.get("usage")),
             str(layer.get("codes_used", MISSING)), number(layer.get("entropy_bits"), 2),
             number(layer.get("information_bits"), 2), number(layer.get("conditional_entropy_bits"), 2)]
            for layer in results.get("layers") or []]
    return Table(header, rows)


def coarse_to_fine_table(entries: list[ReportRun]) -> Table | None:
    """RMSE / PSNR of the decoding from the first m layers, one row per (run, m); None when no run
    has more than one layer."""
    rows = [[entry.name, str(point.get("layers")), number(point.get("bits_per_item"), 0),
             number(point.get("rmse"), 4), number(point.get("psnr"), 2), number(point.get("ssim"), 4)]
            for entry in entries if len(entry.results.get("coarse_to_fine") or []) > 1
            for point in entry.results["coarse_to_fine"]]
    return Table(["run", "layers m", "bits/item", "RMSE", "PSNR", "SSIM"], rows) if rows else None


def provenance(entry: ReportRun) -> BulletList:
    """Where the numbers come from: data, split, items, checkpoint, seed, settings."""
    results = entry.results
    data, run, settings = results.get("data", {}), results.get("run", {}), results.get("settings", {})
    checkpoint = results.get("checkpoint") or {}
    return BulletList([
        f"run folder: {run.get('path', MISSING)} (status {run.get('status', MISSING)}, "
        f"seed {run.get('seed', MISSING)})",
        f"checkpoint: {checkpoint_label(results)}" + (f" ({checkpoint['note']})" if checkpoint.get("note") else ""),
        f"evaluated on: {data.get('description', MISSING)}; split {data.get('split', MISSING)}, "
        f"{data.get('items', MISSING)} items",
        f"trained on: {run.get('training_data') or MISSING}",
        f"quantisation: {settings.get('quantization', MISSING)}; mini-batch perplexity over "
        f"{settings.get('minibatch_perplexity_batch', MISSING)} consecutive items",
    ])


def data_mismatch(entries: list[ReportRun]) -> str | None:
    """A warning when the runs were not evaluated on the same items (data set, split or count differ)."""
    evaluated = {
        entry.name: tuple(entry.results.get("data", {}).get(key) for key in ("description", "split", "items"))
        for entry in entries
    }
    if len(set(evaluated.values())) <= 1:
        return None
    listing = "; ".join(f"{name}: {split} split, {items} items of {description}"
                        for name, (description, split, items) in evaluated.items())
    return (f"Caution: the runs were not evaluated on the same items, so their numbers are not directly "
            f"comparable ({listing}).")


def build_document(entries: list[ReportRun], title: str, figures: dict[str, str], created: str) -> list[Block]:
    """The whole report: summary, coarse-to-fine comparison, then one section per run.

    ``figures``: report-wide figures ("coarse_to_fine_curve"), paths relative to the report folder.
    """
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(f"Generated {created} from the results files of {len(entries)} run(s). Metrics follow SPEC §5: "
                  "RMSE pooled over all pixels, PSNR and SSIM averaged over items, dataset-level perplexity "
                  "exp(H(p)) of the hard codes (the mini-batch value is the paper-style average), usage = "
                  "fraction of codes used at least once, bits = Σ n_l log2 K_l. LPIPS appears only when "
                  "computed with user-supplied weights."),
        Heading("Summary"),
        summary_table(entries),
    ]
    caution = data_mismatch(entries)
    if caution:
        blocks.append(Paragraph(caution))
    curve = coarse_to_fine_table(entries)
    if curve is not None:
        blocks += [Heading("Coarse to fine"),
                   Paragraph("Reconstruction from the first m layers (missing residual layers contribute zero, "
                             "a missing injected layer is the codebook mean).")]
        if "coarse_to_fine_curve" in figures:
            blocks.append(Image(figures["coarse_to_fine_curve"], "RMSE and PSNR against the number of layers decoded"))
        blocks.append(curve)
    for entry in entries:
        blocks += [Heading(entry.name), provenance(entry), layer_table(entry.results)]
        blocks += [Image(entry.figures[key], f"{entry.name}: {caption}")
                   for key, caption in FIGURE_CAPTIONS.items() if key in entry.figures]
    return blocks
